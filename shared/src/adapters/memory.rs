//! `MemoryStore`: content and tasks in one process, with DynamoDB's semantics — conditional
//! writes, all-or-nothing transactions, strongly consistent reads, pages with opaque cursors.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::domain::{
    Availability, ContentObject, ObjectType, Relationship, Task, TaskId, TaskStatus, Timestamp,
};
use crate::ports::{
    AvailabilityOp, ContentStore, ContentWrite, Cursor, Edge, Expect, ExternalIdOp, ObjectOp,
    Order, Page, StoreError, TaskQuery, TaskStore, TaskUpdate,
};

#[derive(Default)]
struct State {
    objects: HashMap<String, ContentObject>,
    by_type: HashMap<ObjectType, BTreeSet<String>>,
    availabilities: std::collections::BTreeMap<String, Availability>,
    external_ids: HashMap<(String, String), String>,
    edges: BTreeSet<(String, Relationship, String)>,
    availability_links: BTreeSet<(String, String)>,
    tasks: HashMap<TaskId, Task>,
    /// (created_at, task_id) over every task, and per status: the two listing indexes.
    task_index: BTreeSet<(Timestamp, TaskId)>,
    status_index: BTreeSet<(TaskStatus, Timestamp, TaskId)>,
}

/// One lock over everything: transactions across content and tasks are trivially atomic, and each
/// critical section is a few map operations.
pub struct MemoryStore {
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store holding the built-in `always` availability, as a fresh deployment does.
    pub fn new() -> Self {
        let mut state = State::default();
        let always = Availability::always();
        if let Some(ext) = &always.external_id {
            state
                .external_ids
                .insert(("Availability".to_owned(), ext.clone()), always.uid.clone());
        }
        state.availabilities.insert(always.uid.clone(), always);
        MemoryStore {
            state: Mutex::new(state),
        }
    }

    /// What DynamoDB's TTL process does, eventually: removes tasks expired at `now`.
    pub fn purge_expired_tasks(&self, now: Timestamp) -> usize {
        let mut st = self.state.lock();
        let expired: Vec<TaskId> = st
            .tasks
            .values()
            .filter(|t| t.is_expired(now))
            .map(|t| t.task_id)
            .collect();
        for id in &expired {
            if let Some(task) = st.tasks.remove(id) {
                st.task_index.remove(&(task.created_at, task.task_id));
                st.status_index
                    .remove(&(task.status, task.created_at, task.task_id));
            }
        }
        expired.len()
    }

    /// Writes a task as it is, bypassing the rules: for tests that need a given stored state.
    pub fn insert_task_raw(&self, task: Task) {
        let mut st = self.state.lock();
        st.index_task(&task);
        st.tasks.insert(task.task_id, task);
    }
}

impl State {
    fn index_task(&mut self, task: &Task) {
        self.task_index.insert((task.created_at, task.task_id));
        self.status_index
            .insert((task.status, task.created_at, task.task_id));
    }

    fn check_expect(found: Option<u64>, expect: Expect, what: &str) -> Result<(), StoreError> {
        match (expect, found) {
            (Expect::Absent, None) => Ok(()),
            (Expect::Version(v), Some(found)) if found == v => Ok(()),
            (Expect::Absent, Some(_)) => Err(StoreError::ConditionFailed(format!(
                "{what} already exists"
            ))),
            (Expect::Version(_), None) => Err(StoreError::ConditionFailed(format!(
                "{what} does not exist"
            ))),
            (Expect::Version(v), Some(found)) => Err(StoreError::ConditionFailed(format!(
                "{what} is at version {found}, expected {v}"
            ))),
        }
    }

    /// Every condition of the transaction, checked before anything is applied.
    fn check(&self, write: &ContentWrite) -> Result<(), StoreError> {
        for op in &write.objects {
            let (uid, expect) = match op {
                ObjectOp::Put { object, expect } => (&object.uid, *expect),
                ObjectOp::Delete { uid, expect } => (uid, *expect),
            };
            let found = self.objects.get(uid).map(|o| o.version);
            Self::check_expect(found, expect, &format!("object {uid}"))?;
        }
        if let Some(op) = &write.availability {
            let found = self.availabilities.get(op.uid()).map(|a| a.version);
            Self::check_expect(found, op.expect(), &format!("availability {}", op.uid()))?;
        }
        for op in &write.external_ids {
            match op {
                ExternalIdOp::Claim {
                    scope,
                    external_id,
                    uid,
                } => {
                    let key = (scope.clone(), external_id.clone());
                    if self
                        .external_ids
                        .get(&key)
                        .is_some_and(|owner| owner != uid)
                    {
                        return Err(StoreError::ExternalIdTaken {
                            scope: scope.clone(),
                            external_id: external_id.clone(),
                        });
                    }
                }
                ExternalIdOp::Release { .. } => {}
            }
        }
        for task in &write.new_tasks {
            if self.tasks.contains_key(&task.task_id) {
                return Err(StoreError::ConditionFailed(format!(
                    "task {} already exists",
                    task.task_id
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: ContentWrite) {
        for op in write.objects {
            match op {
                ObjectOp::Put { object, .. } => {
                    self.by_type
                        .entry(object.object_type)
                        .or_default()
                        .insert(object.uid.clone());
                    self.objects.insert(object.uid.clone(), object);
                }
                ObjectOp::Delete { uid, .. } => {
                    if let Some(object) = self.objects.remove(&uid)
                        && let Some(set) = self.by_type.get_mut(&object.object_type)
                    {
                        set.remove(&uid);
                    }
                }
            }
        }
        match write.availability {
            Some(AvailabilityOp::Put { availability, .. }) => {
                self.availabilities
                    .insert(availability.uid.clone(), availability);
            }
            Some(AvailabilityOp::Delete { uid, .. }) => {
                self.availabilities.remove(&uid);
            }
            None => {}
        }
        for op in write.external_ids {
            match op {
                ExternalIdOp::Claim {
                    scope,
                    external_id,
                    uid,
                } => {
                    self.external_ids.insert((scope, external_id), uid);
                }
                ExternalIdOp::Release {
                    scope,
                    external_id,
                    uid,
                } => {
                    let key = (scope, external_id);
                    if self.external_ids.get(&key) == Some(&uid) {
                        self.external_ids.remove(&key);
                    }
                }
            }
        }
        for (edge, put) in write.edges {
            let key = (edge.from, edge.relationship, edge.to);
            if put {
                self.edges.insert(key);
            } else {
                self.edges.remove(&key);
            }
        }
        for (availability, object, put) in write.availability_links {
            if put {
                self.availability_links.insert((availability, object));
            } else {
                self.availability_links.remove(&(availability, object));
            }
        }
        for task in write.new_tasks {
            self.index_task(&task);
            self.tasks.insert(task.task_id, task);
        }
    }
}

/// Pages through ordered keys after an exclusive cursor key, DynamoDB-style: the cursor is the
/// last key returned, and is `None` when nothing follows.
fn page_after<K, T>(
    iter: impl Iterator<Item = K>,
    limit: usize,
    map: impl Fn(&K) -> Option<T>,
    key_of: impl Fn(&K) -> Cursor,
) -> Page<T> {
    let mut items = Vec::new();
    let mut last = None;
    let mut iter = iter.peekable();
    while items.len() < limit {
        let Some(key) = iter.next() else { break };
        if let Some(item) = map(&key) {
            items.push(item);
            last = Some(key);
        }
    }
    let next = match last {
        Some(key) if iter.peek().is_some() => Some(key_of(&key)),
        _ => None,
    };
    Page { items, next }
}

#[async_trait]
impl ContentStore for MemoryStore {
    async fn get_object(&self, uid: &str) -> Result<Option<ContentObject>, StoreError> {
        Ok(self.state.lock().objects.get(uid).cloned())
    }

    async fn get_objects(&self, uids: &[String]) -> Result<Vec<ContentObject>, StoreError> {
        let st = self.state.lock();
        Ok(uids
            .iter()
            .filter_map(|uid| st.objects.get(uid).cloned())
            .collect())
    }

    async fn list_objects(
        &self,
        object_type: ObjectType,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ContentObject>, StoreError> {
        let after: Option<String> = cursor.map(Cursor::decode).transpose()?;
        let st = self.state.lock();
        let Some(set) = st.by_type.get(&object_type) else {
            return Ok(Page::empty());
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(page_after(
            set.range::<String, _>((lower, Bound::Unbounded)),
            limit,
            |uid| st.objects.get(*uid).cloned(),
            Cursor::encode,
        ))
    }

    async fn find_by_external_id(
        &self,
        scope: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .state
            .lock()
            .external_ids
            .get(&(scope.to_owned(), external_id.to_owned()))
            .cloned())
    }

    async fn get_availability(&self, uid: &str) -> Result<Option<Availability>, StoreError> {
        Ok(self.state.lock().availabilities.get(uid).cloned())
    }

    async fn get_availabilities(&self, uids: &[String]) -> Result<Vec<Availability>, StoreError> {
        let st = self.state.lock();
        Ok(uids
            .iter()
            .filter_map(|uid| st.availabilities.get(uid).cloned())
            .collect())
    }

    async fn list_availability(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Availability>, StoreError> {
        let after: Option<String> = cursor.map(Cursor::decode).transpose()?;
        let st = self.state.lock();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(page_after(
            st.availabilities
                .range::<String, _>((lower, Bound::Unbounded))
                .map(|(k, _)| k),
            limit,
            |uid| st.availabilities.get(*uid).cloned(),
            Cursor::encode,
        ))
    }

    async fn list_edges(
        &self,
        from: &str,
        relationship: Option<Relationship>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Edge>, StoreError> {
        let after: Option<(Relationship, String)> = cursor.map(Cursor::decode).transpose()?;
        let st = self.state.lock();
        let lower = match after {
            Some((rel, to)) => Bound::Excluded((from.to_owned(), rel, to)),
            None => Bound::Included((
                from.to_owned(),
                relationship.unwrap_or(Relationship::ALL[0]),
                String::new(),
            )),
        };
        let iter = st
            .edges
            .range((lower, Bound::Unbounded))
            .take_while(|(f, rel, _)| f == from && relationship.is_none_or(|r| r == *rel));
        Ok(page_after(
            iter,
            limit,
            |(f, rel, to)| {
                Some(Edge {
                    from: f.clone(),
                    relationship: *rel,
                    to: to.clone(),
                })
            },
            |(_, rel, to)| Cursor::encode(&(rel, to)),
        ))
    }

    async fn list_linked_objects(
        &self,
        availability_uid: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let after: Option<String> = cursor.map(Cursor::decode).transpose()?;
        let st = self.state.lock();
        let lower = match after {
            Some(obj) => Bound::Excluded((availability_uid.to_owned(), obj)),
            None => Bound::Included((availability_uid.to_owned(), String::new())),
        };
        let iter = st
            .availability_links
            .range((lower, Bound::Unbounded))
            .take_while(|(av, _)| av == availability_uid);
        Ok(page_after(
            iter,
            limit,
            |(_, obj)| Some(obj.clone()),
            |(_, obj)| Cursor::encode(obj),
        ))
    }

    async fn write(&self, write: ContentWrite) -> Result<(), StoreError> {
        write.check_size()?;
        let mut st = self.state.lock();
        st.check(&write)?;
        st.apply(write);
        Ok(())
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn get_task(&self, task_id: TaskId, now: Timestamp) -> Result<Option<Task>, StoreError> {
        Ok(self
            .state
            .lock()
            .tasks
            .get(&task_id)
            .filter(|t| !t.is_expired(now))
            .cloned())
    }

    async fn create_tasks(&self, tasks: &[Task]) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut created = 0;
        for task in tasks {
            if !st.tasks.contains_key(&task.task_id) {
                st.index_task(task);
                st.tasks.insert(task.task_id, task.clone());
                created += 1;
            }
        }
        Ok(created)
    }

    async fn get_tasks(
        &self,
        task_ids: &[TaskId],
        now: Timestamp,
    ) -> Result<Vec<Task>, StoreError> {
        let st = self.state.lock();
        Ok(task_ids
            .iter()
            .filter_map(|id| st.tasks.get(id).filter(|t| !t.is_expired(now)).cloned())
            .collect())
    }

    async fn list_tasks(
        &self,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        let after: Option<(Timestamp, TaskId)> =
            query.cursor.as_ref().map(Cursor::decode).transpose()?;
        let st = self.state.lock();
        let live = |key: &(Timestamp, TaskId)| {
            st.tasks
                .get(&key.1)
                .filter(|t| {
                    !t.is_expired(now)
                        && query.object_uid.as_ref().is_none_or(|u| *u == t.object_uid)
                        && query.task_type.is_none_or(|ty| ty == t.task_type)
                })
                .cloned()
        };
        let desc = query.order == Order::Desc;
        let keys: Box<dyn Iterator<Item = (Timestamp, TaskId)> + '_> = match query.status {
            None => {
                let range = match (desc, after) {
                    (true, Some(k)) => (Bound::Unbounded, Bound::Excluded(k)),
                    (false, Some(k)) => (Bound::Excluded(k), Bound::Unbounded),
                    (_, None) => (Bound::Unbounded, Bound::Unbounded),
                };
                let iter = st.task_index.range(range).copied();
                if desc {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                }
            }
            // The per-status index holds (status, created_at, id).
            Some(status) => {
                let lo = (
                    status,
                    Timestamp::from_micros(i64::MIN),
                    TaskId(uuid::Uuid::nil()),
                );
                let hi = (status, Timestamp::MAX, TaskId(uuid::Uuid::max()));
                let range = match (desc, after) {
                    (true, Some((t, id))) => {
                        (Bound::Included(lo), Bound::Excluded((status, t, id)))
                    }
                    (false, Some((t, id))) => {
                        (Bound::Excluded((status, t, id)), Bound::Included(hi))
                    }
                    (_, None) => (Bound::Included(lo), Bound::Included(hi)),
                };
                let iter = st.status_index.range(range).map(|(_, t, id)| (*t, *id));
                if desc {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                }
            }
        };
        Ok(page_after(keys, query.limit, live, Cursor::encode))
    }

    async fn update_task(&self, task_id: TaskId, update: TaskUpdate) -> Result<Task, StoreError> {
        let mut st = self.state.lock();
        let Some(task) = st.tasks.get_mut(&task_id) else {
            return Err(StoreError::ConditionFailed(format!(
                "task {task_id} does not exist"
            )));
        };
        if task.status != update.expect_status
            || task.message_count != update.expect_message_count
            || task.progress.step != update.expect_step
            || task.lease.as_ref().map(|l| &l.owner) != update.expect_owner.as_ref()
        {
            return Err(StoreError::ConditionFailed(format!(
                "task {task_id} is {} with {} messages at step {}, expected {} with {} at {}",
                task.status,
                task.message_count,
                task.progress.step,
                update.expect_status,
                update.expect_message_count,
                update.expect_step
            )));
        }
        let old_key = (task.status, task.created_at, task.task_id);
        task.status = update.status;
        task.message_count += u32::try_from(update.append.len()).unwrap_or(u32::MAX);
        match update.replace_messages {
            Some(list) => task.messages = list,
            None => task.messages.extend(update.append),
        }
        task.updated_at = update.updated_at;
        if update.expires_at.is_some() {
            task.expires_at = update.expires_at;
        }
        if let Some(progress) = update.progress {
            task.progress = progress;
        }
        if update.lease.is_some() {
            task.lease = update.lease;
        }
        let updated = task.clone();
        if old_key.0 != updated.status {
            st.status_index.remove(&old_key);
            st.status_index
                .insert((updated.status, updated.created_at, updated.task_id));
        }
        Ok(updated)
    }
}
