//! The one batch handler every worker goes through: the Lambda handler on AWS and the local
//! binary's pollers alike. Each record is parsed and run on its own; only failed records are
//! reported, so SQS retries exactly those.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, error, info_span, warn};

use super::{Engine, Outcome};
use crate::domain::{TaskMessage, TaskType};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A record that failed has no message id, so it cannot be reported alone: fail the batch.
    #[error("a failed record has no messageId; the whole batch must be retried")]
    FailedRecordWithoutId,
}

pub struct Worker {
    engine: Arc<Engine>,
    /// The queue this worker serves; `None` accepts every type (tests, tools).
    task_type: Option<TaskType>,
    concurrency: usize,
}

enum RecordResult {
    Done,
    Retry,
}

impl Worker {
    pub fn new(engine: Arc<Engine>, task_type: Option<TaskType>, concurrency: usize) -> Self {
        Worker {
            engine,
            task_type,
            concurrency: concurrency.max(1),
        }
    }

    pub fn task_type(&self) -> Option<TaskType> {
        self.task_type
    }

    /// Handles one SQS event as Lambda's event source mapping delivers it.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, WorkerError> {
        let results: Vec<(Option<String>, RecordResult)> = futures::stream::iter(event.records)
            .map(|record| async move {
                let id = record.message_id.clone().filter(|id| !id.is_empty());
                let span = info_span!(
                    "record",
                    message_id = id.as_deref().unwrap_or(""),
                    task_id = tracing::field::Empty
                );
                let result = self.handle_record(record).instrument(span).await;
                (id, result)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        let mut response = SqsBatchResponse::default();
        for (id, result) in results {
            if let RecordResult::Retry = result {
                let Some(id) = id else {
                    return Err(WorkerError::FailedRecordWithoutId);
                };
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        Ok(response)
    }

    async fn handle_record(&self, record: SqsMessage) -> RecordResult {
        let Some(body) = record.body.as_deref() else {
            warn!("record has no body; not a task message, dropped");
            return RecordResult::Done;
        };
        let message: TaskMessage = match serde_json::from_str(body) {
            Ok(message) => message,
            Err(e) => {
                // Retrying cannot make it parse: drop it rather than start a retry storm.
                warn!(error = %e, body_len = body.len(), "body is not a task message; dropped");
                return RecordResult::Done;
            }
        };
        tracing::Span::current().record("task_id", tracing::field::display(message.task_id));
        if let Some(expected) = self.task_type
            && message.task_type != expected
        {
            error!(
                expected = %expected,
                got = %message.task_type,
                "message of another task type on this queue: refused, left for redelivery and the DLQ"
            );
            return RecordResult::Retry;
        }
        match self.engine.run(&message).await {
            Ok(
                Outcome::Completed
                | Outcome::Failed
                | Outcome::Continued
                | Outcome::AlreadyDone
                | Outcome::Unknown,
            ) => RecordResult::Done,
            Err(e) => {
                warn!(error = %e, source = ?std::error::Error::source(&e), "transient failure; record left for redelivery");
                RecordResult::Retry
            }
        }
    }
}
