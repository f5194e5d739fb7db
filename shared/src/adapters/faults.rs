//! A fault-injection layer around the ports, for the test suite: it fails a fraction of store
//! and queue calls (before the call, or after it took effect, as a timeout after a commit
//! looks), stalls a fraction of calls forever (a worker killed between two steps, once its
//! record timeout drops the run), poisons chosen objects, and counts what it injected.
//! It wraps any adapters, in memory or on the emulator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::domain::TaskMessage;
use crate::domain::{
    Availability, ContentObject, ObjectType, Relationship, Task, TaskId, Timestamp,
};
use crate::ports::{
    BoxError, ContentStore, ContentWrite, Cursor, Edge, Page, QueueError, StoreError, TaskQuery,
    TaskQueue, TaskStore, TaskUpdate,
};

/// What to inject, as probabilities per call (0.0 to 1.0).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// A store call fails without taking effect.
    pub store_fail_before: f64,
    /// A store write takes effect, then reports a failure.
    pub store_fail_after: f64,
    /// A store call never returns.
    pub stall: f64,
    /// A send fails without sending.
    pub send_fail: f64,
    /// Objects whose every read fails (a task on them can never succeed).
    pub poisoned: Vec<String>,
}

/// Counts injected faults by kind, and the calls seen.
#[derive(Debug, Default)]
pub struct FaultLog {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl FaultLog {
    fn count(&self, kind: &'static str) {
        *self.counts.lock().entry(kind).or_default() += 1;
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().clone()
    }
}

/// The shared dice and log of one fault layer (xorshift: no dependency, reproducible per seed).
pub struct Faults {
    pub plan: Mutex<FaultPlan>,
    pub log: FaultLog,
    state: AtomicU64,
}

impl Faults {
    pub fn new(plan: FaultPlan, seed: u64) -> Arc<Self> {
        Arc::new(Faults {
            plan: Mutex::new(plan),
            log: FaultLog::default(),
            state: AtomicU64::new(seed.max(1)),
        })
    }

    fn roll(&self) -> f64 {
        let mut x = self.state.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            match self
                .state
                .compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (next >> 11) as f64 / (1u64 << 53) as f64,
                Err(seen) => x = seen,
            }
        }
    }

    fn injected(kind: &'static str) -> StoreError {
        StoreError::Unavailable(BoxError::from(format!("injected fault: {kind}")))
    }

    /// Before a store call: maybe stall forever, maybe fail.
    async fn before(&self, write: bool) -> Result<(), StoreError> {
        let (stall, fail) = {
            let plan = self.plan.lock();
            (plan.stall, plan.store_fail_before)
        };
        if self.roll() < stall {
            self.log.count(if write {
                "killed before a write"
            } else {
                "killed before a read"
            });
            std::future::pending::<()>().await;
        }
        if self.roll() < fail {
            self.log.count("store call failed");
            return Err(Self::injected("store call failed"));
        }
        Ok(())
    }

    /// After a store write took effect: maybe report a failure anyway.
    fn after(&self) -> Result<(), StoreError> {
        if self.roll() < self.plan.lock().store_fail_after {
            self.log.count("store write failed after taking effect");
            return Err(Self::injected("failed after taking effect"));
        }
        Ok(())
    }

    fn poisoned(&self, uid: &str) -> Result<(), StoreError> {
        if self.plan.lock().poisoned.iter().any(|p| p == uid) {
            self.log.count("poisoned read");
            return Err(Self::injected("poisoned object"));
        }
        Ok(())
    }
}

/// A content and task store with faults.
pub struct FaultyStore {
    pub content: Arc<dyn ContentStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl ContentStore for FaultyStore {
    async fn get_object(&self, uid: &str) -> Result<Option<ContentObject>, StoreError> {
        self.faults.before(false).await?;
        self.faults.poisoned(uid)?;
        self.content.get_object(uid).await
    }
    async fn get_objects(&self, uids: &[String]) -> Result<Vec<ContentObject>, StoreError> {
        self.faults.before(false).await?;
        self.content.get_objects(uids).await
    }
    async fn list_objects(
        &self,
        object_type: ObjectType,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ContentObject>, StoreError> {
        self.faults.before(false).await?;
        self.content.list_objects(object_type, cursor, limit).await
    }
    async fn find_by_external_id(
        &self,
        scope: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.faults.before(false).await?;
        self.content.find_by_external_id(scope, external_id).await
    }
    async fn get_availability(&self, uid: &str) -> Result<Option<Availability>, StoreError> {
        self.faults.before(false).await?;
        self.content.get_availability(uid).await
    }
    async fn get_availabilities(&self, uids: &[String]) -> Result<Vec<Availability>, StoreError> {
        self.faults.before(false).await?;
        self.content.get_availabilities(uids).await
    }
    async fn list_availability(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Availability>, StoreError> {
        self.faults.before(false).await?;
        self.content.list_availability(cursor, limit).await
    }
    async fn list_edges(
        &self,
        from: &str,
        relationship: Option<Relationship>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Edge>, StoreError> {
        self.faults.before(false).await?;
        self.content
            .list_edges(from, relationship, cursor, limit)
            .await
    }
    async fn list_linked_objects(
        &self,
        availability_uid: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.faults.before(false).await?;
        self.content
            .list_linked_objects(availability_uid, cursor, limit)
            .await
    }
    async fn write(&self, write: ContentWrite) -> Result<(), StoreError> {
        self.faults.before(true).await?;
        self.content.write(write).await?;
        self.faults.after()
    }
}

#[async_trait]
impl TaskStore for FaultyStore {
    async fn get_task(&self, task_id: TaskId, now: Timestamp) -> Result<Option<Task>, StoreError> {
        self.faults.before(false).await?;
        self.tasks.get_task(task_id, now).await
    }
    async fn create_tasks(&self, tasks: &[Task]) -> Result<usize, StoreError> {
        self.faults.before(true).await?;
        let created = self.tasks.create_tasks(tasks).await?;
        self.faults.after()?;
        Ok(created)
    }
    async fn get_tasks(
        &self,
        task_ids: &[TaskId],
        now: Timestamp,
    ) -> Result<Vec<Task>, StoreError> {
        self.faults.before(false).await?;
        self.tasks.get_tasks(task_ids, now).await
    }
    async fn list_tasks(
        &self,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        self.faults.before(false).await?;
        self.tasks.list_tasks(query, now).await
    }
    async fn update_task(&self, task_id: TaskId, update: TaskUpdate) -> Result<Task, StoreError> {
        self.faults.before(true).await?;
        let task = self.tasks.update_task(task_id, update).await?;
        self.faults.after()?;
        Ok(task)
    }
}

/// A queue that fails a fraction of sends, and may send everything twice.
pub struct FaultyQueue {
    pub inner: Arc<dyn TaskQueue>,
    pub faults: Arc<Faults>,
    pub duplicate: bool,
}

#[async_trait]
impl TaskQueue for FaultyQueue {
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        if self.faults.roll() < self.faults.plan.lock().send_fail {
            self.faults.log.count("send failed");
            return Err(QueueError::Unavailable(BoxError::from(
                "injected fault: send failed",
            )));
        }
        self.inner.send(messages).await?;
        if self.duplicate {
            self.faults.log.count("sends duplicated");
            self.inner.send(messages).await?;
        }
        Ok(())
    }
}
