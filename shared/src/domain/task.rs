//! Background tasks: the record clients follow, its lifecycle rules, and the queue message body.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;

/// Completed tasks stay visible this long (DynamoDB TTL on `expires_at`).
pub const RETENTION_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// A child task's id: a function of its parent and what it works on, so a retried fan-out
    /// finds the children it already created instead of creating them again. Formatted as a
    /// version-4 UUID like every other task id (the bits come from a SHA-1 name hash).
    pub fn derived(parent: TaskId, name: &str) -> Self {
        let hashed = Uuid::new_v5(&parent.0, name.as_bytes());
        Self(uuid::Builder::from_random_bytes(hashed.into_bytes()).into_uuid())
    }

    /// Only UUIDs are task ids; anything else is "not found", never an error of ours.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text.trim()).ok().map(Self)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownName(other.to_owned())),
                }
            }
        }
    };
}
pub(crate) use string_enum;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

string_enum!(
    /// The eight task types of DESIGN.md §3; each has its own queue and worker.
    TaskType {
        PostCreate => "post_create",
        PostUpdate => "post_update",
        PostDelete => "post_delete",
        BatchDelete => "batch_delete",
        AvailabilityUpdate => "availability_update",
        AvailabilityDelete => "availability_delete",
        PostUpdateAvailability => "post_update_availability",
        PostDeleteAvailability => "post_delete_availability",
    }
);

string_enum!(
    TaskStatus {
        Queued => "QUEUED",
        InProgress => "IN_PROGRESS",
        Complete => "COMPLETE",
        Failed => "FAILED",
    }
);

impl TaskType {
    /// The task types a mutation of the API creates (the API sends to these queues).
    pub const FROM_API: &'static [TaskType] = &[
        TaskType::PostCreate,
        TaskType::PostUpdate,
        TaskType::PostDelete,
        TaskType::BatchDelete,
        TaskType::AvailabilityUpdate,
        TaskType::AvailabilityDelete,
    ];

    /// The child task types this type's worker creates. A batch delete queues `post_delete` per
    /// deleted object and `post_update` per object that only lost a translation.
    pub fn children(self) -> &'static [TaskType] {
        match self {
            TaskType::BatchDelete => &[TaskType::PostDelete, TaskType::PostUpdate],
            TaskType::AvailabilityUpdate => &[TaskType::PostUpdateAvailability],
            TaskType::AvailabilityDelete => &[TaskType::PostDeleteAvailability],
            _ => &[],
        }
    }

    /// Every queue this type's worker sends to: its children's, and a fan-out its own (it
    /// continues in a later delivery).
    pub fn sends_to(self) -> &'static [TaskType] {
        match self {
            TaskType::BatchDelete => &[TaskType::PostDelete, TaskType::PostUpdate],
            TaskType::AvailabilityUpdate => &[
                TaskType::PostUpdateAvailability,
                TaskType::AvailabilityUpdate,
            ],
            TaskType::AvailabilityDelete => &[
                TaskType::PostDeleteAvailability,
                TaskType::AvailabilityDelete,
            ],
            _ => &[],
        }
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Complete | TaskStatus::Failed)
    }

    /// Forward only: QUEUED → IN_PROGRESS → COMPLETE | FAILED (QUEUED may fail directly).
    pub fn can_move_to(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Queued, InProgress) | (InProgress, Complete | Failed) | (Queued, Failed)
        )
    }
}

/// Most messages are fixed texts; borrowing them keeps 100k tasks small in memory.
pub type Message = Cow<'static, str>;

/// A task keeps at most this many messages: the first `KEEP_FIRST`, a note of how many were
/// dropped, and the newest. With `MAX_MESSAGE_BYTES` each, an item stays far below DynamoDB's
/// 400 KB whatever a task does.
pub const MAX_MESSAGES: usize = 100;
pub const KEEP_FIRST: usize = 10;
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// Cuts a message to `MAX_MESSAGE_BYTES` (on a character boundary), marking the cut.
pub fn bounded_message(message: Message) -> Message {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Message::Owned(format!("{}…", &message[..end]))
}

/// One entry of `batchDeleteObjects`: the object, or with `language` only that translation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeleteEntry {
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl DeleteEntry {
    /// What the child task created for this entry is derived from.
    pub fn child_name(&self) -> String {
        match &self.language {
            Some(language) => format!("{}#{language}", self.uid),
            None => self.uid.clone(),
        }
    }
}

/// Where a fan-out stands, kept on its task so a later delivery continues from there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The store's cursor into the availability's linked objects; `None` at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Children queued so far.
    #[serde(default)]
    pub queued: u64,
    /// How many checkpoints were written: every update of a checkpointed task is conditional on
    /// it, so two deliveries cannot both advance from the same point.
    #[serde(default)]
    pub step: u32,
}

/// A relationship a `post_update` must take off the other side (the object's own side is gone already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlinked {
    pub relationship: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub task_id: TaskId,
    pub task_type: TaskType,
    pub object_uid: String,
    pub status: TaskStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub messages: Vec<Message>,
    /// How many messages were ever appended: the position the next one takes. Appends are
    /// conditional on it, so a retried step never writes a message twice.
    pub message_count: u32,
    /// DynamoDB TTL: completion + 24 h. `None` while the task is live.
    pub expires_at: Option<Timestamp>,
    /// Relationships removed by the mutation, for `post_update` to mirror.
    pub unlinked: Vec<Unlinked>,
    /// The task that queued this one (fan-out children and batch deletes' `post_delete`s).
    pub parent: Option<TaskId>,
    /// A batch delete's entries.
    pub entries: Vec<DeleteEntry>,
    /// A fan-out's checkpoint.
    pub progress: Progress,
    /// The delivery working on the task while IN_PROGRESS, and until when it may: another
    /// delivery takes over only after that.
    pub lease: Option<Lease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// One delivery's random id.
    pub owner: String,
    pub until: Timestamp,
}

impl Task {
    pub fn new_queued(task_type: TaskType, object_uid: impl Into<String>, now: Timestamp) -> Self {
        Task {
            task_id: TaskId::random(),
            task_type,
            object_uid: object_uid.into(),
            status: TaskStatus::Queued,
            created_at: now,
            updated_at: now,
            messages: Vec::new(),
            message_count: 0,
            expires_at: None,
            unlinked: Vec::new(),
            parent: None,
            entries: Vec::new(),
            progress: Progress::default(),
            lease: None,
        }
    }

    /// A child of `parent` working on `object_uid`, with an id derived from both (`name`
    /// distinguishes several children per object, such as one per translation).
    pub fn new_child(
        parent: &Task,
        task_type: TaskType,
        object_uid: impl Into<String>,
        name: &str,
        now: Timestamp,
    ) -> Self {
        let mut task = Task::new_queued(task_type, object_uid, now);
        task.task_id = TaskId::derived(parent.task_id, name);
        task.parent = Some(parent.task_id);
        task
    }

    /// The stored list once `new` is appended, if that needs more than appending: past
    /// `MAX_MESSAGES` the first `KEEP_FIRST` stay, then a note of how many were dropped, then
    /// the newest. `None` when plain appending stays within the bound.
    pub fn messages_after(&self, new: &[Message]) -> Option<Vec<Message>> {
        if self.messages.len() + new.len() <= MAX_MESSAGES {
            return None;
        }
        let total = self.message_count as usize + new.len();
        // The list as it would be, without the note of an earlier cut (which sits right after
        // the head): its first KEEP_FIRST are the task's first messages.
        let cut_before = self.messages.len() < self.message_count as usize;
        let all: Vec<&Message> = self
            .messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !(cut_before && *i == KEEP_FIRST))
            .map(|(_, m)| m)
            .chain(new)
            .collect();
        let head = &all[..KEEP_FIRST.min(all.len())];
        let tail = &all[head.len()..];
        let newest = &tail[tail.len().saturating_sub(MAX_MESSAGES - KEEP_FIRST - 1)..];
        let dropped = total - head.len() - newest.len();
        let mut list: Vec<Message> = head.iter().map(|m| (*m).clone()).collect();
        list.push(Message::Owned(format!("… {dropped} messages dropped …")));
        list.extend(newest.iter().map(|m| (*m).clone()));
        Some(list)
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn queue_message(&self) -> TaskMessage {
        TaskMessage {
            task_id: self.task_id,
            task_type: self.task_type,
            object_uid: self.object_uid.clone(),
        }
    }
}

/// The body of every queue message: a pointer to the task record, which is the source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: TaskId,
    pub task_type: TaskType,
    pub object_uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_only_moves_forward() {
        use TaskStatus::*;
        assert!(Queued.can_move_to(InProgress));
        assert!(InProgress.can_move_to(Complete));
        assert!(InProgress.can_move_to(Failed));
        assert!(!Complete.can_move_to(InProgress));
        assert!(!Complete.can_move_to(Queued));
        assert!(!InProgress.can_move_to(Queued));
        assert!(!Failed.can_move_to(Complete));
    }

    #[test]
    fn task_message_round_trips_as_json() {
        let task = Task::new_queued(TaskType::PostCreate, "01HZY", Timestamp::from_secs(1));
        let body = serde_json::to_string(&task.queue_message()).expect("serialize");
        assert!(body.contains("\"task_type\":\"post_create\""));
        let back: TaskMessage = serde_json::from_str(&body).expect("parse");
        assert_eq!(back, task.queue_message());
    }

    #[test]
    fn messages_stay_bounded_keeping_the_first_and_the_newest() {
        let mut task = Task::new_queued(TaskType::PostCreate, "01HZY", Timestamp::from_secs(1));
        for i in 0..600 {
            let new = [Message::Owned(format!("m{i}"))];
            match task.messages_after(&new) {
                Some(list) => task.messages = list,
                None => task.messages.extend(new),
            }
            task.message_count += 1;
            assert!(task.messages.len() <= MAX_MESSAGES);
        }
        assert_eq!(task.messages.len(), MAX_MESSAGES);
        assert_eq!(task.messages[0], "m0");
        assert_eq!(task.messages[KEEP_FIRST - 1], "m9");
        assert_eq!(task.messages[KEEP_FIRST], "… 501 messages dropped …");
        assert_eq!(task.messages[KEEP_FIRST + 1], "m511");
        assert_eq!(task.messages[MAX_MESSAGES - 1], "m599");
    }

    #[test]
    fn one_large_append_keeps_the_first_ten_and_counts_the_dropped() {
        // A batch delete of 100 missing uids: "Job started" is stored, 102 messages follow at once.
        let mut task = Task::new_queued(
            TaskType::BatchDelete,
            "BATCH_DELETE",
            Timestamp::from_secs(1),
        );
        task.messages.push(Message::Borrowed("Job started"));
        task.message_count = 1;
        let new: Vec<Message> = (0..102).map(|i| Message::Owned(format!("n{i}"))).collect();
        let list = task.messages_after(&new).expect("over the bound");
        assert_eq!(list.len(), MAX_MESSAGES);
        assert_eq!(list[0], "Job started");
        assert_eq!(list[KEEP_FIRST - 1], "n8");
        assert_eq!(list[KEEP_FIRST], "… 4 messages dropped …");
        assert_eq!(list[KEEP_FIRST + 1], "n13");
        assert_eq!(list[MAX_MESSAGES - 1], "n101");
    }

    #[test]
    fn long_messages_are_cut() {
        let long = Message::Owned("é".repeat(MAX_MESSAGE_BYTES));
        let cut = bounded_message(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded_message(Message::Borrowed("short")), "short");
    }

    #[test]
    fn derived_ids_are_stable_v4_and_distinct() {
        let parent = TaskId::random();
        let a = TaskId::derived(parent, "01OBJECT");
        assert_eq!(a, TaskId::derived(parent, "01OBJECT"));
        assert_ne!(a, TaskId::derived(parent, "01OTHER"));
        assert_ne!(a, TaskId::derived(TaskId::random(), "01OBJECT"));
        assert_eq!(a.0.get_version_num(), 4);
        assert_eq!(TaskId::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn task_type_names_parse_back() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>(), Ok(*t));
        }
        assert!("post_nothing".parse::<TaskType>().is_err());
    }
}
