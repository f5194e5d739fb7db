//! Ports: what the service and the task engine need from storage, queues and time.
//!
//! They follow DynamoDB's model — conditional writes, all-or-nothing transactions, queries that
//! return a page and an opaque cursor — and the in-memory adapters imitate those semantics.

use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{
    Availability, ContentObject, Deletion, Lease, Message, ObjectType, Progress, Relationship,
    Task, TaskId, TaskMessage, TaskStatus, TaskType, Timestamp, bounded_message,
};

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race or found a state it did not expect.
    #[error("condition failed: {0}")]
    ConditionFailed(String),
    #[error("{scope} external_id `{external_id}` is already used by another object")]
    ExternalIdTaken { scope: String, external_id: String },
    #[error("the cursor (next_token) is not one this service issued")]
    InvalidCursor,
    /// A write that no retry can make: an item past DynamoDB's size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The backend failed or throttled; the caller may retry.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable")]
    Unavailable(#[source] BoxError),
}

/// An opaque pagination token. It round-trips exactly; its content is the adapter's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(pub String);

impl Cursor {
    pub fn encode<T: Serialize>(key: &T) -> Cursor {
        let json = serde_json::to_vec(key).unwrap_or_default();
        Cursor(URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.0.as_bytes())
            .map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            next: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// The condition a write puts on the item it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Version(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub relationship: Relationship,
    pub to: String,
}

impl Edge {
    pub fn reversed(&self) -> Edge {
        Edge {
            from: self.to.clone(),
            relationship: self.relationship.reverse(),
            to: self.from.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    /// Puts `object` (whose `version` is the new one) if the stored item matches `expect`.
    Put {
        object: ContentObject,
        expect: Expect,
    },
    Delete {
        uid: String,
        expect: Expect,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvailabilityOp {
    /// Puts `availability` (whose `version` is the new one) if the stored item matches `expect`.
    Put {
        availability: Availability,
        expect: Expect,
    },
    /// Deletes the availability item (not its links: its fan-out removes those).
    Delete { uid: String, expect: Expect },
}

impl AvailabilityOp {
    pub fn uid(&self) -> &str {
        match self {
            AvailabilityOp::Put { availability, .. } => &availability.uid,
            AvailabilityOp::Delete { uid, .. } => uid,
        }
    }

    pub fn expect(&self) -> Expect {
        match self {
            AvailabilityOp::Put { expect, .. } | AvailabilityOp::Delete { expect, .. } => *expect,
        }
    }
}

/// `scope` is an object type name or `Availability`: external ids are unique per type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalIdOp {
    /// Fails with `ExternalIdTaken` if another uid holds it.
    Claim {
        scope: String,
        external_id: String,
        uid: String,
    },
    Release {
        scope: String,
        external_id: String,
        uid: String,
    },
}

impl ExternalIdOp {
    /// The external id a deletion of `object` frees, if it freed one.
    pub fn released_by(object: &ContentObject, deletion: Deletion) -> Vec<ExternalIdOp> {
        match deletion {
            Deletion::Object {
                released_external_id: Some(external_id),
            } => vec![ExternalIdOp::Release {
                scope: object.object_type.as_str().to_owned(),
                external_id,
                uid: object.uid.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

/// One all-or-nothing write (a DynamoDB `TransactWriteItems`). At most 100 items in all.
#[derive(Debug, Clone, Default)]
pub struct ContentWrite {
    pub objects: Vec<ObjectOp>,
    pub availability: Option<AvailabilityOp>,
    pub external_ids: Vec<ExternalIdOp>,
    /// (edge, true = put / false = delete); unconditional and idempotent.
    pub edges: Vec<(Edge, bool)>,
    /// (availability uid, object uid, true = put / false = delete): the index fan-outs page through.
    pub availability_links: Vec<(String, String, bool)>,
    /// New QUEUED tasks; each must not exist yet.
    pub new_tasks: Vec<Task>,
}

impl ContentWrite {
    pub const MAX_ITEMS: usize = 100;
    /// Largest object written, counted as DynamoDB counts an item ([`item_bytes`]): its items
    /// hold 400 KB (409,600 bytes), and the keys and index attributes the adapter adds take
    /// some of it.
    pub const MAX_OBJECT_BYTES: usize = 380_000;

    /// DynamoDB refuses a larger transaction, or a larger item; the in-memory store refuses them
    /// the same way.
    pub fn check_size(&self) -> Result<(), StoreError> {
        let count = self.item_count();
        if count > Self::MAX_ITEMS {
            return Err(StoreError::ConditionFailed(format!(
                "a transaction holds at most {} items, not {count}",
                Self::MAX_ITEMS
            )));
        }
        for op in &self.objects {
            if let ObjectOp::Put { object, .. } = op {
                let bytes = serde_json::to_value(object).map_or(0, |value| item_bytes(&value));
                if bytes > Self::MAX_OBJECT_BYTES {
                    return Err(StoreError::TooLarge(format!(
                        "object `{}` would take {bytes} bytes with its translations; an object \
                         holds at most {} (DynamoDB's items hold 400 KB): shorten its texts or \
                         delete a translation",
                        object.uid,
                        Self::MAX_OBJECT_BYTES
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn item_count(&self) -> usize {
        self.objects.len()
            + usize::from(self.availability.is_some())
            + self.external_ids.len()
            + self.edges.len()
            + self.availability_links.len()
            + self.new_tasks.len()
    }
}

/// The size of `value` as DynamoDB counts an attribute: strings by their UTF-8 bytes (not as
/// JSON escapes them: a control character is one byte, not six), numbers by their digits,
/// lists and maps 3 bytes plus 1 per element, map keys by their bytes.
fn item_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(number) => number.to_string().len(),
        Value::String(text) => text.len(),
        Value::Array(items) => 3 + items.iter().map(|item| 1 + item_bytes(item)).sum::<usize>(),
        Value::Object(entries) => {
            3 + entries
                .iter()
                .map(|(key, item)| key.len() + 1 + item_bytes(item))
                .sum::<usize>()
        }
    }
}

#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Strongly consistent; returns tombstoned (deleted, not yet cleaned) objects too.
    async fn get_object(&self, uid: &str) -> Result<Option<ContentObject>, StoreError>;
    /// Missing uids are simply absent from the result; order is not kept.
    async fn get_objects(&self, uids: &[String]) -> Result<Vec<ContentObject>, StoreError>;
    async fn list_objects(
        &self,
        object_type: ObjectType,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ContentObject>, StoreError>;
    async fn find_by_external_id(
        &self,
        scope: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn get_availability(&self, uid: &str) -> Result<Option<Availability>, StoreError>;
    async fn get_availabilities(&self, uids: &[String]) -> Result<Vec<Availability>, StoreError>;
    async fn list_availability(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Availability>, StoreError>;
    /// An object's edges, all or of one relationship, ordered by (relationship, target uid).
    async fn list_edges(
        &self,
        from: &str,
        relationship: Option<Relationship>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Edge>, StoreError>;
    /// The objects linked to an availability, in uid order: what a fan-out pages through.
    async fn list_linked_objects(
        &self,
        availability_uid: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<String>, StoreError>;
    async fn write(&self, write: ContentWrite) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub object_uid: Option<String>,
    pub task_type: Option<TaskType>,
    pub order: Order,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// A conditional change of one task: it applies only if the task is still in `expect_status`
/// with exactly `expect_message_count` messages appended and `expect_step` checkpoints written,
/// so a late or duplicate worker cannot move it backwards, write a message twice or advance a
/// fan-out from a point another delivery has already left.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub expect_status: TaskStatus,
    pub expect_message_count: u32,
    pub expect_step: u32,
    /// The lease holder the task must still have (`None`: no lease).
    pub expect_owner: Option<String>,
    pub status: TaskStatus,
    /// The new messages; `message_count` grows by their number.
    pub append: Vec<Message>,
    /// When appending would pass `MAX_MESSAGES`: the whole list to store instead.
    pub replace_messages: Option<Vec<Message>>,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// A new checkpoint (its `step` is `expect_step + 1`).
    pub progress: Option<Progress>,
    /// A new lease; a finished task keeps its last one.
    pub lease: Option<Lease>,
}

impl TaskUpdate {
    /// A change of `task` as it was read: conditional on its status, message count and step;
    /// each new message cut to `MAX_MESSAGE_BYTES` and the list kept within `MAX_MESSAGES`.
    pub fn of(
        task: &Task,
        status: TaskStatus,
        append: Vec<Message>,
        updated_at: Timestamp,
    ) -> Self {
        let append: Vec<Message> = append.into_iter().map(bounded_message).collect();
        TaskUpdate {
            expect_status: task.status,
            expect_message_count: task.message_count,
            expect_step: task.progress.step,
            expect_owner: task.lease.as_ref().map(|l| l.owner.clone()),
            status,
            replace_messages: task.messages_after(&append),
            append,
            updated_at,
            expires_at: None,
            progress: None,
            lease: None,
        }
    }
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// `None` for unknown and for expired tasks (`expires_at <= now`): TTL deletion is late.
    async fn get_task(&self, task_id: TaskId, now: Timestamp) -> Result<Option<Task>, StoreError>;
    /// Writes each task that does not exist yet, independently (a task that exists is left as
    /// it is); returns how many were new. Cheaper than a transaction for a fan-out's children.
    async fn create_tasks(&self, tasks: &[Task]) -> Result<usize, StoreError>;
    /// The live ones of `task_ids` (missing and expired ones are absent); order is not kept.
    async fn get_tasks(&self, task_ids: &[TaskId], now: Timestamp)
    -> Result<Vec<Task>, StoreError>;
    /// Live tasks only, newest first unless `Asc`; pages are full unless it is the last one.
    async fn list_tasks(&self, query: &TaskQuery, now: Timestamp)
    -> Result<Page<Task>, StoreError>;
    /// `ConditionFailed` if the task is not as `update` expects.
    async fn update_task(&self, task_id: TaskId, update: TaskUpdate) -> Result<Task, StoreError>;
}

#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Sends each message to its task type's queue, in batches where the backend has them.
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError>;
}

/// One received message, as SQS hands it to Lambda.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: Timestamp,
}

/// The consuming side of the queues, for the local binary's pollers (Lambda's event source
/// mapping does this on AWS).
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    async fn receive(
        &self,
        task_type: TaskType,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn delete(
        &self,
        task_type: TaskType,
        receipt_handles: &[String],
    ) -> Result<(), QueueError>;
    /// Makes an in-flight message visible again after `delay` (ChangeMessageVisibility).
    async fn retry_later(
        &self,
        task_type: TaskType,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
    /// The queue's ARN-like name, carried in each record's `eventSourceARN`.
    fn source_arn(&self, task_type: TaskType) -> String;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told: for tests of expiry and availability windows.
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(start.micros()))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0
            .fetch_add(secs * 1_000_000, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
