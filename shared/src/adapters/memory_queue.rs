//! `MemoryQueue`: one in-process queue per task type with SQS's consumer semantics — a received
//! message is invisible until deleted or its visibility timeout ends, then it is delivered again
//! with a higher receive count.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::domain::{TaskMessage, TaskType, Timestamp};
use crate::ports::{QueueConsumer, QueueError, ReceivedMessage, TaskQueue};

struct Stored {
    message_id: String,
    body: String,
    receive_count: u32,
    sent_at: Timestamp,
}

#[derive(Default)]
struct LaneState {
    ready: VecDeque<Stored>,
    /// receipt → (message, visible again at).
    in_flight: HashMap<u64, (Stored, Instant)>,
    /// (visible again at, receipt): lets `receive` find timed-out messages without a scan.
    deadlines: BTreeMap<(Instant, u64), ()>,
    next_receipt: u64,
}

impl LaneState {
    fn requeue_timed_out(&mut self, now: Instant) {
        while let Some((&(at, receipt), _)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, receipt));
            if let Some((message, _)) = self.in_flight.remove(&receipt) {
                self.ready.push_back(message);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|(&(at, _), _)| at)
    }
}

#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
    notify: Notify,
}

pub struct MemoryQueue {
    lanes: HashMap<TaskType, Arc<Lane>>,
    visibility_timeout: Duration,
}

impl MemoryQueue {
    /// `visibility_timeout`: how long a received, undeleted message stays hidden (as on SQS).
    pub fn new(visibility_timeout: Duration) -> Self {
        MemoryQueue {
            lanes: TaskType::ALL
                .iter()
                .map(|t| (*t, Arc::new(Lane::default())))
                .collect(),
            visibility_timeout,
        }
    }

    fn lane(&self, task_type: TaskType) -> &Arc<Lane> {
        &self.lanes[&task_type]
    }

    /// Messages waiting or in flight on one queue (SQS's approximate counts, but exact).
    pub fn depth(&self, task_type: TaskType) -> (usize, usize) {
        let st = self.lane(task_type).state.lock();
        (st.ready.len(), st.in_flight.len())
    }

    /// Puts a raw body on a queue, as any other producer could: for tests of bad messages.
    pub fn send_raw(&self, task_type: TaskType, body: String) {
        let lane = self.lane(task_type);
        lane.state.lock().ready.push_back(Stored {
            message_id: uuid::Uuid::new_v4().to_string(),
            body,
            receive_count: 0,
            sent_at: Timestamp::now(),
        });
        lane.notify.notify_one();
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        for message in messages {
            let body =
                serde_json::to_string(message).map_err(|e| QueueError::Unavailable(e.into()))?;
            self.send_raw(message.task_type, body);
        }
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    async fn receive(
        &self,
        task_type: TaskType,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let lane = self.lane(task_type);
        let give_up = Instant::now() + wait;
        loop {
            // Register interest before looking, so a send between the look and the wait wakes us.
            let notified = lane.notify.notified();
            let wake_at = {
                let mut st = lane.state.lock();
                let now = Instant::now();
                st.requeue_timed_out(now);
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(mut message) = st.ready.pop_front() else {
                        break;
                    };
                    message.receive_count += 1;
                    st.next_receipt += 1;
                    let receipt = st.next_receipt;
                    let visible_at = now + self.visibility_timeout;
                    out.push(ReceivedMessage {
                        message_id: message.message_id.clone(),
                        receipt_handle: receipt.to_string(),
                        body: message.body.clone(),
                        receive_count: message.receive_count,
                        sent_at: message.sent_at,
                    });
                    st.deadlines.insert((visible_at, receipt), ());
                    st.in_flight.insert(receipt, (message, visible_at));
                }
                if !out.is_empty() {
                    if !st.ready.is_empty() {
                        // Others may be waiting for what we left.
                        lane.notify.notify_one();
                    }
                    return Ok(out);
                }
                st.next_deadline().map_or(give_up, |at| at.min(give_up))
            };
            if Instant::now() >= give_up {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout_at(wake_at.into(), notified).await;
        }
    }

    async fn delete(
        &self,
        task_type: TaskType,
        receipt_handles: &[String],
    ) -> Result<(), QueueError> {
        let mut st = self.lane(task_type).state.lock();
        for handle in receipt_handles {
            let Ok(receipt) = handle.parse::<u64>() else {
                continue;
            };
            if let Some((_, at)) = st.in_flight.remove(&receipt) {
                st.deadlines.remove(&(at, receipt));
            }
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        task_type: TaskType,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let lane = self.lane(task_type);
        let mut st = lane.state.lock();
        let Ok(receipt) = receipt_handle.parse::<u64>() else {
            return Ok(());
        };
        if let Some(at) = st.in_flight.get(&receipt).map(|(_, at)| *at) {
            st.deadlines.remove(&(at, receipt));
            let visible_at = Instant::now() + delay;
            st.deadlines.insert((visible_at, receipt), ());
            if let Some(entry) = st.in_flight.get_mut(&receipt) {
                entry.1 = visible_at;
            }
            drop(st);
            // A waiting receiver should re-arm its timer for the new deadline.
            lane.notify.notify_one();
        }
        Ok(())
    }

    fn source_arn(&self, task_type: TaskType) -> String {
        format!(
            "arn:aws:sqs:local:000000000000:skylark-{}",
            task_type.as_str()
        )
    }
}
