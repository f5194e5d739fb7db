//! The worker Lambda's entry point, as a function the tests call with real `SqsEvent` JSON.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::engine::{Deps, SweepLimits, Worker, WorkerError, resend_stale};

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

/// One run of the sweeper (on a schedule): re-sends the messages of tasks QUEUED too long.
pub async fn sweep(deps: &Deps, limits: SweepLimits) -> Result<serde_json::Value, Diagnostic> {
    match resend_stale(deps, limits).await {
        Ok(resent) => Ok(serde_json::json!({ "resent": resent })),
        Err(e) => Err(Diagnostic {
            error_type: "SweepFailed".to_owned(),
            error_message: shared::engine::error_chain(&e),
        }),
    }
}
