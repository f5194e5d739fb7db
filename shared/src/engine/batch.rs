//! The one batch handler every worker goes through: the Lambda handler on AWS and the local
//! binary's pollers alike. Each record is parsed and run on its own; only failed records are
//! reported, so SQS retries exactly those.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, debug, error, info_span, warn};

use super::{Engine, Outcome, TaskError};
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
    /// The queue's redrive limit: a record received this many times is its task's last attempt.
    max_receive_count: Option<u32>,
    /// A record still running after this long is dropped (as a killed worker would be) and
    /// left for redelivery, so one stuck record cannot hold its whole batch.
    record_timeout: Option<Duration>,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Tasks,
    /// Consumes dead-letter queues: each task there ends FAILED.
    DeadLetters,
}

enum RecordResult {
    Done,
    /// Back to the queue, at the earliest after the delay if there is one.
    Retry(Option<Duration>),
}

impl Worker {
    pub fn new(engine: Arc<Engine>, task_type: Option<TaskType>, concurrency: usize) -> Self {
        Worker {
            engine,
            task_type,
            concurrency: concurrency.max(1),
            max_receive_count: None,
            record_timeout: None,
            role: Role::Tasks,
        }
    }

    /// The consumer of the dead-letter queues (any task type).
    pub fn dead_letters(engine: Arc<Engine>, concurrency: usize) -> Self {
        Worker {
            role: Role::DeadLetters,
            ..Worker::new(engine, None, concurrency)
        }
    }

    pub fn with_max_receive_count(mut self, max_receive_count: u32) -> Self {
        self.max_receive_count = Some(max_receive_count);
        self
    }

    pub fn with_record_timeout(mut self, timeout: Duration) -> Self {
        self.record_timeout = Some(timeout);
        self
    }

    pub fn task_type(&self) -> Option<TaskType> {
        self.task_type
    }

    /// Handles one SQS event as Lambda's event source mapping delivers it.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, WorkerError> {
        Ok(self.handle_with_delays(event).await?.0)
    }

    /// `handle`, plus how long each failed record should wait at least before it comes back:
    /// a record turned away by another delivery's lease is worth nothing before that lease
    /// ends, and each early receive would count towards the redrive limit. (On Lambda the
    /// queue's visibility timeout, longer than any lease, does this.)
    pub async fn handle_with_delays(
        &self,
        event: SqsEvent,
    ) -> Result<(SqsBatchResponse, HashMap<String, Duration>), WorkerError> {
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
        let mut delays = HashMap::new();
        for (id, result) in results {
            if let RecordResult::Retry(delay) = result {
                let Some(id) = id else {
                    return Err(WorkerError::FailedRecordWithoutId);
                };
                if let Some(delay) = delay {
                    delays.insert(id.clone(), delay);
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        Ok((response, delays))
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
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let run = async {
            match self.role {
                Role::DeadLetters => {
                    self.engine
                        .fail_abandoned(
                            &message,
                            "retries exhausted: its message went to the dead-letter queue",
                        )
                        .await
                }
                Role::Tasks => {
                    let last = self
                        .max_receive_count
                        .is_some_and(|max| receive_count >= max);
                    self.engine.run_attempt(&message, last).await
                }
            }
        };
        if self.role == Role::Tasks
            && let Some(expected) = self.task_type
            && message.task_type != expected
        {
            error!(
                expected = %expected,
                got = %message.task_type,
                "message of another task type on this queue: refused, left for redelivery and the DLQ"
            );
            return RecordResult::Retry(None);
        }
        let result = match self.record_timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) => {
                    warn!(
                        ?limit,
                        "record ran out of time; dropped mid-run, left for redelivery"
                    );
                    return RecordResult::Retry(None);
                }
            },
            None => run.await,
        };
        match result {
            Ok(
                Outcome::Completed
                | Outcome::Failed
                | Outcome::Continued
                | Outcome::AlreadyDone
                | Outcome::Unknown,
            ) => RecordResult::Done,
            Err(TaskError::Busy { until }) => {
                debug!(%until, "another delivery holds the task; back after its lease");
                let left = until.micros() - self.engine.deps().clock.now().micros();
                RecordResult::Retry(Some(Duration::from_micros(
                    u64::try_from(left).unwrap_or(0),
                )))
            }
            Err(e) => {
                warn!(error = %e, source = ?std::error::Error::source(&e), "transient failure; record left for redelivery");
                RecordResult::Retry(None)
            }
        }
    }
}
