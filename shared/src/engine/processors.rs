//! What each task type does. Every processor recomputes derived data from the current source of
//! truth (the object's declared availability and its own edges), so running it twice, late, or
//! out of order with another task for the same object converges to the same state.

use std::collections::{BTreeSet, HashMap};

use super::{Deps, MAX_CONFLICTS, Steps, TaskError};
use crate::domain::{ContentObject, LinkedWindow, Relationship, Task, TaskType};
use crate::ports::{ContentWrite, Edge, Expect, ObjectOp, StoreError};

/// Edges and links are written in chunks that fit one DynamoDB transaction.
const CHUNK: usize = 50;
const PAGE: usize = 100;

pub(super) async fn run(deps: &Deps, task: &Task, steps: &mut Steps) -> Result<(), TaskError> {
    match task.task_type {
        TaskType::PostCreate => sync_object(deps, task, steps, Phase::Create).await,
        TaskType::PostUpdate => sync_object(deps, task, steps, Phase::Update).await,
        TaskType::PostDelete => clean_up_deleted(deps, task, steps).await,
        other => Err(TaskError::Failed(format!(
            "task type {other} has no processor in this version"
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Create,
    Update,
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
            Phase::Update => "Starting availability update",
        });
        if !sync_availability(deps, object.clone()).await? {
            steps.say("Object was deleted meanwhile; availability left to its clean-up");
            return Ok(());
        }
        steps.say(match phase {
            Phase::Create => "Availability creation complete",
            Phase::Update => "Availability update complete",
        });
        steps.say("Starting availability post-processing");
        steps.say("Availability post-processing complete");
    }

    let edges = all_edges(deps, &object.uid).await?;
    if !edges.is_empty() || !task.unlinked.is_empty() {
        steps.say(match phase {
            Phase::Create => "Starting relationship creation",
            Phase::Update => "Starting relationship update",
        });
        mirror_relationships(deps, &object.uid, edges, task).await?;
        steps.say(match phase {
            Phase::Create => "Relationship creation complete",
            Phase::Update => "Relationship update complete",
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
        // Declared order; an availability deleted since it was linked is dropped.
        let windows: Vec<LinkedWindow> = object
            .declared_availability
            .iter()
            .filter_map(|uid| by_uid.get(uid.as_str()))
            .map(|a| LinkedWindow {
                availability_uid: a.uid.clone(),
                window: a.window,
            })
            .collect();
        let keep: BTreeSet<&str> = windows
            .iter()
            .map(|w| w.availability_uid.as_str())
            .collect();
        let mut links: Vec<(String, String, bool)> = windows
            .iter()
            .map(|w| (w.availability_uid.clone(), object.uid.clone(), true))
            .collect();
        links.extend(
            object
                .windows
                .iter()
                .filter(|w| !keep.contains(w.availability_uid.as_str()))
                .map(|w| (w.availability_uid.clone(), object.uid.clone(), false)),
        );
        if windows == object.windows {
            // Windows already right: still make sure every link item exists (idempotent puts).
            deps.content
                .write(ContentWrite {
                    availability_links: links,
                    ..ContentWrite::default()
                })
                .await?;
            return Ok(true);
        }
        let expect = Expect::Version(object.version);
        let mut updated = object.clone();
        updated.windows = windows;
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
