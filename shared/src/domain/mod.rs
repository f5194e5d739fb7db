//! The domain: types and rules, no storage and no AWS.

mod content;
mod task;
mod time;

pub use content::*;
pub use task::{
    DeleteEntry, Message, Progress, RETENTION_SECS, Task, TaskId, TaskMessage, TaskStatus,
    TaskType, UnknownName, Unlinked,
};
pub use time::*;
