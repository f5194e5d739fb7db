//! The domain: types and rules, no storage and no AWS.

mod content;
mod task;
mod time;

pub use content::*;
pub use task::{
    DeleteEntry, KEEP_FIRST, Lease, MAX_MESSAGE_BYTES, MAX_MESSAGES, Message, Progress,
    RETENTION_SECS, Task, TaskId, TaskMessage, TaskStatus, TaskType, UnknownName, Unlinked,
    bounded_message,
};
pub use time::*;
