#!/usr/bin/env python3
"""Regenerates the sample events in this folder with `sam local generate-event`, then edits them
to carry our payloads. Run from the repository root with the test command's virtualenv:

    SAM_CLI_TELEMETRY=0 .venv/bin/python tests/events/generate.py

The output is deterministic (fixed ids), so a re-run changes nothing unless SAM's samples or the
payloads below change. The tests read these files; `sam local invoke` and `cargo lambda invoke`
take them as they are (see README).
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAM = str(Path(sys.executable).parent / "sam")
ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "skylark-tasks"  # samconfig.toml's stack_name: queue names are <stack>-<task-type>
STAGE = "prod"  # the template's StageName default
HOST = f"abcdef123.execute-api.{REGION}.amazonaws.com"
# The API token the tests put in the emulator's secret (tests/src/emulator.rs TEST_TOKEN). With a
# deployed stack, replace it with the real one (README: "Calling the deployed API").
TOKEN = "skylark-test-token"

SEED = """mutation {
  createMovie(movie: {
    title: "My movie",
    availability: {
      link: ["always"]
    }
  }) {
    uid
    _context {
      task_id
    }
  }
}"""
LIST_TASKS = "{ listSkylarkBackgroundTask { objects { task_id status task_type } count next_token } }"

# (task type, task_id, object_uid): fixed, so tests can arrange exactly these tasks.
TASKS = [
    ("post_create", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b01", "01JF0S7ATQ9ZK3M5N7P9R1CT01"),
    ("post_update", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b02", "01JF0S7ATQ9ZK3M5N7P9R1CT02"),
    ("post_delete", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b03", "01JF0S7ATQ9ZK3M5N7P9R1CT03"),
    ("batch_delete", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b04", "BATCH_DELETE"),
    ("availability_update", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b05", "01JF0S7ATQ9ZK3M5N7P9R1CT05"),
    ("availability_delete", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b06", "01JF0S7ATQ9ZK3M5N7P9R1CT06"),
    ("post_update_availability", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b07", "01JF0S7ATQ9ZK3M5N7P9R1CT07"),
    ("post_delete_availability", "3b0f1a9e-6c52-4d1e-9a7b-0c2e4f6a8b08", "01JF0S7ATQ9ZK3M5N7P9R1CT08"),
]


def sam_event(*args):
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    out = subprocess.run([SAM, "local", "generate-event", *args], check=True, capture_output=True, env=env)
    return json.loads(out.stdout)


def write(name, event):
    (HERE / name).write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n")
    print("wrote", name)


def http_api(method, body=None, query=None):
    event = sam_event("apigateway", "http-api-proxy", "--method", method, "--path", "graphql",
                      "--stage", STAGE, "--account-id", ACCOUNT, "--body", body or "")
    # Our route, no authorizer, a plain client; a named stage puts itself in front of the path.
    path = f"/{STAGE}/graphql"
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} /graphql"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["cookies"] = []
    event["headers"] = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json",
                        "host": HOST, "user-agent": "curl/8.5.0", "x-forwarded-proto": "https"}
    for key in ("pathParameters", "stageVariables"):
        event.pop(key, None)
    for key in ("authentication", "authorizer"):
        event["requestContext"].pop(key, None)
    event["requestContext"]["apiId"] = HOST.split(".")[0]
    event["requestContext"]["domainName"] = HOST
    event["requestContext"]["domainPrefix"] = HOST.split(".")[0]
    event["requestContext"]["http"]["userAgent"] = "curl/8.5.0"
    if query is None:
        event["rawQueryString"] = ""
        event.pop("queryStringParameters", None)
    else:
        from urllib.parse import urlencode
        event["rawQueryString"] = urlencode({"query": query})
        event["queryStringParameters"] = {"query": query}
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    return event


def main():
    seed_body = json.dumps({"query": SEED})

    encoded = http_api("POST", seed_body)
    assert encoded["isBase64Encoded"] and base64.b64decode(encoded["body"]).decode() == seed_body
    write("http-api-v2-seed-base64.json", encoded)

    plain = http_api("POST", seed_body)
    plain["body"], plain["isBase64Encoded"] = seed_body, False
    write("http-api-v2-seed.json", plain)

    write("http-api-v2-list-tasks-get.json", http_api("GET", query=LIST_TASKS))

    rest = sam_event("apigateway", "aws-proxy", "--method", "POST", "--path", "graphql",
                     "--resource", "/graphql", "--stage", STAGE, "--account-id", ACCOUNT,
                     "--body", seed_body)
    rest["body"], rest["isBase64Encoded"] = seed_body, False
    for key in ("queryStringParameters", "multiValueQueryStringParameters", "pathParameters",
                "stageVariables"):
        rest[key] = None
    rest["headers"]["Content-Type"] = "application/json"
    rest["multiValueHeaders"]["Content-Type"] = ["application/json"]
    rest["headers"]["Authorization"] = f"Bearer {TOKEN}"
    rest["multiValueHeaders"]["Authorization"] = [f"Bearer {TOKEN}"]
    assert rest["path"] == "/graphql", rest["path"]  # SAM puts the "/" in front itself
    rest["requestContext"]["path"] = f"/{STAGE}/graphql"
    write("rest-v1-seed.json", rest)

    for task_type, task_id, object_uid in TASKS:
        body = json.dumps({"task_id": task_id, "task_type": task_type, "object_uid": object_uid})
        queue = f"{STACK}-{task_type.replace('_', '-')}"
        # generate-event pastes --body into its JSON unescaped, so pass it JSON-escaped.
        event = sam_event("sqs", "receive-message", "--region", REGION, "--account-id", ACCOUNT,
                          "--queue-name", queue, "--body", json.dumps(body)[1:-1])
        record = event["Records"][0]
        assert record["body"] == body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # SAM's is of its sample body
        write(f"sqs-{task_type.replace('_', '-')}.json", event)


if __name__ == "__main__":
    main()
