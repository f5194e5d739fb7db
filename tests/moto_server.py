"""moto's server, with DynamoDB's writes applied one at a time.

moto serves each request on its own thread and its DynamoDB backend takes no lock, so two
conditional writes to one item can both see the condition hold and both apply: 8 concurrent
`UpdateItem ... ConditionExpression c = 0` calls had more than one winner in 15 of 200 trials
here. DynamoDB (and LocalStack) apply a conditional write atomically per item, and the task
engine relies on it: the soak test once saw two deliveries both start one task, so "Job started"
was written twice. Applying writes one at a time gives moto that atomicity. Reads (GetItem,
Query, Scan) and SQS (long polls included) stay concurrent: serializing every DynamoDB call made
a long Query hold up every write behind it, and the fault soak's 2 s record timeouts then
dropped runs faster than they finished.

Usage: same arguments as moto_server (-H HOST -p PORT).
"""

import threading

from moto import server
from moto.moto_server import werkzeug_app

_writes = threading.Lock()
_WRITES = {
    "DynamoDB_20120810." + name
    for name in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
}
_call = werkzeug_app.DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "") in _WRITES:
        with _writes:
            # The response is computed in the call; take all of it inside the lock.
            return list(_call(self, environ, start_response))
    return _call(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    server.main()
