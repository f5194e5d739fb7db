//! `SqsTaskQueue`: one SQS queue per task type. Sends go in batches of up to 10; the consuming
//! side (for the local binary's pollers) receives, deletes and changes visibility like Lambda's
//! event source mapping does.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use tracing::{instrument, warn};

use crate::domain::{TaskMessage, TaskType, Timestamp};
use crate::ports::{QueueConsumer, QueueError, ReceivedMessage, TaskQueue};

/// SQS takes at most ten entries per batch call.
pub const SQS_BATCH: usize = 10;

pub struct SqsTaskQueue {
    client: Client,
    urls: HashMap<TaskType, String>,
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> QueueError {
    QueueError::Unavailable(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct QueueFailure(String);

impl SqsTaskQueue {
    /// `urls` names the queues this program may use: each function is given only the ones it
    /// sends to (see `config::Role`); using any other is an error, never a panic.
    pub fn new(client: Client, urls: HashMap<TaskType, String>) -> Self {
        SqsTaskQueue { client, urls }
    }

    fn url(&self, task_type: TaskType) -> Result<&str, QueueError> {
        self.urls
            .get(&task_type)
            .map(String::as_str)
            .ok_or_else(|| {
                let mut allowed: Vec<&str> = self.urls.keys().map(|t| t.as_str()).collect();
                allowed.sort_unstable();
                unavailable(QueueFailure(format!(
                    "no queue URL for task type {task_type}: this function was not given {} \
                     (it may use only the queues of [{}])",
                    crate::config::queue_url_var(task_type),
                    allowed.join(", ")
                )))
            })
    }
}

#[async_trait]
impl TaskQueue for SqsTaskQueue {
    #[instrument(skip(self, messages), fields(count = messages.len()), err)]
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        let mut by_type: HashMap<TaskType, Vec<&TaskMessage>> = HashMap::new();
        for message in messages {
            by_type.entry(message.task_type).or_default().push(message);
        }
        // Every queue is checked before anything is sent, so a message for a queue this
        // function may not use fails the whole call rather than half of it.
        let mut sends = Vec::with_capacity(by_type.len());
        for (task_type, messages) in by_type {
            sends.push((task_type, self.url(task_type)?, messages));
        }
        for (task_type, url, messages) in sends {
            for chunk in messages.chunks(SQS_BATCH) {
                let mut entries = Vec::with_capacity(chunk.len());
                for (i, message) in chunk.iter().enumerate() {
                    let body = serde_json::to_string(message).map_err(unavailable)?;
                    entries.push(
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                            .map_err(unavailable)?,
                    );
                }
                let output = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(failed) = output.failed.first() {
                    return Err(unavailable(QueueFailure(format!(
                        "{} of {} messages not sent to {task_type}: {} {}",
                        output.failed.len(),
                        chunk.len(),
                        failed.code,
                        failed.message.as_deref().unwrap_or("")
                    ))));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for SqsTaskQueue {
    #[instrument(skip(self), err)]
    async fn receive(
        &self,
        task_type: TaskType,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.url(task_type)?)
            .max_number_of_messages(i32::try_from(max.clamp(1, SQS_BATCH)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(0))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(unavailable)?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let attribute = |name: MessageSystemAttributeName| {
                message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(1);
            let sent_at = attribute(MessageSystemAttributeName::SentTimestamp)
                .map_or_else(Timestamp::now, |ms| Timestamp::from_micros(ms * 1000));
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id.clone(), message.receipt_handle.clone())
            else {
                warn!("received a message without id or receipt handle; skipped");
                continue;
            };
            received.push(ReceivedMessage {
                message_id,
                receipt_handle,
                body: message.body.clone().unwrap_or_default(),
                receive_count,
                sent_at,
            });
        }
        Ok(received)
    }

    #[instrument(skip(self, receipt_handles), fields(count = receipt_handles.len()), err)]
    async fn delete(
        &self,
        task_type: TaskType,
        receipt_handles: &[String],
    ) -> Result<(), QueueError> {
        let url = self.url(task_type)?;
        for chunk in receipt_handles.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(unavailable)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
            if !output.failed.is_empty() {
                warn!(
                    failed = output.failed.len(),
                    "some deletes failed; those messages will be delivered again"
                );
            }
        }
        Ok(())
    }

    #[instrument(skip(self, receipt_handle), err)]
    async fn retry_later(
        &self,
        task_type: TaskType,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(task_type)?)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(delay.as_secs().min(43_200)).unwrap_or(0))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn source_arn(&self, task_type: TaskType) -> String {
        // https://sqs.<region>.amazonaws.com/<account>/<name>, or an emulator's <endpoint>/<account>/<name>.
        let url = self.urls.get(&task_type).map(String::as_str).unwrap_or("");
        let mut parts = url.rsplit('/');
        let name = parts.next().unwrap_or("");
        let account = parts.next().unwrap_or("000000000000");
        format!("arn:aws:sqs:local:{account}:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskId;

    fn offline_client() -> Client {
        Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .build(),
        )
    }

    #[tokio::test]
    async fn sending_to_a_queue_this_function_was_not_given_is_a_clear_error() {
        let queue = SqsTaskQueue::new(
            offline_client(),
            HashMap::from([(
                TaskType::PostDelete,
                "http://127.0.0.1:9/000000000000/q".to_owned(),
            )]),
        );
        let message = TaskMessage {
            task_id: TaskId::random(),
            task_type: TaskType::PostCreate,
            object_uid: "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        };
        let error = queue.send(&[message]).await.expect_err("not allowed");
        let source = std::error::Error::source(&error)
            .expect("source")
            .to_string();
        assert_eq!(
            source,
            "no queue URL for task type post_create: this function was not given \
             QUEUE_URL_POST_CREATE (it may use only the queues of [post_delete])"
        );
    }
}
