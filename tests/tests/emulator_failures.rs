//! Nothing lost, nothing stuck, on DynamoDB and SQS (moto here, LocalStack unchanged): a poison
//! task ends FAILED at its last attempt or through the dead-letter queue, a task whose message
//! was never sent is found by the sweeper, and a task with 600 long messages stays far below
//! DynamoDB's item limit and still completes. And the emulator must give conditional writes
//! DynamoDB's atomicity, which every one of these relies on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::adapters::SqsTaskQueue;
use shared::adapters::faults::{FaultPlan, Faults, FaultyQueue, FaultyStore};
use shared::adapters::provision::queue_name;
use shared::app::LAMBDA_RECORD_CONCURRENCY;
use shared::domain::{Lease, MAX_MESSAGES, Message, Progress, Task, TaskId, TaskStatus, TaskType};
use shared::engine::{Deps, Engine, SweepLimits, Worker, resend_stale};
use shared::ports::{QueueConsumer, TaskUpdate};
use tests::emulator::{World, invoke};

async fn create_movie(world: &World) -> (String, String) {
    let (status, body) = world
        .graphql(r#"mutation { createMovie(movie: { title: "P", availability: { link: ["always"] } }) { uid _context { task_id } } }"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let movie = &body["data"]["createMovie"];
    (
        movie["uid"].as_str().expect("uid").to_owned(),
        movie["_context"]["task_id"]
            .as_str()
            .expect("task")
            .to_owned(),
    )
}

async fn task(world: &World, task_id: &str) -> Value {
    let (_, body) = world
        .graphql(&format!(
            r#"{{ getSkylarkBackgroundTask(task_id: "{task_id}") {{ status messages }} }}"#
        ))
        .await;
    body["data"]["getSkylarkBackgroundTask"].clone()
}

fn poisoned(world: &World, uid: &str) -> Deps {
    let faults = Faults::new(
        FaultPlan {
            poisoned: vec![uid.to_owned()],
            ..FaultPlan::default()
        },
        7,
    );
    let store = Arc::new(FaultyStore {
        content: world.deps.content.clone(),
        tasks: world.deps.tasks.clone(),
        faults,
    });
    Deps {
        content: store.clone(),
        tasks: store,
        ..world.deps.clone()
    }
}

/// Receives from `consumer` and hands each batch to `worker`, deleting what succeeded and making
/// failures visible again at once, until nothing comes; returns the deliveries.
async fn deliver(consumer: &dyn QueueConsumer, worker: &Worker, task_type: TaskType) -> usize {
    let mut deliveries = 0;
    loop {
        let messages = consumer
            .receive(task_type, 10, Duration::from_secs(1))
            .await
            .expect("receive");
        if messages.is_empty() {
            return deliveries;
        }
        deliveries += messages.len();
        let event = shared::engine::sqs_event(&messages, &consumer.source_arn(task_type));
        let response = invoke(worker, event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for m in &messages {
            if failed.contains(&m.message_id.as_str()) {
                consumer
                    .retry_later(task_type, &m.receipt_handle, Duration::ZERO)
                    .await
                    .expect("visibility");
            } else {
                consumer
                    .delete(task_type, std::slice::from_ref(&m.receipt_handle))
                    .await
                    .expect("delete");
            }
        }
    }
}

async fn dead_letter_queue(world: &World, task_type: TaskType) -> SqsTaskQueue {
    let url = world
        .sqs
        .get_queue_url()
        .queue_name(format!("{}-dlq", queue_name(&world.prefix, task_type)))
        .send()
        .await
        .expect("DLQ url")
        .queue_url
        .expect("url");
    SqsTaskQueue::new(world.sqs.clone(), HashMap::from([(task_type, url)]))
}

#[tokio::test]
async fn a_poison_task_fails_at_its_last_attempt_with_the_reason() {
    // Given a queue that moves a message to its DLQ after 3 receives, and a task whose object
    // can never be read
    let world = World::with_max_receive_count(3).await;
    let (uid, task_id) = create_movie(&world).await;
    let worker = Worker::new(
        Arc::new(Engine::new(poisoned(&world, &uid))),
        Some(TaskType::PostCreate),
        LAMBDA_RECORD_CONCURRENCY,
    )
    .with_max_receive_count(3);

    // When it is delivered until its queue is empty
    let deliveries = deliver(world.queue.as_ref(), &worker, TaskType::PostCreate).await;

    // Then it took three attempts, and the third wrote FAILED with the reason
    assert_eq!(deliveries, 3);
    let failed = task(&world, &task_id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let last = failed["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("Job failed: retries exhausted; last error:") && last.contains("poisoned"),
        "{last}"
    );
    // and its message is gone from both queues: deleted, not lost with the task IN_PROGRESS
    let dlq = dead_letter_queue(&world, TaskType::PostCreate).await;
    let dead = dlq
        .receive(TaskType::PostCreate, 10, Duration::from_secs(1))
        .await
        .expect("receive DLQ");
    assert!(dead.is_empty(), "{dead:?}");
}

#[tokio::test]
async fn a_task_whose_message_reached_the_dlq_is_failed_by_the_dlq_consumer() {
    // Given a worker that does not know the redrive limit, so the message reaches the DLQ
    let world = World::with_max_receive_count(3).await;
    let (uid, task_id) = create_movie(&world).await;
    let worker = Worker::new(
        Arc::new(Engine::new(poisoned(&world, &uid))),
        Some(TaskType::PostCreate),
        LAMBDA_RECORD_CONCURRENCY,
    );
    let deliveries = deliver(world.queue.as_ref(), &worker, TaskType::PostCreate).await;
    assert_eq!(deliveries, 3);
    assert_eq!(task(&world, &task_id).await["status"], "IN_PROGRESS");

    // When the DLQ consumer runs
    let dlq = dead_letter_queue(&world, TaskType::PostCreate).await;
    let consumer = Worker::dead_letters(
        Arc::new(Engine::new(world.deps.clone())),
        LAMBDA_RECORD_CONCURRENCY,
    );
    assert_eq!(deliver(&dlq, &consumer, TaskType::PostCreate).await, 1);

    // Then the task is FAILED with the reason, and the DLQ is empty
    let failed = task(&world, &task_id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(
        failed["messages"].as_array().and_then(|m| m.last()),
        Some(&Value::from(
            "Job failed: retries exhausted: its message went to the dead-letter queue"
        ))
    );
    assert_eq!(deliver(&dlq, &consumer, TaskType::PostCreate).await, 0);
}

#[tokio::test]
async fn the_sweeper_sends_again_what_a_failed_send_left_queued() {
    // Given an API whose SendMessage fails after the task was written
    let world = World::new().await;
    let faults = Faults::new(
        FaultPlan {
            send_fail: 1.0,
            ..FaultPlan::default()
        },
        3,
    );
    let api = Deps {
        queue: Arc::new(FaultyQueue {
            inner: world.deps.queue.clone(),
            faults: faults.clone(),
            duplicate: false,
        }),
        ..world.deps.clone()
    };
    let router = shared::http::router(
        api,
        &shared::http::ApiSettings::with_token(
            shared::http::ApiToken::new(tests::emulator::TEST_TOKEN).expect("token"),
        ),
    );
    let request = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("x-api-key", tests::emulator::TEST_TOKEN)
        .body(axum::body::Body::from(
            serde_json::json!({ "query": r#"mutation { createMovie(movie: { title: "Lost", availability: { link: ["always"] } }) { _context { task_id } } }"# }).to_string(),
        ))
        .expect("request");
    let response = tower::ServiceExt::oneshot(router, request)
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    let task_id = body["data"]["createMovie"]["_context"]["task_id"]
        .as_str()
        .expect("the mutation succeeded")
        .to_owned();
    assert_eq!(faults.log.counts().get("send failed"), Some(&1));
    assert_eq!(world.run_queue(TaskType::PostCreate).await, 0, "no message");
    assert_eq!(task(&world, &task_id).await["status"], "QUEUED");

    // When the sweeper runs (threshold 0 here: the task is already old enough)
    let resent = resend_stale(
        &world.deps,
        SweepLimits {
            older_than: Duration::ZERO,
            max: 100,
        },
    )
    .await
    .expect("sweep");
    assert_eq!(resent, 1);

    // Then the task completes
    assert_eq!(world.run_queue(TaskType::PostCreate).await, 1);
    assert_eq!(task(&world, &task_id).await["status"], "COMPLETE");
}

#[tokio::test]
async fn six_hundred_long_messages_stay_bounded_and_the_task_completes() {
    let world = World::new().await;
    let (_, task_id) = create_movie(&world).await;
    let id = TaskId::parse(&task_id).expect("uuid");
    let now = shared::domain::Timestamp::now();
    // Given a run that wrote 600 messages of 1 KB in checkpoints and then died
    let mut current = world
        .deps
        .tasks
        .get_task(id, now)
        .await
        .expect("get")
        .expect("task");
    let mut status = TaskStatus::Queued;
    for i in 0..600 {
        let text = format!("{i:04} {}", "x".repeat(1019));
        let mut update = TaskUpdate::of(
            &current,
            TaskStatus::InProgress,
            vec![Message::Owned(text)],
            now,
        );
        update.expect_status = status;
        update.progress = Some(Progress {
            cursor: None,
            queued: 0,
            step: current.progress.step + 1,
        });
        update.lease = Some(Lease {
            owner: "dead".to_owned(),
            until: now,
        });
        current = world
            .deps
            .tasks
            .update_task(id, update)
            .await
            .expect("append");
        status = TaskStatus::InProgress;
    }
    assert_eq!(current.message_count, 600);
    assert_eq!(current.messages.len(), MAX_MESSAGES);

    // When its message is delivered again
    world.run_queue(TaskType::PostCreate).await;

    // Then the task completes, and its item is far below 400 KB
    let done = task(&world, &task_id).await;
    assert_eq!(done["status"], "COMPLETE", "{done}");
    let messages = done["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), MAX_MESSAGES);
    // 600 + the four seed messages after "Job started": 604, of which 10 + 89 are kept.
    assert_eq!(messages[10], "… 505 messages dropped …");
    assert_eq!(
        messages.last().and_then(Value::as_str),
        Some("Availability post-processing complete")
    );
    let item = world.raw_task(&task_id).await.expect("item");
    let size = item_size(&item);
    println!("task item after 600 messages of 1 KB: {size} bytes");
    assert!(size < 200_000, "{size} bytes");
}

/// DynamoDB's item size: attribute names plus values.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::M(map) => {
                3 + map
                    .iter()
                    .map(|(k, v)| 1 + k.len() + value(v))
                    .sum::<usize>()
            }
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Eight deliveries start one task at the same moment, with the engine's own conditional write:
/// exactly one may win, as DynamoDB applies a conditional write atomically per item. Plain
/// `moto_server` fails this now and then (its DynamoDB takes no lock: two writes can both pass
/// the condition, and the soak saw "Job started" twice in one task); the test command runs moto
/// through `tests/moto_server.py`, which serializes DynamoDB requests.
#[tokio::test]
async fn of_concurrent_starts_of_one_task_exactly_one_wins() {
    let world = World::new().await;
    let tasks = &world.deps.tasks;
    let now = world.deps.clock.now();
    for round in 0..40 {
        // A heavy item (90 messages of 2 KB, as a long fan-out's) widens the window a racy
        // store leaves between checking the condition and writing.
        let mut task = Task::new_queued(TaskType::PostCreate, format!("object-{round}"), now);
        task.messages = (0..90)
            .map(|i| Message::Owned(format!("{i:02} {}", "x".repeat(2000))))
            .collect();
        task.message_count = 90;
        assert_eq!(
            tasks.create_tasks(&[task.clone()]).await.expect("create"),
            1
        );
        let starts = (0..8).map(|delivery| {
            let mut start = TaskUpdate::of(
                &task,
                TaskStatus::InProgress,
                vec![Message::Borrowed("Job started")],
                now,
            );
            start.lease = Some(Lease {
                owner: format!("delivery-{delivery}"),
                until: now.plus_secs(60),
            });
            tasks.update_task(task.task_id, start)
        });
        let results = futures::future::join_all(starts).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won, 1,
            "round {round}: {won} of 8 conditional starts applied"
        );
        let stored = tasks
            .get_task(task.task_id, now)
            .await
            .expect("read")
            .expect("task");
        assert_eq!(stored.message_count, 91, "round {round}");
        assert_eq!(stored.messages.len(), 91, "round {round}");
    }
}
