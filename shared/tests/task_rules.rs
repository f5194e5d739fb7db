//! The task rules of DESIGN.md §3 on the embedded stack: forward-only transitions, duplicate and
//! concurrent deliveries, re-runs after a crash, out-of-order tasks, and the batch contract.

mod common;

use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use common::*;
use shared::domain::{Lease, Message, TaskId, TaskMessage, TaskStatus, TaskType};
use shared::engine::{Outcome, TaskError, Worker, WorkerError};
use shared::ports::{
    Clock, ContentStore, QueueConsumer, StoreError, TaskQueue, TaskStore, TaskUpdate,
};

fn message_for(task_id: &str, task_type: TaskType, uid: &str) -> TaskMessage {
    TaskMessage {
        task_id: TaskId::parse(task_id).expect("uuid"),
        task_type,
        object_uid: uid.to_owned(),
    }
}

async fn movie_state(h: &Harness, uid: &str) -> serde_json::Value {
    h.ok(&format!(
        r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ title availability {{ objects {{ uid }} }} brands {{ objects {{ uid }} }} _meta {{ availability_status }} }} }}"#
    ))
    .await
}

#[tokio::test]
async fn running_a_complete_task_again_changes_nothing() {
    let h = Harness::new();
    let (uid, task_id) = h.create_movie("Twice").await;
    h.drain().await;
    let before_task = h.task(&task_id).await;
    let before_movie = movie_state(&h, &uid).await;

    h.clock.advance_secs(5);
    let engine = &h.embedded.stack.engine;
    let outcome = engine
        .run(&message_for(&task_id, TaskType::PostCreate, &uid))
        .await
        .expect("run");
    assert_eq!(outcome, Outcome::AlreadyDone);
    assert_eq!(
        h.task(&task_id).await,
        before_task,
        "updated_at and messages unchanged"
    );
    assert_eq!(movie_state(&h, &uid).await, before_movie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_deliveries_write_each_message_once() {
    let h = Harness::new();
    let (uid, task_id) = h.create_movie("Racing").await;
    let message = message_for(&task_id, TaskType::PostCreate, &uid);
    // SQS may deliver the same message twice, and at the same time.
    h.embedded
        .queue
        .send(std::slice::from_ref(&message))
        .await
        .expect("send");

    let engine = h.embedded.stack.engine.clone();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            let message = message.clone();
            tokio::spawn(async move { engine.run(&message).await })
        })
        .collect();
    // One completes it; the others find it done, or held by that one's lease (and would come
    // back later).
    let mut completed = 0;
    for run in runs {
        match run.await.expect("join") {
            Ok(Outcome::Completed) => completed += 1,
            Ok(Outcome::AlreadyDone) | Err(TaskError::Busy { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(completed, 1);
    h.drain().await;

    let task = h.task(&task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(messages(&task), SEED_MESSAGES);
    let movie = movie_state(&h, &uid).await;
    assert_eq!(
        movie["getMovie"]["availability"]["objects"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_rerun_after_a_crash_appends_only_the_missing_messages() {
    let h = Harness::new();
    let (uid, task_id) = h.create_movie("Crashed").await;
    let id = TaskId::parse(&task_id).expect("uuid");
    let store = &h.embedded.store;
    let now = h.clock.now();
    // Given a worker that started the task and wrote two more messages, then died.
    store
        .update_task(
            id,
            TaskUpdate {
                expect_status: TaskStatus::Queued,
                expect_message_count: 0,
                expect_step: 0,
                expect_owner: None,
                status: TaskStatus::InProgress,
                replace_messages: None,
                append: vec![
                    Message::Borrowed("Job started"),
                    Message::Borrowed("Starting availability creation"),
                    Message::Borrowed("Availability creation complete"),
                ],
                updated_at: now,
                expires_at: None,
                progress: None,
                lease: None,
            },
        )
        .await
        .expect("start");

    // When the message is delivered again
    h.drain().await;

    // Then the task completes with each seed message exactly once
    let task = h.task(&task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(messages(&task), SEED_MESSAGES);
    let movie = movie_state(&h, &uid).await;
    assert_eq!(movie["getMovie"]["_meta"]["availability_status"], "ACTIVE");
}

#[tokio::test]
async fn a_complete_task_never_moves_back() {
    let h = Harness::new();
    let (_, task_id) = h.create_movie("Done").await;
    h.drain().await;
    let id = TaskId::parse(&task_id).expect("uuid");
    let store = &h.embedded.store;
    for (expect_status, status) in [
        (TaskStatus::Queued, TaskStatus::InProgress),
        (TaskStatus::InProgress, TaskStatus::Failed),
        (TaskStatus::InProgress, TaskStatus::Complete),
    ] {
        let result = store
            .update_task(
                id,
                TaskUpdate {
                    expect_status,
                    expect_message_count: 5,
                    expect_step: 0,
                    expect_owner: None,
                    status,
                    replace_messages: None,
                    append: vec![Message::Borrowed("late")],
                    updated_at: h.clock.now(),
                    expires_at: None,
                    progress: None,
                    lease: None,
                },
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::ConditionFailed(_))),
            "{result:?}"
        );
    }
    let task = h.task(&task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(messages(&task), SEED_MESSAGES);
}

#[tokio::test]
async fn two_updates_processed_in_either_order_converge_on_the_latest_declaration() {
    for reverse in [false, true] {
        let h = Harness::new();
        let (uid, _) = h.create_movie("Flip").await;
        let brand = h
            .ok(r#"mutation { createBrand(brand: { title: "B", availability: { link: ["always"] } }) { uid } }"#)
            .await["createBrand"]["uid"]
            .as_str()
            .expect("uid")
            .to_owned();
        h.drain().await;

        // Unlink, then link again: the object's declaration is the source of truth.
        h.ok(&format!(
            r#"mutation {{ updateMovie(uid: "{uid}", movie: {{ availability: {{ unlink: ["always"] }}, relationships: {{ brands: {{ link: ["{brand}"] }} }} }}) {{ uid }} }}"#
        ))
        .await;
        h.ok(&format!(
            r#"mutation {{ updateMovie(uid: "{uid}", movie: {{ availability: {{ link: ["always"] }}, relationships: {{ brands: {{ unlink: ["{brand}"] }} }} }}) {{ uid }} }}"#
        ))
        .await;
        let mut received = h
            .embedded
            .queue
            .receive(TaskType::PostUpdate, 10, Duration::ZERO)
            .await
            .expect("receive");
        assert_eq!(received.len(), 2);
        if reverse {
            received.reverse();
        }
        for m in &received {
            let message: TaskMessage = serde_json::from_str(&m.body).expect("task message");
            h.embedded.stack.engine.run(&message).await.expect("run");
        }

        let movie = movie_state(&h, &uid).await;
        assert_eq!(
            movie["getMovie"]["availability"]["objects"][0]["uid"], "always",
            "reverse={reverse}"
        );
        assert_eq!(
            movie["getMovie"]["brands"]["objects"],
            serde_json::json!([]),
            "reverse={reverse}"
        );
        let brand_movies = h
            .ok(&format!(
                r#"{{ getBrand(uid: "{brand}") {{ movies {{ count }} }} }}"#
            ))
            .await;
        assert_eq!(
            brand_movies["getBrand"]["movies"]["count"], 0,
            "reverse={reverse}"
        );
    }
}

fn record(id: &str, body: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(id.to_owned());
    record.body = Some(body.to_owned());
    record
}

#[tokio::test]
async fn only_failed_records_are_reported_and_bad_bodies_are_dropped() {
    let h = Harness::new();
    let (uid, task_id) = h.create_movie("Batch").await;
    let worker = Worker::new(
        h.embedded.stack.engine.clone(),
        Some(TaskType::PostCreate),
        4,
    );
    let good =
        serde_json::to_string(&message_for(&task_id, TaskType::PostCreate, &uid)).expect("json");
    let wrong_type =
        serde_json::to_string(&message_for(&task_id, TaskType::PostDelete, &uid)).expect("json");

    let mut event = SqsEvent::default();
    event.records = vec![
        record("m-good", &good),
        record("m-garbage", "this is not json"),
        record("m-other-json", r#"{"hello": "world"}"#),
        record("m-wrong-queue", &wrong_type),
    ];
    let response = worker.handle(event).await.expect("response");
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-wrong-queue"]);
    assert_eq!(h.task(&task_id).await["status"], "COMPLETE");

    // A failed record without an id cannot be reported alone: the whole batch fails.
    let mut event = SqsEvent::default();
    event.records = vec![record("", &wrong_type)];
    assert!(matches!(
        worker.handle(event).await,
        Err(WorkerError::FailedRecordWithoutId)
    ));
}

#[tokio::test]
async fn deleting_a_brand_cleans_the_reverse_side_of_its_movies() {
    let h = Harness::new();
    let brand = h
        .ok(r#"mutation { createBrand(brand: { title: "B", availability: { link: ["always"] } }) { uid } }"#)
        .await["createBrand"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let movie = h
        .ok(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "M", availability: {{ link: ["always"] }}, relationships: {{ brands: {{ link: ["{brand}"] }} }} }}) {{ uid }} }}"#
        ))
        .await["createMovie"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    h.drain().await;
    let brands = movie_state(&h, &movie).await;
    assert_eq!(
        brands["getMovie"]["brands"]["objects"][0]["uid"],
        brand.as_str()
    );

    h.ok(&format!(
        r#"mutation {{ deleteBrand(uid: "{brand}") {{ task_id }} }}"#
    ))
    .await;
    h.drain().await;
    let brands = movie_state(&h, &movie).await;
    assert_eq!(
        brands["getMovie"]["brands"]["objects"],
        serde_json::json!([])
    );
    // And the deleted object is really gone, not only hidden.
    assert!(
        h.embedded
            .store
            .get_object(&brand)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_held_lease_turns_deliveries_away_until_it_runs_out_and_a_late_holder_cannot_write() {
    let h = Harness::new();
    let (uid, task_id) = h.create_movie("Leased").await;
    let id = TaskId::parse(&task_id).expect("uuid");
    let store = &h.embedded.store;
    let queued = store
        .get_task(id, h.clock.now())
        .await
        .expect("get")
        .expect("task");
    // Given a worker that started the task under a 60 s lease and then went silent
    let mut start = TaskUpdate::of(
        &queued,
        TaskStatus::InProgress,
        vec![Message::Borrowed("Job started")],
        h.clock.now(),
    );
    start.lease = Some(Lease {
        owner: "the-old-holder".to_owned(),
        until: h.clock.now().plus_secs(60),
    });
    let held = store.update_task(id, start).await.expect("start");
    let message = message_for(&task_id, TaskType::PostCreate, &uid);
    let engine = h.embedded.stack.engine.clone();

    // When another delivery comes within the lease, it is turned away and writes nothing
    let busy = engine.run(&message).await;
    assert!(matches!(busy, Err(TaskError::Busy { .. })), "{busy:?}");
    let unchanged = store.get_task(id, h.clock.now()).await.expect("get");
    assert_eq!(unchanged.as_ref(), Some(&held));

    // When the lease has run out, the next delivery takes over and completes
    h.clock.advance_secs(61);
    assert_eq!(engine.run(&message).await.expect("run"), Outcome::Completed);
    let task = h.task(&task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(messages(&task), SEED_MESSAGES);

    // Then the old holder's late finish is refused: it no longer holds the lease
    let late = store
        .update_task(
            id,
            TaskUpdate::of(
                &held,
                TaskStatus::Failed,
                vec![Message::Borrowed("late")],
                h.clock.now(),
            ),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::ConditionFailed(_))),
        "{late:?}"
    );
    assert_eq!(h.task(&task_id).await["status"], "COMPLETE");
}

#[tokio::test]
async fn only_the_lease_holder_can_write() {
    let h = Harness::new();
    let (_, task_id) = h.create_movie("Two holders").await;
    let id = TaskId::parse(&task_id).expect("uuid");
    let store = &h.embedded.store;
    let lease = |owner: &str| Lease {
        owner: owner.to_owned(),
        until: h.clock.now().plus_secs(60),
    };
    let queued = store
        .get_task(id, h.clock.now())
        .await
        .expect("get")
        .expect("task");
    let mut start = TaskUpdate::of(&queued, TaskStatus::InProgress, Vec::new(), h.clock.now());
    start.lease = Some(lease("a"));
    let held_by_a = store.update_task(id, start).await.expect("a starts");
    // B takes over (same status, same message count, same step: only the owner differs)
    let mut take = TaskUpdate::of(
        &held_by_a,
        TaskStatus::InProgress,
        Vec::new(),
        h.clock.now(),
    );
    take.lease = Some(lease("b"));
    store.update_task(id, take).await.expect("b takes over");
    // A's write, made from what A read, is refused
    let late = store
        .update_task(
            id,
            TaskUpdate::of(&held_by_a, TaskStatus::Complete, Vec::new(), h.clock.now()),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::ConditionFailed(_))),
        "{late:?}"
    );
}
