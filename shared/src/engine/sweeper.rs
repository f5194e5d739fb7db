//! The enqueue gap: a task is written before its message is sent, so a crash or a failed
//! `SendMessage` in between leaves it QUEUED with no message. The sweeper finds tasks QUEUED for
//! longer than a threshold, through the status index (oldest first, never a scan), and sends
//! their messages again; a duplicate of a message that did arrive is harmless.

use std::time::Duration;

use tracing::{info, instrument};

use super::{Deps, TaskError};
use crate::domain::{TaskMessage, TaskStatus};
use crate::ports::{Order, TaskQuery};

/// How a sweep chooses what to re-send.
#[derive(Debug, Clone, Copy)]
pub struct SweepLimits {
    /// A task QUEUED for longer than this is presumed to have lost its message. Keep it well
    /// above how long a message may wait in a long queue: each re-send is a duplicate there.
    pub older_than: Duration,
    /// At most this many messages per sweep.
    pub max: usize,
}

impl Default for SweepLimits {
    fn default() -> Self {
        SweepLimits {
            older_than: Duration::from_secs(300),
            max: 1000,
        }
    }
}

/// Re-sends the messages of the oldest stale QUEUED tasks; returns how many it sent.
#[instrument(skip(deps), err)]
pub async fn resend_stale(deps: &Deps, limits: SweepLimits) -> Result<usize, TaskError> {
    let now = deps.clock.now();
    let cutoff = now.plus_secs(-i64::try_from(limits.older_than.as_secs()).unwrap_or(i64::MAX));
    let mut stale: Vec<TaskMessage> = Vec::new();
    let mut cursor = None;
    'pages: loop {
        let page = deps
            .tasks
            .list_tasks(
                &TaskQuery {
                    status: Some(TaskStatus::Queued),
                    object_uid: None,
                    task_type: None,
                    order: Order::Asc,
                    limit: 100.min(limits.max.max(1)),
                    cursor,
                },
                now,
            )
            .await?;
        for task in page.items {
            if task.created_at > cutoff || stale.len() >= limits.max {
                break 'pages;
            }
            stale.push(task.queue_message());
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if !stale.is_empty() {
        deps.queue.send(&stale).await?;
        info!(
            count = stale.len(),
            "re-sent the messages of stale QUEUED tasks"
        );
    }
    Ok(stale.len())
}
