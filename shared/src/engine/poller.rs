//! What Lambda's SQS event source mapping does, for the local binary: receive a batch, hand it to
//! the worker as a real `SqsEvent`, delete what succeeded, leave failures for redelivery.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::Worker;
use crate::domain::TaskType;
use crate::ports::{QueueConsumer, ReceivedMessage};

/// The `SqsEvent` Lambda would build from these messages.
pub fn sqs_event(messages: &[ReceivedMessage], source_arn: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert(
                "ApproximateReceiveCount".to_owned(),
                m.receive_count.to_string(),
            );
            record.attributes.insert(
                "SentTimestamp".to_owned(),
                (m.sent_at.micros() / 1000).to_string(),
            );
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(source_arn.to_owned());
            record.aws_region = Some("local".to_owned());
            record
        })
        .collect();
    event
}

pub struct Poller {
    pub consumer: Arc<dyn QueueConsumer>,
    pub worker: Arc<Worker>,
    pub task_type: TaskType,
    pub batch_size: usize,
    /// How long a failed record stays invisible before it is delivered again.
    pub retry_delay: Duration,
}

impl Poller {
    /// Receives, handles and acknowledges one batch; returns how many messages it received.
    pub async fn poll_once(&self, wait: Duration) -> usize {
        let messages = match self
            .consumer
            .receive(self.task_type, self.batch_size, wait)
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                warn!(error = %e, task_type = %self.task_type, "receive failed; backing off");
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                return 0;
            }
        };
        if messages.is_empty() {
            return 0;
        }
        let event = sqs_event(&messages, &self.consumer.source_arn(self.task_type));
        let (failed, delays): (Vec<String>, _) = match self.worker.handle_with_delays(event).await {
            Ok((response, delays)) => (
                response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect(),
                delays,
            ),
            // The whole batch failed: every record goes back.
            Err(e) => {
                warn!(error = %e, "batch failed as a whole");
                (
                    messages.iter().map(|m| m.message_id.clone()).collect(),
                    Default::default(),
                )
            }
        };
        let (retry, done): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| failed.contains(&m.message_id));
        let done: Vec<String> = done.into_iter().map(|m| m.receipt_handle.clone()).collect();
        if let Err(e) = self.consumer.delete(self.task_type, &done).await {
            // Not deleted means delivered again: harmless, the engine is idempotent.
            warn!(error = %e, "delete failed; messages will be redelivered");
        }
        for m in retry {
            debug!(message_id = %m.message_id, "record failed; retried later");
            if let Err(e) = self
                .consumer
                .retry_later(
                    self.task_type,
                    &m.receipt_handle,
                    delays
                        .get(&m.message_id)
                        .map_or(self.retry_delay, |d| (*d).max(self.retry_delay)),
                )
                .await
            {
                warn!(error = %e, "could not shorten the visibility timeout; redelivery waits for it");
            }
        }
        messages.len()
    }

    /// Polls until `shutdown` turns true. It is checked between batches only, so a batch in hand
    /// is always finished and acknowledged first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        // Long polls of a second: cheap on SQS, and shutdown waits at most that long.
        let wait = Duration::from_secs(1);
        while !*shutdown.borrow() {
            self.poll_once(wait).await;
        }
    }
}
