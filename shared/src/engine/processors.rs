//! What each task type does. Every processor recomputes derived data from the current source of
//! truth (the object's declared availability and its own edges), so running it twice, late, or
//! out of order with another task for the same object converges to the same state.

use std::collections::{BTreeSet, HashMap};

use super::{Deps, FanOutLimits, MAX_CONFLICTS, Steps, TaskError};
use crate::domain::{
    ContentObject, DeleteEntry, Lease, LinkedWindow, Progress, Relationship, Task, TaskId,
    TaskMessage, TaskStatus, TaskType,
};
use crate::ports::{
    ContentWrite, Cursor, Edge, Expect, ExternalIdOp, ObjectOp, StoreError, TaskUpdate,
};

/// Edges and links are written in chunks that fit one DynamoDB transaction.
const CHUNK: usize = 50;
const PAGE: usize = 100;
/// A fan-out names this many children in its messages, then only counts them: the task item
/// must stay far below DynamoDB's 400 KB however many objects an availability has.
const NAMED_CHILDREN: u64 = 100;

/// One delivery's work on one task.
pub(super) struct Run<'a> {
    pub deps: &'a Deps,
    pub fan_out: FanOutLimits,
    pub task: Task,
    pub steps: Steps,
    /// A checkpoint found the task moved on by another delivery: re-read, do not retry later.
    pub lost_race: bool,
    /// How far each checkpoint extends the lease.
    pub renew: std::time::Duration,
}

pub(super) enum Flow {
    Done,
    /// Checkpointed; a new delivery of the same task goes on from there.
    Continue,
}

impl Run<'_> {
    /// Writes the messages planned so far and the new progress, conditional on the task being
    /// where this run read it. The lease is renewed, or with `release` given up, so that the
    /// delivery that continues the task can take it at once.
    async fn checkpoint(
        &mut self,
        cursor: Option<String>,
        queued: u64,
        release: bool,
    ) -> Result<(), TaskError> {
        let progress = Progress {
            cursor,
            queued,
            step: self.task.progress.step + 1,
        };
        let append = self.steps.take_unwritten(&self.task);
        let now = self.deps.clock.now();
        let mut update = TaskUpdate::of(&self.task, TaskStatus::InProgress, append, now);
        update.progress = Some(progress);
        update.lease = self.task.lease.as_ref().map(|lease| Lease {
            owner: lease.owner.clone(),
            until: if release { now } else { now.plus(self.renew) },
        });
        match self.deps.tasks.update_task(self.task.task_id, update).await {
            Ok(task) => {
                self.task = task;
                Ok(())
            }
            Err(e) => {
                self.lost_race = matches!(e, StoreError::ConditionFailed(_));
                Err(e.into())
            }
        }
    }
}

pub(super) async fn run(run: &mut Run<'_>) -> Result<Flow, TaskError> {
    let (deps, task, steps) = (run.deps, &run.task, &mut run.steps);
    match task.task_type {
        TaskType::PostCreate => sync_object(deps, task, steps, Phase::Create).await?,
        TaskType::PostUpdate => sync_object(deps, task, steps, Phase::Update).await?,
        TaskType::PostDelete => clean_up_deleted(deps, task, steps).await?,
        TaskType::BatchDelete => batch_delete(deps, task, steps).await?,
        TaskType::AvailabilityUpdate => {
            return fan_out(run, TaskType::PostUpdateAvailability).await;
        }
        TaskType::AvailabilityDelete => {
            return fan_out(run, TaskType::PostDeleteAvailability).await;
        }
        TaskType::PostUpdateAvailability => {
            refresh_availability(deps, task, steps, Phase::Update).await?
        }
        TaskType::PostDeleteAvailability => {
            refresh_availability(deps, task, steps, Phase::Delete).await?
        }
    }
    Ok(Flow::Done)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Create,
    Update,
    Delete,
}

async fn live_object(deps: &Deps, uid: &str) -> Result<Option<ContentObject>, StoreError> {
    Ok(deps.content.get_object(uid).await?.filter(|o| !o.deleted))
}

async fn all_edges(deps: &Deps, uid: &str) -> Result<Vec<Edge>, StoreError> {
    let mut edges = Vec::new();
    let mut cursor = None;
    loop {
        let page = deps
            .content
            .list_edges(uid, None, cursor.as_ref(), PAGE)
            .await?;
        edges.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(edges),
        }
    }
}

async fn write_edges(deps: &Deps, edges: Vec<(Edge, bool)>) -> Result<(), StoreError> {
    let mut rest = edges.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<_> = rest.by_ref().take(CHUNK).collect();
        deps.content
            .write(ContentWrite {
                edges: chunk,
                ..ContentWrite::default()
            })
            .await?;
    }
    Ok(())
}

/// `post_create` and `post_update`: links and windows from the declared availability, and the
/// other side of every relationship.
async fn sync_object(
    deps: &Deps,
    task: &Task,
    steps: &mut Steps,
    phase: Phase,
) -> Result<(), TaskError> {
    let Some(object) = live_object(deps, &task.object_uid).await? else {
        steps.say("Object no longer exists; nothing to do");
        return Ok(());
    };

    if !object.declared_availability.is_empty() || !object.windows.is_empty() {
        steps.say(match phase {
            Phase::Create => "Starting availability creation",
            _ => "Starting availability update",
        });
        if !sync_availability(deps, object.clone()).await? {
            steps.say("Object was deleted meanwhile; availability left to its clean-up");
            return Ok(());
        }
        steps.say(match phase {
            Phase::Create => "Availability creation complete",
            _ => "Availability update complete",
        });
        steps.say("Starting availability post-processing");
        steps.say("Availability post-processing complete");
    }

    let edges = all_edges(deps, &object.uid).await?;
    if !edges.is_empty() || !task.unlinked.is_empty() {
        steps.say(match phase {
            Phase::Create => "Starting relationship creation",
            _ => "Starting relationship update",
        });
        mirror_relationships(deps, &object.uid, edges, task).await?;
        steps.say(match phase {
            Phase::Create => "Relationship creation complete",
            _ => "Relationship update complete",
        });
    }
    Ok(())
}

/// Writes the availability index items and the windows copied onto the object in one
/// transaction, conditional on the object version read. Returns false if the object was deleted.
async fn sync_availability(deps: &Deps, mut object: ContentObject) -> Result<bool, TaskError> {
    for _ in 0..MAX_CONFLICTS {
        let found = deps
            .content
            .get_availabilities(&object.declared_availability)
            .await?;
        let by_uid: HashMap<&str, _> = found.iter().map(|a| (a.uid.as_str(), a)).collect();
        // Declared order; an availability deleted since it was linked is dropped, from the
        // declaration too (its uid can never come back).
        let declared: Vec<String> = object
            .declared_availability
            .iter()
            .filter(|uid| by_uid.contains_key(uid.as_str()))
            .cloned()
            .collect();
        let windows: Vec<LinkedWindow> = object
            .declared_availability
            .iter()
            .filter_map(|uid| by_uid.get(uid.as_str()))
            .map(|a| LinkedWindow {
                availability_uid: a.uid.clone(),
                window: a.window,
            })
            .collect();
        if windows == object.windows && declared == object.declared_availability {
            return Ok(true);
        }
        // The object and its links are only ever written together, so the links of the windows
        // it has exist: only added and removed windows change links.
        let had: BTreeSet<&str> = object
            .windows
            .iter()
            .map(|w| w.availability_uid.as_str())
            .collect();
        let keep: BTreeSet<&str> = windows
            .iter()
            .map(|w| w.availability_uid.as_str())
            .collect();
        let mut links: Vec<(String, String, bool)> = windows
            .iter()
            .filter(|w| !had.contains(w.availability_uid.as_str()))
            .map(|w| (w.availability_uid.clone(), object.uid.clone(), true))
            .collect();
        links.extend(
            object
                .windows
                .iter()
                .filter(|w| !keep.contains(w.availability_uid.as_str()))
                .map(|w| (w.availability_uid.clone(), object.uid.clone(), false)),
        );
        let expect = Expect::Version(object.version);
        let mut updated = object.clone();
        updated.windows = windows;
        updated.declared_availability = declared;
        updated.version += 1;
        match deps
            .content
            .write(ContentWrite {
                objects: vec![ObjectOp::Put {
                    object: updated,
                    expect,
                }],
                availability_links: links,
                ..ContentWrite::default()
            })
            .await
        {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed(_)) => {
                // A mutation changed the object meanwhile: recompute from what it wrote.
                match live_object(deps, &object.uid).await? {
                    Some(fresh) => object = fresh,
                    None => return Ok(false),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(TaskError::Transient(StoreError::ConditionFailed(
        "the object kept changing while its availability was synchronised".to_owned(),
    )))
}

/// Makes the other side of each relationship agree with this object's edges: a live target gets
/// the reverse edge; an edge to a deleted target is dropped; an edge the mutation removed has its
/// reverse removed too, unless the object links that target again.
async fn mirror_relationships(
    deps: &Deps,
    uid: &str,
    edges: Vec<Edge>,
    task: &Task,
) -> Result<(), TaskError> {
    let mut targets: Vec<String> = edges.iter().map(|e| e.to.clone()).collect();
    targets.extend(task.unlinked.iter().map(|u| u.uid.clone()));
    targets.sort();
    targets.dedup();
    let live: BTreeSet<String> = deps
        .content
        .get_objects(&targets)
        .await?
        .into_iter()
        .filter(|o| !o.deleted)
        .map(|o| o.uid)
        .collect();

    let mut writes = Vec::new();
    for edge in &edges {
        if live.contains(&edge.to) {
            writes.push((edge.reversed(), true));
        } else {
            writes.push((edge.reversed(), false));
            writes.push((edge.clone(), false));
        }
    }
    for unlinked in &task.unlinked {
        let Ok(relationship) = unlinked.relationship.parse::<Relationship>() else {
            return Err(TaskError::Failed(format!(
                "unknown relationship `{}` in the task",
                unlinked.relationship
            )));
        };
        let still_linked = edges
            .iter()
            .any(|e| e.relationship == relationship && e.to == unlinked.uid);
        if !still_linked {
            let edge = Edge {
                from: uid.to_owned(),
                relationship,
                to: unlinked.uid.clone(),
            };
            writes.push((edge.reversed(), false));
        }
    }
    write_edges(deps, writes).await?;
    Ok(())
}

/// `post_delete`: removes the deleted object from the other side of its relationships and from
/// the availability index, then removes the tombstone itself (last, so a crash leaves it to retry).
async fn clean_up_deleted(deps: &Deps, task: &Task, steps: &mut Steps) -> Result<(), TaskError> {
    let Some(object) = deps.content.get_object(&task.object_uid).await? else {
        steps.say("Object already removed; nothing to clean up");
        return Ok(());
    };
    if !object.deleted {
        steps.say("Object is not deleted; nothing to clean up");
        return Ok(());
    }

    let edges = all_edges(deps, &object.uid).await?;
    if !edges.is_empty() {
        steps.say("Starting relationship cleanup");
        let writes = edges
            .iter()
            .flat_map(|e| [(e.reversed(), false), (e.clone(), false)])
            .collect();
        write_edges(deps, writes).await?;
        steps.say("Relationship cleanup complete");
    }

    let mut availability: BTreeSet<&String> = object.declared_availability.iter().collect();
    availability.extend(object.windows.iter().map(|w| &w.availability_uid));
    if !availability.is_empty() {
        steps.say("Starting availability cleanup");
        let links: Vec<_> = availability
            .into_iter()
            .map(|av| (av.clone(), object.uid.clone(), false))
            .collect();
        for chunk in links.chunks(CHUNK) {
            deps.content
                .write(ContentWrite {
                    availability_links: chunk.to_vec(),
                    ..ContentWrite::default()
                })
                .await?;
        }
        steps.say("Availability cleanup complete");
    }

    match deps
        .content
        .write(ContentWrite {
            objects: vec![ObjectOp::Delete {
                uid: object.uid.clone(),
                expect: Expect::Version(object.version),
            }],
            ..ContentWrite::default()
        })
        .await
    {
        // Someone else removed it first: the clean-up is done either way.
        Ok(()) | Err(StoreError::ConditionFailed(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `post_update_availability` / `post_delete_availability`: one object's windows recomputed
/// from its declared availability as it is now (a deleted availability drops out).
async fn refresh_availability(
    deps: &Deps,
    task: &Task,
    steps: &mut Steps,
    phase: Phase,
) -> Result<(), TaskError> {
    let Some(object) = live_object(deps, &task.object_uid).await? else {
        steps.say("Object no longer exists; nothing to do");
        return Ok(());
    };
    steps.say(match phase {
        Phase::Delete => "Starting availability removal",
        _ => "Starting availability refresh",
    });
    if !sync_availability(deps, object).await? {
        steps.say("Object was deleted meanwhile; availability left to its clean-up");
        return Ok(());
    }
    steps.say(match phase {
        Phase::Delete => "Availability removal complete",
        _ => "Availability refresh complete",
    });
    Ok(())
}

/// Sends the messages of the children that still have work to do (new ones and any left
/// QUEUED or IN_PROGRESS by an earlier delivery that stopped before sending).
async fn send_children<'t>(
    deps: &Deps,
    children: impl Iterator<Item = &'t Task>,
) -> Result<(), TaskError> {
    let messages: Vec<TaskMessage> = children
        .filter(|t| !t.status.is_terminal())
        .map(Task::queue_message)
        .collect();
    deps.queue.send(&messages).await?;
    Ok(())
}

/// Writes the children that do not exist yet and returns every child of `wanted` as stored:
/// an earlier delivery's children keep their state (a COMPLETE one is not sent again).
async fn ensure_children(deps: &Deps, wanted: Vec<Task>) -> Result<Vec<Task>, TaskError> {
    let ids: Vec<_> = wanted.iter().map(|t| t.task_id).collect();
    let existing: HashMap<_, Task> = deps
        .tasks
        .get_tasks(&ids, deps.clock.now())
        .await?
        .into_iter()
        .map(|t| (t.task_id, t))
        .collect();
    let missing: Vec<Task> = wanted
        .iter()
        .filter(|t| !existing.contains_key(&t.task_id))
        .cloned()
        .collect();
    deps.tasks.create_tasks(&missing).await?;
    Ok(wanted
        .into_iter()
        .map(|t| existing.get(&t.task_id).cloned().unwrap_or(t))
        .collect())
}

/// `availability_update` / `availability_delete`: one child per object linked to the
/// availability, page by page. Each page is checkpointed on the task (cursor, count); after
/// `pages_per_run` pages the task sends itself again and a new delivery goes on, so no single
/// invocation needs to reach 100,000 objects.
async fn fan_out(run: &mut Run<'_>, child_type: TaskType) -> Result<Flow, TaskError> {
    let deps = run.deps;
    let availability = run.task.object_uid.clone();
    if run.task.progress.step == 0 {
        run.steps.say_owned(format!(
            "Starting fan-out: {child_type} for every object linked to availability {availability}"
        ));
    }
    let mut pages = 0;
    loop {
        let cursor = run.task.progress.cursor.clone().map(Cursor);
        let page = deps
            .content
            .list_linked_objects(&availability, cursor.as_ref(), run.fan_out.page.max(1))
            .await?;
        let now = deps.clock.now();
        let wanted: Vec<Task> = page
            .items
            .iter()
            .map(|uid| Task::new_child(&run.task, child_type, uid.as_str(), uid, now))
            .collect();
        let children = ensure_children(deps, wanted).await?;
        send_children(deps, children.iter()).await?;

        let before = run.task.progress.queued;
        for (i, child) in children.iter().enumerate() {
            if before + (i as u64) < NAMED_CHILDREN {
                run.steps.say_owned(format!(
                    "Queued {child_type} {} for {}",
                    child.task_id, child.object_uid
                ));
            }
        }
        let queued = before + children.len() as u64;
        let next = page.next.map(|c| c.0);
        if next.is_none() {
            run.steps.say_owned(match queued {
                0 => "No objects are linked to this availability; nothing to queue".to_owned(),
                n if n > NAMED_CHILDREN => format!(
                    "Fan-out complete: queued {n} {child_type} tasks (the first {NAMED_CHILDREN} are named above; list them all with listSkylarkBackgroundTask(task_type: \"{child_type}\"))"
                ),
                n => format!("Fan-out complete: queued {n} {child_type} tasks"),
            });
            return Ok(Flow::Done);
        }
        pages += 1;
        let more = pages >= run.fan_out.pages_per_run;
        run.checkpoint(next, queued, more).await?;
        if more {
            return Ok(Flow::Continue);
        }
    }
}

/// `batch_delete`: each entry deletes its object, or one translation (the last one deletes
/// the object), together with its child task in one transaction: `post_delete` for a deleted
/// object, `post_update` for a lost translation. The child's id comes from the batch and the
/// entry, so its existence records that this batch did the entry: a re-run reports the same
/// outcome instead of "not found".
async fn batch_delete(deps: &Deps, task: &Task, steps: &mut Steps) -> Result<(), TaskError> {
    steps.say_owned(format!(
        "Deleting {} objects or translations",
        task.entries.len()
    ));
    let (mut deleted, mut skipped) = (0, 0);
    let mut children = Vec::new();
    for entry in &task.entries {
        let child_id = TaskId::derived(task.task_id, &entry.child_name());
        let what = match &entry.language {
            Some(language) => format!("the {language} translation of {}", entry.uid),
            None => entry.uid.clone(),
        };
        match delete_entry(deps, task, entry, child_id).await? {
            Some(child) => {
                deleted += 1;
                steps.say_owned(format!(
                    "Deleted {what}; queued {} {}",
                    child.task_type, child.task_id
                ));
                children.push(child);
            }
            None => {
                skipped += 1;
                steps.say_owned(format!("Skipped {what}: not found"));
            }
        }
    }
    send_children(deps, children.iter()).await?;
    steps.say_owned(format!(
        "Batch delete complete: {deleted} deleted, {skipped} skipped"
    ));
    Ok(())
}

/// The child task of the entry, if this batch deleted it (now or in an earlier delivery).
async fn delete_entry(
    deps: &Deps,
    task: &Task,
    entry: &DeleteEntry,
    child_id: TaskId,
) -> Result<Option<Task>, TaskError> {
    for _ in 0..MAX_CONFLICTS {
        let now = deps.clock.now();
        if let Some(child) = deps.tasks.get_task(child_id, now).await? {
            return Ok(Some(child));
        }
        let Some(current) = live_object(deps, &entry.uid).await? else {
            return Ok(None);
        };
        let mut object = current.clone();
        let Some(deletion) = object.apply_delete(entry.language.as_deref()) else {
            return Ok(None);
        };
        object.version = current.version + 1;
        object.updated_at = now;
        let child = Task::new_child(
            task,
            deletion.task_type(),
            entry.uid.as_str(),
            &entry.child_name(),
            now,
        );
        let external_ids = ExternalIdOp::released_by(&object, deletion);
        let write = ContentWrite {
            objects: vec![ObjectOp::Put {
                object,
                expect: Expect::Version(current.version),
            }],
            external_ids,
            new_tasks: vec![child.clone()],
            ..ContentWrite::default()
        };
        match deps.content.write(write).await {
            Ok(()) => return Ok(Some(child)),
            // A mutation changed the object, or a concurrent delivery did this entry: re-read.
            Err(StoreError::ConditionFailed(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TaskError::Transient(StoreError::ConditionFailed(format!(
        "object {} kept changing while it was deleted",
        entry.uid
    ))))
}
