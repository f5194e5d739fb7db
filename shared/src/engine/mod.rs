//! The task engine: forward-only conditional transitions around idempotent processors, and the
//! batch handler that every worker (Lambda or local poller) goes through.

mod batch;
mod poller;
mod processors;
mod sweeper;

use std::sync::Arc;

use tracing::{debug, instrument, warn};

pub use batch::{Worker, WorkerError};
pub use poller::{Poller, sqs_event};
pub use sweeper::{SweepLimits, resend_stale};

use std::time::Duration;

use crate::domain::{Lease, Message, RETENTION_SECS, Task, TaskMessage, TaskStatus, Timestamp};
use crate::ports::{Clock, ContentStore, QueueError, StoreError, TaskQueue, TaskStore, TaskUpdate};

/// Everything the service and the processors use, composed once at start-up.
#[derive(Clone)]
pub struct Deps {
    pub content: Arc<dyn ContentStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub queue: Arc<dyn TaskQueue>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Worth another delivery: the record goes back to the queue.
    #[error("transient failure")]
    Transient(#[from] StoreError),
    /// A queue could not take a message: also worth another delivery.
    #[error("transient queue failure")]
    Queue(#[from] QueueError),
    /// Another delivery holds the task's lease: this one comes back later, when that one has
    /// finished or its lease has run out.
    #[error("another delivery holds the task until {until}")]
    Busy { until: Timestamp },
    /// The work cannot succeed: the task ends FAILED with this reason in its messages.
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    /// A fan-out saved its checkpoint and sent its own message again: a later delivery goes on.
    Continued,
    /// A duplicate or late delivery of a task that had already ended: nothing was written.
    AlreadyDone,
    /// No live task with that id (never written, or expired): nothing to do.
    Unknown,
}

/// The messages a run plans, in order, from position `base` of the task's list. The engine
/// appends only those past the task's `message_count`, so a re-run after a crash writes each
/// message once. A run from the start plans every message from "Job started" on; a run from a
/// checkpoint plans those after it.
#[derive(Debug)]
pub struct Steps {
    base: u32,
    messages: Vec<Message>,
}

pub const JOB_STARTED: &str = "Job started";

impl Steps {
    fn for_task(task: &Task) -> Self {
        if task.progress.step == 0 {
            Steps {
                base: 0,
                messages: vec![Message::Borrowed(JOB_STARTED)],
            }
        } else {
            Steps::resume(task.message_count)
        }
    }

    /// A plan that starts after the `written` messages the task holds.
    fn resume(written: u32) -> Self {
        Steps {
            base: written,
            messages: Vec::new(),
        }
    }

    /// The planned messages `task` does not hold yet; afterwards the plan starts at its end.
    fn take_unwritten(&mut self, task: &Task) -> Vec<Message> {
        let written = task.message_count.saturating_sub(self.base) as usize;
        let messages = std::mem::take(&mut self.messages);
        self.base += u32::try_from(messages.len()).unwrap_or(u32::MAX);
        messages.into_iter().skip(written).collect()
    }

    pub fn say(&mut self, message: &'static str) {
        self.messages.push(Message::Borrowed(message));
    }

    pub fn say_owned(&mut self, message: String) {
        self.messages.push(Message::Owned(message));
    }
}

/// An error and its sources, for a message a client reads.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// How often a run re-reads and retries after losing a conditional write to a concurrent one.
const MAX_CONFLICTS: usize = 8;

/// How a fan-out walks an availability's linked objects.
#[derive(Debug, Clone, Copy)]
pub struct FanOutLimits {
    /// Linked objects read, and children created, per page (one checkpoint each).
    pub page: usize,
    /// Pages per delivery: then the task continues in a new one, well inside a Lambda timeout.
    pub pages_per_run: usize,
}

impl Default for FanOutLimits {
    fn default() -> Self {
        FanOutLimits {
            page: 100,
            pages_per_run: 20,
        }
    }
}

/// How long a delivery holds a task it works on, unless it renews (a fan-out does at each
/// checkpoint). Deployed, it is the worker function's timeout: no run outlives it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

pub struct Engine {
    deps: Deps,
    fan_out: FanOutLimits,
    lease: Duration,
}

impl Engine {
    pub fn new(deps: Deps) -> Self {
        Self::with_fan_out(deps, FanOutLimits::default())
    }

    pub fn with_fan_out(deps: Deps, fan_out: FanOutLimits) -> Self {
        Engine {
            deps,
            fan_out,
            lease: DEFAULT_LEASE,
        }
    }

    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn lease_for(&self, owner: &str, now: Timestamp) -> Lease {
        Lease {
            owner: owner.to_owned(),
            until: now.plus(self.lease),
        }
    }

    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// Runs one delivery of a task message to its end, or returns a transient error.
    pub async fn run(&self, message: &TaskMessage) -> Result<Outcome, TaskError> {
        self.run_attempt(message, false).await
    }

    /// Runs one delivery; on its `last_attempt` (the queue's redrive limit reached) a transient
    /// failure after the start ends the task FAILED with the reason, instead of leaving it
    /// IN_PROGRESS while its message goes to the dead-letter queue.
    #[instrument(skip(self, message), fields(task_id = %message.task_id, task_type = %message.task_type), err)]
    pub async fn run_attempt(
        &self,
        message: &TaskMessage,
        last_attempt: bool,
    ) -> Result<Outcome, TaskError> {
        let tasks = &self.deps.tasks;
        let me = uuid::Uuid::new_v4().to_string();
        for _ in 0..MAX_CONFLICTS {
            let now = self.deps.clock.now();
            let Some(mut task) = tasks.get_task(message.task_id, now).await? else {
                warn!("no live task with this id; message dropped");
                return Ok(Outcome::Unknown);
            };
            if task.task_type != message.task_type {
                warn!(stored = %task.task_type, "message names another task type than the task; dropped");
                return Ok(Outcome::Unknown);
            }
            match task.status {
                TaskStatus::Complete | TaskStatus::Failed => return Ok(Outcome::AlreadyDone),
                TaskStatus::Queued => {
                    let append = if task.message_count == 0 {
                        vec![Message::Borrowed(JOB_STARTED)]
                    } else {
                        Vec::new()
                    };
                    let mut start = TaskUpdate::of(&task, TaskStatus::InProgress, append, now);
                    start.lease = Some(self.lease_for(&me, now));
                    match tasks.update_task(task.task_id, start).await {
                        Ok(started) => task = started,
                        Err(StoreError::ConditionFailed(why)) => {
                            debug!(%why, "lost the start to another delivery; re-reading");
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                TaskStatus::InProgress => match &task.lease {
                    Some(lease) if lease.owner == me => {}
                    Some(lease) if lease.until > now => {
                        return Err(TaskError::Busy { until: lease.until });
                    }
                    // The holder stopped (crashed, or timed out) without finishing: take over.
                    // Its late writes fail: they expect it to still hold the lease.
                    _ => {
                        let mut take =
                            TaskUpdate::of(&task, TaskStatus::InProgress, Vec::new(), now);
                        take.lease = Some(self.lease_for(&me, now));
                        match tasks.update_task(task.task_id, take).await {
                            Ok(taken) => task = taken,
                            Err(StoreError::ConditionFailed(why)) => {
                                debug!(%why, "lost the takeover to another delivery; re-reading");
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                },
            }

            let mut run = processors::Run {
                deps: &self.deps,
                fan_out: self.fan_out,
                steps: Steps::for_task(&task),
                task,
                lost_race: false,
                renew: self.lease,
            };
            let status = match processors::run(&mut run).await {
                Ok(processors::Flow::Done) => TaskStatus::Complete,
                Ok(processors::Flow::Continue) => {
                    self.deps.queue.send(&[run.task.queue_message()]).await?;
                    return Ok(Outcome::Continued);
                }
                Err(TaskError::Failed(reason)) => {
                    run.steps.say_owned(format!("Job failed: {reason}"));
                    TaskStatus::Failed
                }
                Err(TaskError::Transient(StoreError::ConditionFailed(why))) if run.lost_race => {
                    debug!(%why, "another delivery checkpointed this task first; re-reading");
                    continue;
                }
                Err(transient) if last_attempt => {
                    run.steps.say_owned(format!(
                        "Job failed: retries exhausted; last error: {}",
                        error_chain(&transient)
                    ));
                    TaskStatus::Failed
                }
                Err(transient) => {
                    self.release(&run.task).await;
                    return Err(transient);
                }
            };
            let (task, steps) = (run.task, run.steps);
            match self.finish(&task, status, steps).await {
                Ok(()) => {
                    return Ok(match status {
                        TaskStatus::Failed => Outcome::Failed,
                        _ => Outcome::Completed,
                    });
                }
                Err(StoreError::ConditionFailed(why)) => {
                    debug!(%why, "another delivery moved the task on; re-reading");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(StoreError::ConditionFailed(
            "the task kept changing under this delivery".to_owned(),
        )))
    }

    /// For the consumer of the dead-letter queues: a task whose message ended there is FAILED
    /// with `reason`, unless it has finished meanwhile or a delivery still holds a live lease on
    /// it (then `Busy`: the dead letter is looked at again later).
    #[instrument(skip(self, message), fields(task_id = %message.task_id, task_type = %message.task_type), err)]
    pub async fn fail_abandoned(
        &self,
        message: &TaskMessage,
        reason: &str,
    ) -> Result<Outcome, TaskError> {
        for _ in 0..MAX_CONFLICTS {
            let now = self.deps.clock.now();
            let Some(task) = self.deps.tasks.get_task(message.task_id, now).await? else {
                return Ok(Outcome::Unknown);
            };
            if task.status.is_terminal() {
                return Ok(Outcome::AlreadyDone);
            }
            if let Some(lease) = &task.lease
                && task.status == TaskStatus::InProgress
                && lease.until > now
            {
                return Err(TaskError::Busy { until: lease.until });
            }
            let mut steps = Steps::for_task(&task);
            if task.message_count > 0 {
                // "Job started" is written already (or a checkpoint holds the run so far).
                steps = Steps::resume(task.message_count);
            }
            steps.say_owned(format!("Job failed: {reason}"));
            match self.finish(&task, TaskStatus::Failed, steps).await {
                Ok(()) => return Ok(Outcome::Failed),
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(StoreError::ConditionFailed(
            "the task kept changing while it was marked failed".to_owned(),
        )))
    }

    /// Gives up this run's lease after a transient failure, so the redelivery can take the task
    /// at once instead of waiting for the lease to run out. Best effort: if the store is what
    /// failed, the lease simply expires.
    async fn release(&self, task: &Task) {
        let now = self.deps.clock.now();
        let mut update = TaskUpdate::of(task, TaskStatus::InProgress, Vec::new(), now);
        update.lease = task.lease.as_ref().map(|lease| Lease {
            owner: lease.owner.clone(),
            until: now,
        });
        if let Err(e) = self.deps.tasks.update_task(task.task_id, update).await {
            debug!(error = %e, "could not release the lease; it will run out");
        }
    }

    async fn finish(
        &self,
        task: &Task,
        status: TaskStatus,
        mut steps: Steps,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let mut update = TaskUpdate::of(task, status, steps.take_unwritten(task), now);
        update.expires_at = Some(now.plus_secs(RETENTION_SECS));
        self.deps
            .tasks
            .update_task(task.task_id, update)
            .await
            .map(drop)
    }
}
