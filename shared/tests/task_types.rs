//! The task types beyond create/update/delete, embedded: availability fan-outs (with a worker
//! killed mid-way), batch deletes with translations, and every type under duplicate delivery.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::{Harness, error_type, messages};
use serde_json::{Value, json};
use shared::adapters::MemoryQueue;
use shared::domain::{ContentObject, ObjectType, Task, TaskId, TaskMessage, TaskStatus, TaskType};
use shared::ports::{
    Clock, ContentStore, ContentWrite, Expect, ObjectOp, Order, QueueError, TaskQuery, TaskQueue,
    TaskStore,
};
use tokio::sync::Notify;

fn uid_of(data: &Value, field: &str) -> String {
    data[field]["uid"].as_str().expect("uid").to_owned()
}

fn task_of(data: &Value, field: &str) -> String {
    data[field]["_context"]["task_id"]
        .as_str()
        .or_else(|| data[field]["task_id"].as_str())
        .expect("task_id")
        .to_owned()
}

async fn create_availability(h: &Harness, external_id: &str, from: i64, to: i64) -> String {
    let now = h.clock.now();
    let data = h
        .ok(&format!(
            r#"mutation {{ createAvailability(availability: {{ external_id: "{external_id}", start: "{}", end: "{}" }}) {{ uid }} }}"#,
            now.plus_secs(from),
            now.plus_secs(to)
        ))
        .await;
    uid_of(&data, "createAvailability")
}

async fn create_movie(h: &Harness, external_id: &str, availability: &str) -> String {
    let data = h
        .ok(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "{external_id}", external_id: "{external_id}", availability: {{ link: ["{availability}"] }} }}) {{ uid }} }}"#
        ))
        .await;
    uid_of(&data, "createMovie")
}

async fn movie(h: &Harness, uid: &str, ignore_availability: bool) -> Value {
    h.gql(&format!(
        r#"{{ getMovie(uid: "{uid}", ignore_availability: {ignore_availability}) {{ uid _meta {{ availability_status }} availability {{ objects {{ uid }} }} }} }}"#
    ))
    .await
}

/// Every live task of one type, through the listing clients use.
async fn tasks_of_type(h: &Harness, task_type: TaskType) -> Vec<Task> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .embedded
            .store
            .list_tasks(
                &TaskQuery {
                    status: None,
                    object_uid: None,
                    task_type: Some(task_type),
                    order: Order::Asc,
                    limit: 100,
                    cursor,
                },
                h.clock.now(),
            )
            .await
            .expect("list");
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

fn assert_no_repeated_messages(task: &Value) {
    let list = messages(task);
    let unique: BTreeSet<&String> = list.iter().collect();
    assert_eq!(unique.len(), list.len(), "repeated messages in {task}");
}

#[tokio::test]
async fn update_availability_fans_out_and_moves_movies_to_the_future() {
    let h = Harness::new();
    // Given three movies linked to A (now-1h .. now+1h), processed
    let a = create_availability(&h, "window-a", -3600, 3600).await;
    let mut movies = Vec::new();
    for i in 0..3 {
        movies.push(create_movie(&h, &format!("movie-{i}"), &a).await);
    }
    h.drain().await;
    for uid in &movies {
        let body = movie(&h, uid, false).await;
        assert_eq!(
            body["data"]["getMovie"]["_meta"]["availability_status"],
            "ACTIVE"
        );
    }

    // When A moves to the future
    let now = h.clock.now();
    let data = h
        .ok(&format!(
            r#"mutation {{ updateAvailability(uid: "{a}", availability: {{ start: "{}", end: "{}" }}) {{ uid start _context {{ task_id }} }} }}"#,
            now.plus_secs(3600),
            now.plus_secs(7200)
        ))
        .await;
    let parent = task_of(&data, "updateAvailability");
    assert_eq!(
        data["updateAvailability"]["start"],
        now.plus_secs(3600).to_string()
    );
    h.drain().await;

    // Then the parent and three children are COMPLETE, and the parent names them
    let parent_task = h.task(&parent).await;
    assert_eq!(parent_task["status"], "COMPLETE");
    assert_eq!(parent_task["task_type"], "availability_update");
    assert_eq!(parent_task["object_uid"], a);
    assert_no_repeated_messages(&parent_task);
    let parent_messages = messages(&parent_task);
    assert_eq!(
        parent_messages.last().map(String::as_str),
        Some("Fan-out complete: queued 3 post_update_availability tasks")
    );
    let listed = h
        .ok(r#"{ listSkylarkBackgroundTask(task_type: "post_update_availability") { count objects { task_id status object_uid messages } } }"#)
        .await;
    let children = listed["listSkylarkBackgroundTask"]["objects"]
        .as_array()
        .expect("objects")
        .clone();
    assert_eq!(children.len(), 3);
    let child_objects: BTreeSet<&str> = children
        .iter()
        .map(|c| c["object_uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(
        child_objects,
        movies.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for child in &children {
        assert_eq!(child["status"], "COMPLETE");
        let id = child["task_id"].as_str().expect("id");
        assert!(
            parent_messages.iter().any(|m| m.contains(id)),
            "parent does not name {id}"
        );
        assert_eq!(
            messages(child),
            [
                "Job started",
                "Starting availability refresh",
                "Availability refresh complete"
            ]
        );
    }
    // and the movies are FUTURE: hidden from default reads, visible when asked
    for uid in &movies {
        let hidden = movie(&h, uid, false).await;
        assert_eq!(error_type(&hidden), Some("NotFound"), "{hidden}");
        let shown = movie(&h, uid, true).await;
        assert_eq!(
            shown["data"]["getMovie"]["_meta"]["availability_status"],
            "FUTURE"
        );
    }
    // and the filter by object finds a movie's own tasks
    let by_object = h
        .ok(&format!(
            r#"{{ listSkylarkBackgroundTask(object_uid: "{}") {{ objects {{ task_type }} }} }}"#,
            movies[0]
        ))
        .await;
    let types: BTreeSet<&str> = by_object["listSkylarkBackgroundTask"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|t| t["task_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["post_create", "post_update_availability"])
    );
}

#[tokio::test]
async fn delete_availability_leaves_movies_unavailable() {
    let h = Harness::new();
    let a = create_availability(&h, "doomed", -3600, 3600).await;
    let mut movies = Vec::new();
    for i in 0..3 {
        movies.push(create_movie(&h, &format!("movie-{i}"), &a).await);
    }
    h.drain().await;

    let data = h
        .ok(&format!(
            r#"mutation {{ deleteAvailability(uid: "{a}") {{ uid task_id }} }}"#
        ))
        .await;
    let parent = task_of(&data, "deleteAvailability");
    // The availability is gone at once: it can no longer be read or linked
    let gone = h
        .gql(&format!(r#"{{ getAvailability(uid: "{a}") {{ uid }} }}"#))
        .await;
    assert_eq!(error_type(&gone), Some("NotFound"));
    let link = h
        .gql(r#"mutation { createMovie(movie: { title: "late", availability: { link: ["doomed"] } }) { uid } }"#)
        .await;
    assert_eq!(error_type(&link), Some("NotFound"));
    h.drain().await;

    let parent_task = h.task(&parent).await;
    assert_eq!(parent_task["status"], "COMPLETE");
    assert_eq!(parent_task["task_type"], "availability_delete");
    assert_no_repeated_messages(&parent_task);
    let children = tasks_of_type(&h, TaskType::PostDeleteAvailability).await;
    assert_eq!(children.len(), 3);
    assert!(children.iter().all(|c| c.status == TaskStatus::Complete
        && c.parent.map(|p| p.to_string()) == Some(parent.clone())));
    for uid in &movies {
        let shown = movie(&h, uid, true).await;
        let m = &shown["data"]["getMovie"];
        assert_eq!(m["_meta"]["availability_status"], "UNAVAILABLE");
        assert_eq!(m["availability"]["objects"], json!([]));
        let stored = h
            .embedded
            .store
            .get_object(uid)
            .await
            .expect("get")
            .expect("movie");
        assert!(stored.declared_availability.is_empty());
    }
    // The always availability cannot go
    let always = h
        .gql(r#"mutation { deleteAvailability(uid: "always") { uid } }"#)
        .await;
    assert_eq!(error_type(&always), Some("ValidationError"));
}

/// Sends through a memory queue until told to stall: the send that reaches `stall_at` never
/// returns, so the caller's run can be dropped there, as a killed worker would be.
struct StallingQueue {
    inner: Arc<MemoryQueue>,
    sends: AtomicUsize,
    stall_at: AtomicUsize,
    stalled: Notify,
}

#[async_trait]
impl TaskQueue for StallingQueue {
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.stall_at.load(Ordering::SeqCst) {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.send(messages).await
    }
}

/// Puts `count` movies linked to `availability` straight into the store, as their post_create
/// tasks would leave them: the fan-out is what is under test, not how they got there.
async fn link_movies(h: &Harness, availability: &str, count: usize) -> BTreeSet<String> {
    let store = &h.embedded.store;
    let stored = store
        .get_availability(availability)
        .await
        .expect("get")
        .expect("availability");
    let now = h.clock.now();
    let mut uids = BTreeSet::new();
    let mut write = ContentWrite::default();
    for _ in 0..count {
        let uid = shared::domain::new_uid();
        write.objects.push(ObjectOp::Put {
            object: ContentObject::linked(uid.clone(), ObjectType::Movie, &stored, now),
            expect: Expect::Absent,
        });
        write
            .availability_links
            .push((availability.to_owned(), uid.clone(), true));
        uids.insert(uid);
        if write.item_count() >= ContentWrite::MAX_ITEMS {
            store
                .write(std::mem::take(&mut write))
                .await
                .expect("write");
        }
    }
    if write.item_count() > 0 {
        store.write(write).await.expect("write");
    }
    uids
}

#[tokio::test]
async fn fan_out_over_25000_objects_survives_a_killed_worker() {
    const OBJECTS: usize = 25_000;
    let mut slot = None;
    let h = Harness::with_queue(|memory| {
        let queue = Arc::new(StallingQueue {
            inner: memory,
            sends: AtomicUsize::new(0),
            stall_at: AtomicUsize::new(0),
            stalled: Notify::new(),
        });
        slot = Some(queue.clone());
        queue
    });
    let queue = slot.expect("wrapped");
    let a = create_availability(&h, "huge", -3600, 3600).await;
    let linked = link_movies(&h, &a, OBJECTS).await;

    let now = h.clock.now();
    let data = h
        .ok(&format!(
            r#"mutation {{ updateAvailability(uid: "{a}", availability: {{ start: "{}" }}) {{ _context {{ task_id }} }} }}"#,
            now.plus_secs(600)
        ))
        .await;
    let parent_id = TaskId::parse(&task_of(&data, "updateAvailability")).expect("id");

    // When the parent's worker dies inside its 7th send (page 7's children written, not sent)
    let sends = queue.sends.load(Ordering::SeqCst);
    queue.stall_at.store(sends + 7, Ordering::SeqCst);
    let message = TaskMessage {
        task_id: parent_id,
        task_type: TaskType::AvailabilityUpdate,
        object_uid: a.clone(),
    };
    tokio::select! {
        outcome = h.embedded.stack.engine.run(&message) => panic!("the run was not killed: {outcome:?}"),
        () = queue.stalled.notified() => {}
    }
    let killed = h
        .embedded
        .store
        .get_task(parent_id, h.clock.now())
        .await
        .expect("get")
        .expect("parent");
    assert_eq!(killed.status, TaskStatus::InProgress);
    assert_eq!(killed.progress.queued, 600, "checkpointed after page 6");

    // and, once its lease has run out, its message is delivered again (the original is still
    // on the queue)
    let lease = killed.lease.expect("the dead run's lease");
    h.clock
        .advance_secs((lease.until.micros() - h.clock.now().micros()) / 1_000_000 + 1);
    h.drain().await;

    // Then there is exactly one child per object, all COMPLETE
    let children = tasks_of_type(&h, TaskType::PostUpdateAvailability).await;
    assert_eq!(children.len(), OBJECTS);
    let objects: BTreeSet<String> = children.iter().map(|c| c.object_uid.clone()).collect();
    assert_eq!(objects, linked);
    assert!(
        children
            .iter()
            .all(|c| c.status == TaskStatus::Complete && c.parent == Some(parent_id))
    );
    // and the parent is COMPLETE, bounded, with each message once
    let parent = h
        .embedded
        .store
        .get_task(parent_id, h.clock.now())
        .await
        .expect("get")
        .expect("parent");
    assert_eq!(parent.status, TaskStatus::Complete);
    let texts: Vec<&str> = parent.messages.iter().map(|m| m.as_ref()).collect();
    let unique: BTreeSet<&str> = texts.iter().copied().collect();
    assert_eq!(unique.len(), texts.len());
    assert!(texts.len() < 110, "{} messages", texts.len());
    assert!(
        texts.last().is_some_and(
            |m| m.starts_with("Fan-out complete: queued 25000 post_update_availability tasks")
        ),
        "{texts:?}"
    );
    // and every movie took the new window
    let later = h.clock.now().plus_secs(300);
    let sample: Vec<String> = linked.iter().step_by(997).cloned().collect();
    for object in h.embedded.store.get_objects(&sample).await.expect("get") {
        assert_eq!(
            object.status_at(later),
            shared::domain::AvailabilityStatus::Future
        );
    }
}

#[tokio::test]
async fn batch_delete_removes_objects_and_one_translation() {
    let h = Harness::new();
    let brand = h
        .ok(r#"mutation { createBrand(brand: { title: "B", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    let brand = uid_of(&brand, "createBrand");
    let mut movies = Vec::new();
    for i in 0..3 {
        let data = h
            .ok(&format!(
                r#"mutation {{ createMovie(movie: {{ title: "m{i}", external_id: "m{i}", availability: {{ link: ["always"] }}, relationships: {{ brands: {{ link: ["{brand}"] }} }} }}) {{ uid }} }}"#
            ))
            .await;
        movies.push(uid_of(&data, "createMovie"));
    }
    let episode = h
        .ok(r#"mutation { createEpisode(episode: { title: "Hello", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    let episode = uid_of(&episode, "createEpisode");
    h.ok(&format!(
        r#"mutation {{ updateEpisode(uid: "{episode}", episode: {{ title: "Bonjour" }}, language: "fr") {{ uid }} }}"#
    ))
    .await;
    h.drain().await;
    let brand_movies =
        format!(r#"{{ getBrand(uid: "{brand}") {{ movies {{ count objects {{ uid }} }} }} }}"#);
    assert_eq!(h.ok(&brand_movies).await["getBrand"]["movies"]["count"], 3);

    // When a batch deletes three movies, a missing uid and the French translation, named twice
    // in different case (one translation, as everywhere else)
    let missing = "01MISSINGMISSINGMISSING000";
    let data = h
        .ok(&format!(
            r#"mutation {{ batchDeleteObjects(objects: [{{ uid: "{}" }}, {{ uid: "{}" }}, {{ uid: "{}" }}, {{ uid: "{missing}" }}, {{ uid: "{episode}", language: "FR" }}, {{ uid: "{episode}", language: "fr" }}]) {{ uid language task_id }} }}"#,
            movies[0], movies[1], movies[2]
        ))
        .await;
    assert_eq!(data["batchDeleteObjects"]["uid"], "BATCH_DELETE");
    let batch = task_of(&data, "batchDeleteObjects");
    h.drain().await;

    // Then the batch is COMPLETE and names what it skipped
    let task = h.task(&batch).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(task["task_type"], "batch_delete");
    assert_eq!(task["object_uid"], "BATCH_DELETE");
    assert_no_repeated_messages(&task);
    let texts = messages(&task);
    assert!(
        texts.contains(&format!("Skipped {missing}: not found")),
        "{texts:?}"
    );
    assert_eq!(
        texts.last().map(String::as_str),
        Some("Batch delete complete: 4 deleted, 1 skipped")
    );
    // and the movies are gone, their post_delete tasks COMPLETE, the brand no longer lists them
    for uid in &movies {
        let body = movie(&h, uid, true).await;
        assert_eq!(error_type(&body), Some("NotFound"));
        let tasks = h
            .ok(&format!(
                r#"{{ listSkylarkBackgroundTask(object_uid: "{uid}", task_type: "post_delete") {{ objects {{ status task_id }} }} }}"#
            ))
            .await;
        let objects = tasks["listSkylarkBackgroundTask"]["objects"]
            .as_array()
            .expect("objects");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["status"], "COMPLETE");
        assert!(
            texts
                .iter()
                .any(|m| m.contains(objects[0]["task_id"].as_str().expect("id")))
        );
        assert!(
            h.embedded
                .store
                .get_object(uid)
                .await
                .expect("get")
                .is_none()
        );
    }
    assert_eq!(h.ok(&brand_movies).await["getBrand"]["movies"]["count"], 0);
    // and the external ids are free again
    h.ok(r#"mutation { createMovie(movie: { title: "again", external_id: "m0" }) { uid } }"#)
        .await;
    // and the episode lives on in English only
    let en = h
        .ok(&format!(
            r#"{{ getEpisode(uid: "{episode}") {{ title _meta {{ available_languages }} }} }}"#
        ))
        .await;
    assert_eq!(en["getEpisode"]["title"], "Hello");
    assert_eq!(
        en["getEpisode"]["_meta"]["available_languages"],
        json!(["en-GB"])
    );
    let fr = h
        .gql(&format!(
            r#"{{ getEpisode(uid: "{episode}", language: "fr") {{ title }} }}"#
        ))
        .await;
    assert_eq!(error_type(&fr), Some("NotFound"));
}

#[tokio::test]
async fn batch_delete_refuses_more_than_100_entries_and_writes_nothing() {
    let h = Harness::new();
    let entries: Vec<String> = (0..101)
        .map(|i| format!(r#"{{ uid: "uid-{i}" }}"#))
        .collect();
    let body = h
        .gql(&format!(
            "mutation {{ batchDeleteObjects(objects: [{}]) {{ task_id }} }}",
            entries.join(", ")
        ))
        .await;
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    let empty = h
        .gql("mutation { batchDeleteObjects(objects: []) { task_id } }")
        .await;
    assert_eq!(error_type(&empty), Some("ValidationError"), "{empty}");
    let bad_language = h
        .gql(r#"mutation { batchDeleteObjects(objects: [{ uid: "x", language: "no way" }]) { task_id } }"#)
        .await;
    assert_eq!(error_type(&bad_language), Some("ValidationError"));
    let listed = h.ok("{ listSkylarkBackgroundTask { count } }").await;
    assert_eq!(listed["listSkylarkBackgroundTask"]["count"], 0);
    let bad_type = h
        .gql(r#"{ listSkylarkBackgroundTask(task_type: "post_nothing") { count } }"#)
        .await;
    assert_eq!(error_type(&bad_type), Some("ValidationError"));
}

/// Sends every message twice: each task is delivered (at least) twice, often concurrently.
struct DoublingQueue(Arc<MemoryQueue>);

#[async_trait]
impl TaskQueue for DoublingQueue {
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        self.0.send(messages).await?;
        self.0.send(messages).await
    }
}

/// Drives every task type through the API and returns what a client can observe, with uids
/// replaced by external ids so two runs compare.
async fn every_task_type(h: &Harness) -> Value {
    let a = create_availability(h, "av-a", -3600, 3600).await;
    let brand = h
        .ok(r#"mutation { createBrand(brand: { title: "B", external_id: "brand", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    let brand = uid_of(&brand, "createBrand");
    let mut movies = Vec::new();
    for i in 0..4 {
        let data = h
            .ok(&format!(
                r#"mutation {{ createMovie(movie: {{ title: "m{i}", external_id: "m{i}", availability: {{ link: ["{a}"] }}, relationships: {{ brands: {{ link: ["{brand}"] }} }} }}) {{ uid }} }}"#
            ))
            .await;
        movies.push(uid_of(&data, "createMovie"));
    }
    h.ok(&format!(
        r#"mutation {{ updateMovie(uid: "{}", movie: {{ title: "Bonjour" }}, language: "fr") {{ uid }} }}"#,
        movies[3]
    ))
    .await;
    h.drain().await;
    h.ok(&format!(
        r#"mutation {{ updateMovie(uid: "{}", movie: {{ relationships: {{ brands: {{ unlink: ["{brand}"] }} }} }}) {{ uid }} }}"#,
        movies[0]
    ))
    .await;
    h.ok(&format!(
        r#"mutation {{ updateAvailability(uid: "{a}", availability: {{ end: "{}" }}) {{ uid }} }}"#,
        h.clock.now().plus_secs(60)
    ))
    .await;
    h.drain().await;
    h.ok(&format!(
        r#"mutation {{ batchDeleteObjects(objects: [{{ uid: "{}" }}, {{ uid: "missing" }}, {{ uid: "{}", language: "fr" }}]) {{ task_id }} }}"#,
        movies[1], movies[3]
    ))
    .await;
    h.ok(&format!(
        r#"mutation {{ deleteMovie(uid: "{}") {{ task_id }} }}"#,
        movies[2]
    ))
    .await;
    h.drain().await;
    h.ok(&format!(
        r#"mutation {{ deleteAvailability(uid: "{a}") {{ task_id }} }}"#
    ))
    .await;
    h.drain().await;

    let names: BTreeMap<String, String> = movies
        .iter()
        .enumerate()
        .map(|(i, uid)| (uid.clone(), format!("m{i}")))
        .chain([
            (brand.clone(), "brand".to_owned()),
            (a.clone(), "av-a".to_owned()),
        ])
        .collect();
    let listed = h
        .ok(&format!(
            r#"{{ listMovie(ignore_availability: true) {{ objects {{ uid title _meta {{ availability_status available_languages }} availability {{ objects {{ uid }} }} brands {{ objects {{ uid }} }} }} }} getBrand(uid: "{brand}", ignore_availability: true) {{ movies {{ objects {{ uid }} }} }} }}"#
        ))
        .await;
    let mut tasks = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let after = next
            .as_ref()
            .map(|t| format!(r#"(next_token: "{t}", order: ASC)"#))
            .unwrap_or_else(|| "(order: ASC)".to_owned());
        let page = h
            .ok(&format!(
                "{{ listSkylarkBackgroundTask{after} {{ next_token objects {{ task_type status object_uid messages }} }} }}"
            ))
            .await;
        for task in page["listSkylarkBackgroundTask"]["objects"]
            .as_array()
            .expect("objects")
        {
            assert_no_repeated_messages(task);
            tasks.push(json!({
                "task_type": task["task_type"],
                "status": task["status"],
                "object": names.get(task["object_uid"].as_str().unwrap_or_default()).cloned(),
                "messages": messages(task).len(),
            }));
        }
        match page["listSkylarkBackgroundTask"]["next_token"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    tasks.sort_by_key(|t| t.to_string());
    let mut text = listed.to_string();
    for (uid, name) in &names {
        text = text.replace(uid.as_str(), name);
    }
    json!({ "content": serde_json::from_str::<Value>(&text).expect("json"), "tasks": tasks })
}

#[tokio::test]
async fn every_task_type_converges_under_duplicate_delivery() {
    let clean = every_task_type(&Harness::new()).await;
    let doubled = every_task_type(&Harness::with_queue(|memory| {
        Arc::new(DoublingQueue(memory))
    }))
    .await;
    assert_eq!(clean, doubled);
    let tasks = clean["tasks"].as_array().expect("tasks");
    let types: BTreeSet<&str> = tasks
        .iter()
        .map(|t| t["task_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types.len(), TaskType::ALL.len(), "{types:?}");
    assert!(tasks.iter().all(|t| t["status"] == "COMPLETE"), "{tasks:?}");
}
