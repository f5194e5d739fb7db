//! Fan-out benchmark, embedded: an availability linked to `BENCH_OBJECTS` movies (default
//! 25,000) is updated through the GraphQL router, and the clock runs from the mutation until the
//! parent and every `post_update_availability` child are COMPLETE. The workers are the local
//! binary's (2 pollers per type, 10 records at once), in this process.
//!
//! Run: `cargo bench -p shared --bench fan_out`. Without `--bench` (as `cargo test --all-targets`
//! runs it) it does one 500-object smoke run.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use shared::app::Stack;
use shared::domain::{ContentObject, ObjectType, TaskId, TaskStatus, TaskType, Timestamp, new_uid};
use shared::ports::{
    Clock, ContentStore, ContentWrite, Expect, ObjectOp, Order, SystemClock, TaskQuery, TaskStore,
};
use tokio::sync::watch;
use tower::ServiceExt;

const RUNS: usize = 3;
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(600);

async fn graphql(router: &axum::Router, query: &str) -> Value {
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "query": query }).to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// One run on a fresh stack: returns (mutation → all COMPLETE, children counted).
async fn run(objects: usize) -> (Duration, usize) {
    let embedded = Stack::embedded(Arc::new(SystemClock), Duration::from_secs(30));
    let router = embedded.stack.router(&shared::http::ApiSettings::open());
    let (stop, shutdown) = watch::channel(false);
    let mut workers = embedded
        .stack
        .spawn_workers(2, 10, Duration::from_millis(100), &shutdown);

    let data = graphql(
        &router,
        r#"mutation { createAvailability(availability: { external_id: "bench" }) { uid } }"#,
    )
    .await;
    let a = data["createAvailability"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let store = &embedded.store;
    let stored = store
        .get_availability(&a)
        .await
        .expect("get")
        .expect("availability");
    // The linked movies, as their post_create tasks leave them (not timed).
    let now = Timestamp::now();
    let mut write = ContentWrite::default();
    for _ in 0..objects {
        let uid = new_uid();
        write.objects.push(ObjectOp::Put {
            object: ContentObject::linked(uid.clone(), ObjectType::Movie, &stored, now),
            expect: Expect::Absent,
        });
        write.availability_links.push((a.clone(), uid, true));
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

    let started = Instant::now();
    let data = graphql(
        &router,
        &format!(
            r#"mutation {{ updateAvailability(uid: "{a}", availability: {{ start: "{}" }}) {{ _context {{ task_id }} }} }}"#,
            now.plus_secs(3600)
        ),
    )
    .await;
    let parent = TaskId::parse(
        data["updateAvailability"]["_context"]["task_id"]
            .as_str()
            .expect("task_id"),
    )
    .expect("uuid");
    // Done when the parent is COMPLETE and no queue holds a message, ready or in flight.
    loop {
        let parent_done = store
            .get_task(parent, SystemClock.now())
            .await
            .expect("get")
            .is_some_and(|t| t.status == TaskStatus::Complete);
        let idle = TaskType::ALL
            .iter()
            .all(|t| embedded.queue.depth(*t) == (0, 0));
        if parent_done && idle {
            break;
        }
        assert!(
            started.elapsed() < COMPLETION_TIMEOUT,
            "not done after {COMPLETION_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}

    // Every child COMPLETE, one per object (checked after the clock stopped).
    let mut children = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list_tasks(
                &TaskQuery {
                    status: None,
                    object_uid: None,
                    task_type: Some(TaskType::PostUpdateAvailability),
                    order: Order::Asc,
                    limit: 100,
                    cursor,
                },
                SystemClock.now(),
            )
            .await
            .expect("list");
        assert!(page.items.iter().all(|t| t.status == TaskStatus::Complete));
        children += page.items.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    (elapsed, children)
}

#[tokio::main]
async fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let objects = match std::env::var("BENCH_OBJECTS") {
        Ok(v) => v.replace('_', "").parse().expect("BENCH_OBJECTS: a number"),
        Err(_) if full => 25_000,
        Err(_) => 500,
    };
    let runs = if full { RUNS } else { 1 };
    let mut times = Vec::new();
    for i in 0..runs {
        let (elapsed, children) = run(objects).await;
        if children != objects {
            eprintln!("run {i}: {children} children for {objects} objects");
            return ExitCode::FAILURE;
        }
        println!(
            "run {i}: {objects} objects: mutation to last child COMPLETE in {:.0} ms ({:.0} children/s)",
            elapsed.as_secs_f64() * 1000.0,
            objects as f64 / elapsed.as_secs_f64()
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "fan-out of {objects}: median {:.0} ms over {runs} run(s), {:.0} children/s",
        median.as_secs_f64() * 1000.0,
        objects as f64 / median.as_secs_f64()
    );
    ExitCode::SUCCESS
}
