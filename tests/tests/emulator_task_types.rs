//! The fan-out and batch task types on DynamoDB and SQS (moto here, LocalStack unchanged), every
//! record delivered twice: availability update and delete through their children, a 500-object
//! fan-out whose worker is killed mid-way, and a batch delete with a translation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use shared::app::LAMBDA_RECORD_CONCURRENCY;
use shared::domain::{
    ContentObject, ObjectType, TaskId, TaskMessage, TaskStatus, TaskType, new_uid,
};
use shared::engine::{Engine, FanOutLimits, Worker};
use shared::ports::{ContentWrite, Expect, ObjectOp, QueueError, TaskQueue};
use tests::emulator::World;
use tokio::sync::Notify;

/// Every record is handed to its worker twice.
const TWICE: usize = 2;

async fn ok(world: &World, query: &str) -> Value {
    let (status, body) = world.graphql(query).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

fn worker(world: &World, task_type: TaskType) -> Worker {
    Worker::new(
        Arc::new(Engine::new(world.deps.clone())),
        Some(task_type),
        LAMBDA_RECORD_CONCURRENCY,
    )
}

/// Runs the queues in the order tasks flow, each record delivered twice.
async fn run_all(world: &World) {
    for task_type in [
        TaskType::PostCreate,
        TaskType::PostUpdate,
        TaskType::BatchDelete,
        TaskType::AvailabilityUpdate,
        TaskType::AvailabilityDelete,
        TaskType::PostDelete,
        TaskType::PostUpdate,
        TaskType::PostUpdateAvailability,
        TaskType::PostDeleteAvailability,
    ] {
        world
            .run_queue_with(&worker(world, task_type), task_type, TWICE)
            .await;
    }
}

async fn task(world: &World, task_id: &str) -> Value {
    ok(
        world,
        &format!(
            r#"{{ getSkylarkBackgroundTask(task_id: "{task_id}") {{ status task_type object_uid messages }} }}"#
        ),
    )
    .await["getSkylarkBackgroundTask"]
        .clone()
}

fn texts(task: &Value) -> Vec<String> {
    task["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m.as_str().expect("text").to_owned())
        .collect()
}

fn assert_complete_once(task: &Value) {
    assert_eq!(task["status"], "COMPLETE", "{task}");
    let list = texts(task);
    let unique: BTreeSet<&String> = list.iter().collect();
    assert_eq!(unique.len(), list.len(), "repeated messages: {task}");
}

/// Every task of one type, through `listSkylarkBackgroundTask(task_type:)` (the by_type index).
async fn listed(world: &World, task_type: TaskType) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let after = token
            .as_ref()
            .map(|t| format!(r#", next_token: "{t}""#))
            .unwrap_or_default();
        let data = ok(
            world,
            &format!(
                r#"{{ listSkylarkBackgroundTask(task_type: "{task_type}", limit: 100{after}) {{ next_token objects {{ task_id status object_uid messages }} }} }}"#
            ),
        )
        .await;
        let listing = &data["listSkylarkBackgroundTask"];
        all.extend(listing["objects"].as_array().expect("objects").clone());
        match listing["next_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return all,
        }
    }
}

async fn movie_status(world: &World, uid: &str) -> Value {
    let (_, body) = world
        .graphql(&format!(
            r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ _meta {{ availability_status }} availability {{ objects {{ uid }} }} }} }}"#
        ))
        .await;
    body["data"]["getMovie"].clone()
}

#[tokio::test]
async fn availability_update_and_delete_fan_out_on_dynamodb() {
    let world = World::new().await;
    let now = shared::domain::Timestamp::now();
    let data = ok(
        &world,
        &format!(
            r#"mutation {{ createAvailability(availability: {{ external_id: "a", start: "{}", end: "{}" }}) {{ uid }} }}"#,
            now.plus_secs(-3600),
            now.plus_secs(3600)
        ),
    )
    .await;
    let a = data["createAvailability"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let mut movies = Vec::new();
    for i in 0..3 {
        let data = ok(
            &world,
            &format!(
                r#"mutation {{ createMovie(movie: {{ title: "m{i}", availability: {{ link: ["a"] }} }}) {{ uid }} }}"#
            ),
        )
        .await;
        movies.push(data["createMovie"]["uid"].as_str().expect("uid").to_owned());
    }
    run_all(&world).await;
    for uid in &movies {
        assert_eq!(
            movie_status(&world, uid).await["_meta"]["availability_status"],
            "ACTIVE"
        );
    }

    // updateAvailability moves A to the future
    let data = ok(
        &world,
        &format!(
            r#"mutation {{ updateAvailability(external_id: "a", availability: {{ start: "{}", end: "{}" }}) {{ _context {{ task_id }} }} }}"#,
            now.plus_secs(3600),
            now.plus_secs(7200)
        ),
    )
    .await;
    let parent = data["updateAvailability"]["_context"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    run_all(&world).await;
    let parent_task = task(&world, &parent).await;
    assert_complete_once(&parent_task);
    assert_eq!(parent_task["task_type"], "availability_update");
    let children = listed(&world, TaskType::PostUpdateAvailability).await;
    assert_eq!(children.len(), 3);
    children.iter().for_each(assert_complete_once);
    let objects: BTreeSet<&str> = children
        .iter()
        .map(|c| c["object_uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(objects, movies.iter().map(String::as_str).collect());
    for uid in &movies {
        let (_, hidden) = world
            .graphql(&format!(r#"{{ getMovie(uid: "{uid}") {{ uid }} }}"#))
            .await;
        assert_eq!(hidden["errors"][0]["errorType"], "NotFound", "{hidden}");
        assert_eq!(
            movie_status(&world, uid).await["_meta"]["availability_status"],
            "FUTURE"
        );
        // The movie's own tasks, through the by_object index
        let data = ok(
            &world,
            &format!(
                r#"{{ listSkylarkBackgroundTask(object_uid: "{uid}", status: COMPLETE) {{ objects {{ task_type }} }} }}"#
            ),
        )
        .await;
        let types: BTreeSet<&str> = data["listSkylarkBackgroundTask"]["objects"]
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

    // deleteAvailability takes A off every movie
    let data = ok(
        &world,
        &format!(r#"mutation {{ deleteAvailability(uid: "{a}") {{ task_id }} }}"#),
    )
    .await;
    let parent = data["deleteAvailability"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    run_all(&world).await;
    let parent_task = task(&world, &parent).await;
    assert_complete_once(&parent_task);
    let children = listed(&world, TaskType::PostDeleteAvailability).await;
    assert_eq!(children.len(), 3);
    children.iter().for_each(assert_complete_once);
    for uid in &movies {
        let m = movie_status(&world, uid).await;
        assert_eq!(m["_meta"]["availability_status"], "UNAVAILABLE");
        assert_eq!(m["availability"]["objects"], serde_json::json!([]));
    }
}

/// Stalls forever in the send numbered `stall_at`, so the run can be dropped there.
struct StallingQueue {
    inner: Arc<dyn TaskQueue>,
    sends: AtomicUsize,
    stall_at: usize,
    stalled: Notify,
}

#[async_trait]
impl TaskQueue for StallingQueue {
    async fn send(&self, messages: &[TaskMessage]) -> Result<(), QueueError> {
        if self.sends.fetch_add(1, Ordering::SeqCst) + 1 == self.stall_at {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.send(messages).await
    }
}

#[tokio::test]
async fn fan_out_over_500_objects_continues_after_a_killed_worker() {
    const OBJECTS: usize = 500;
    let world = World::new().await;
    let data = ok(
        &world,
        r#"mutation { createAvailability(availability: { external_id: "big" }) { uid } }"#,
    )
    .await;
    let a = data["createAvailability"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let stored = world
        .deps
        .content
        .get_availability(&a)
        .await
        .expect("get")
        .expect("availability");
    // Given 500 movies linked to it, written as their post_create would leave them
    let now = shared::domain::Timestamp::now();
    let mut linked = BTreeSet::new();
    let mut writes = Vec::new();
    for _ in 0..OBJECTS {
        let uid = new_uid();
        writes.push(ContentWrite {
            objects: vec![ObjectOp::Put {
                object: ContentObject::linked(uid.clone(), ObjectType::Movie, &stored, now),
                expect: Expect::Absent,
            }],
            ..ContentWrite::default()
        });
        writes.push(ContentWrite {
            availability_links: vec![(a.clone(), uid.clone(), true)],
            ..ContentWrite::default()
        });
        linked.insert(uid);
    }
    // One item per write, several at once: moto copies a whole table per transaction item.
    let content = world.deps.content.clone();
    futures::stream::iter(writes)
        .map(|write| {
            let content = content.clone();
            async move { content.write(write).await.expect("write") }
        })
        .buffer_unordered(10)
        .collect::<Vec<()>>()
        .await;
    let data = ok(
        &world,
        &format!(
            r#"mutation {{ updateAvailability(uid: "{a}", availability: {{ start: "{}" }}) {{ _context {{ task_id }} }} }}"#,
            now.plus_secs(600)
        ),
    )
    .await;
    let parent_id = TaskId::parse(
        data["updateAvailability"]["_context"]["task_id"]
            .as_str()
            .expect("task_id"),
    )
    .expect("uuid");

    // When its worker (pages of 50, 4 pages per delivery) dies inside its third send
    let limits = FanOutLimits {
        page: 50,
        pages_per_run: 4,
    };
    let stalling = Arc::new(StallingQueue {
        inner: world.deps.queue.clone(),
        sends: AtomicUsize::new(0),
        stall_at: 3,
        stalled: Notify::new(),
    });
    let mut dying = world.deps.clone();
    dying.queue = stalling.clone();
    let engine = Engine::with_fan_out(dying, limits).with_lease(Duration::from_secs(1));
    let message = TaskMessage {
        task_id: parent_id,
        task_type: TaskType::AvailabilityUpdate,
        object_uid: a.clone(),
    };
    tokio::select! {
        outcome = engine.run(&message) => panic!("the run was not killed: {outcome:?}"),
        () = stalling.stalled.notified() => {}
    }
    let killed = world
        .deps
        .tasks
        .get_task(parent_id, shared::domain::Timestamp::now())
        .await
        .expect("get")
        .expect("parent");
    assert_eq!(killed.status, TaskStatus::InProgress);
    assert_eq!(killed.progress.queued, 100);
    // Another delivery may take over once the dead run's lease has run out.
    let lease = killed.lease.expect("the dead run's lease");
    let left = lease.until.micros() - shared::domain::Timestamp::now().micros();
    tokio::time::sleep(Duration::from_micros(u64::try_from(left).unwrap_or(0))).await;

    // and the message is delivered again, twice per delivery, to a worker that lives
    let parent_worker = Worker::new(
        Arc::new(Engine::with_fan_out(world.deps.clone(), limits)),
        Some(TaskType::AvailabilityUpdate),
        LAMBDA_RECORD_CONCURRENCY,
    );
    let deliveries = world
        .run_queue_with(&parent_worker, TaskType::AvailabilityUpdate, TWICE)
        .await;
    // 8 pages left at 4 per delivery (plus an empty last page on DynamoDB, maybe)
    assert!(deliveries >= 2, "continued over {deliveries} deliveries");
    world
        .run_queue_with(
            &worker(&world, TaskType::PostUpdateAvailability),
            TaskType::PostUpdateAvailability,
            1,
        )
        .await;

    // Then one child per object, none twice, all COMPLETE; the parent too
    let children = listed(&world, TaskType::PostUpdateAvailability).await;
    assert_eq!(children.len(), OBJECTS);
    let objects: BTreeSet<String> = children
        .iter()
        .map(|c| c["object_uid"].as_str().expect("uid").to_owned())
        .collect();
    assert_eq!(objects, linked);
    assert!(children.iter().all(|c| c["status"] == "COMPLETE"));
    let parent = task(&world, &parent_id.to_string()).await;
    assert_complete_once(&parent);
    assert!(
        texts(&parent).last().is_some_and(
            |m| m.starts_with("Fan-out complete: queued 500 post_update_availability tasks")
        ),
        "{parent}"
    );
}

#[tokio::test]
async fn batch_delete_on_dynamodb() {
    let world = World::new().await;
    let brand = ok(
        &world,
        r#"mutation { createBrand(brand: { title: "B", external_id: "b", availability: { link: ["always"] } }) { uid } }"#,
    )
    .await["createBrand"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let mut movies = Vec::new();
    for i in 0..3 {
        let data = ok(
            &world,
            &format!(
                r#"mutation {{ createMovie(movie: {{ title: "m{i}", availability: {{ link: ["always"] }}, relationships: {{ brands: {{ link: ["b"] }} }} }}) {{ uid }} }}"#
            ),
        )
        .await;
        movies.push(data["createMovie"]["uid"].as_str().expect("uid").to_owned());
    }
    let episode = ok(
        &world,
        r#"mutation { createEpisode(episode: { title: "Hello", availability: { link: ["always"] } }) { uid } }"#,
    )
    .await["createEpisode"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    ok(
        &world,
        &format!(
            r#"mutation {{ updateEpisode(uid: "{episode}", episode: {{ title: "Bonjour" }}, language: "fr") {{ uid }} }}"#
        ),
    )
    .await;
    run_all(&world).await;

    let data = ok(
        &world,
        &format!(
            r#"mutation {{ batchDeleteObjects(objects: [{{ uid: "{}" }}, {{ uid: "{}" }}, {{ uid: "{}" }}, {{ uid: "missing-one" }}, {{ uid: "{episode}", language: "fr" }}]) {{ uid task_id }} }}"#,
            movies[0], movies[1], movies[2]
        ),
    )
    .await;
    assert_eq!(data["batchDeleteObjects"]["uid"], "BATCH_DELETE");
    let batch = data["batchDeleteObjects"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    run_all(&world).await;

    let batch_task = task(&world, &batch).await;
    assert_complete_once(&batch_task);
    assert_eq!(batch_task["object_uid"], "BATCH_DELETE");
    assert!(texts(&batch_task).contains(&"Skipped missing-one: not found".to_owned()));
    let post_deletes = listed(&world, TaskType::PostDelete).await;
    assert_eq!(post_deletes.len(), 3);
    post_deletes.iter().for_each(assert_complete_once);
    for uid in &movies {
        let (_, body) = world
            .graphql(&format!(
                r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ uid }} }}"#
            ))
            .await;
        assert_eq!(body["errors"][0]["errorType"], "NotFound", "{body}");
    }
    let brand_movies = ok(
        &world,
        &format!(r#"{{ getBrand(uid: "{brand}") {{ movies {{ count }} }} }}"#),
    )
    .await;
    assert_eq!(brand_movies["getBrand"]["movies"]["count"], 0);
    let en = ok(
        &world,
        &format!(
            r#"{{ getEpisode(uid: "{episode}") {{ title _meta {{ available_languages }} }} }}"#
        ),
    )
    .await;
    assert_eq!(en["getEpisode"]["title"], "Hello");
    assert_eq!(
        en["getEpisode"]["_meta"]["available_languages"],
        serde_json::json!(["en-GB"])
    );
    let (_, fr) = world
        .graphql(&format!(
            r#"{{ getEpisode(uid: "{episode}", language: "fr") {{ title }} }}"#
        ))
        .await;
    assert_eq!(fr["errors"][0]["errorType"], "NotFound", "{fr}");
}
