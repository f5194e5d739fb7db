//! The worker Lambda's entry point, as a function the tests call with real `SqsEvent` JSON.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::engine::{Worker, WorkerError};

/// One invocation: only the failed records come back, as `batchItemFailures`. An error of the
/// whole invocation (every record is retried) reaches CloudWatch with an `errorType`.
pub async fn handle(
    worker: &Worker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Diagnostic> {
    worker.handle(event.payload).await.map_err(|e| {
        let error_type = match e {
            WorkerError::FailedRecordWithoutId => "FailedRecordWithoutId",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    })
}
