//! The fault-injection soak (issue 6): every task type under failing store calls, failed and
//! duplicated sends, and workers killed mid-run, in embedded mode and on the emulator. Each ends
//! with every task COMPLETE or FAILED (none QUEUED or IN_PROGRESS), no message repeated within a
//! task, and the same derived data as a clean run of the same mutations. It prints its figures.

use std::sync::Arc;
use std::time::Duration;

use shared::adapters::faults::{FaultPlan, Faults, FaultyQueue, FaultyStore};
use shared::adapters::{MemoryQueue, MemoryStore};
use shared::engine::Deps;
use shared::ports::{QueueConsumer, SystemClock};
use tests::emulator::World;
use tests::soak::{Report, Soak, run};

/// 10% of store calls fail before taking effect, and 3% of writes after; 3% of sends fail; one
/// store call in 500 never returns (about one kill per 50 tasks, at a random step).
fn plan() -> FaultPlan {
    FaultPlan {
        store_fail_before: 0.10,
        store_fail_after: 0.03,
        stall: 1.0 / 500.0,
        send_fail: 0.03,
        poisoned: Vec::new(),
    }
}

/// The faulty and the clean soak of the same dependencies.
fn soaks(
    clean: Deps,
    consumer: Arc<dyn QueueConsumer>,
    seed: u64,
    retry_delay: Duration,
    lease: Duration,
) -> Soak {
    let faults = Faults::new(plan(), seed);
    let store = Arc::new(FaultyStore {
        content: clean.content.clone(),
        tasks: clean.tasks.clone(),
        faults: faults.clone(),
    });
    let api = Deps {
        queue: Arc::new(FaultyQueue {
            inner: clean.queue.clone(),
            faults: faults.clone(),
            duplicate: false,
        }),
        ..clean.clone()
    };
    let workers = Deps {
        content: store.clone(),
        tasks: store,
        queue: Arc::new(FaultyQueue {
            inner: clean.queue.clone(),
            faults: faults.clone(),
            duplicate: true,
        }),
        clock: clean.clock.clone(),
    };
    Soak {
        api,
        workers,
        clean,
        consumer,
        faults: Some(faults),
        lease,
        record_timeout: lease / 2,
        max_receive_count: 60,
        pollers_per_type: 2,
        retry_delay,
    }
}

fn clean_soak(clean: Deps, consumer: Arc<dyn QueueConsumer>, retry_delay: Duration) -> Soak {
    Soak {
        api: clean.clone(),
        workers: clean.clone(),
        clean,
        consumer,
        faults: None,
        lease: Duration::from_secs(60),
        record_timeout: Duration::from_secs(60),
        max_receive_count: 60,
        pollers_per_type: 2,
        retry_delay,
    }
}

fn memory() -> (Deps, Arc<dyn QueueConsumer>) {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let deps = Deps {
        content: store.clone(),
        tasks: store,
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
    };
    (deps, queue)
}

fn check(name: &str, faulty: &Report, clean: &Report) {
    println!("== soak {name}\n{faulty}");
    assert!(!faulty.faults.is_empty(), "no fault was injected");
    assert!(
        faulty
            .by_status
            .keys()
            .all(|s| s == "COMPLETE" || s == "FAILED"),
        "{:?}",
        faulty.by_status
    );
    assert_eq!(
        faulty.snapshot, clean.snapshot,
        "derived data differs from a clean run's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_embedded_2000_mutations_under_faults() {
    let deadline = Duration::from_secs(600);
    let mutations: usize =
        std::env::var("SOAK_MUTATIONS").map_or(2000, |v| v.parse().expect("a number"));
    let (deps, consumer) = memory();
    let clean = run(
        clean_soak(deps, consumer, Duration::from_millis(20)),
        mutations,
        deadline,
    )
    .await;
    let (deps, consumer) = memory();
    let faulty = run(
        soaks(
            deps,
            consumer,
            0x5eed_2000,
            Duration::from_millis(20),
            Duration::from_millis(600),
        ),
        mutations,
        deadline,
    )
    .await;
    check("embedded", &faulty, &clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_emulator_200_mutations_under_faults() {
    const MUTATIONS: usize = 200;
    let deadline = Duration::from_secs(900);
    let world = World::with_max_receive_count(100).await;
    let clean = run(
        clean_soak(
            world.deps.clone(),
            world.queue.clone(),
            Duration::from_secs(1),
        ),
        MUTATIONS,
        deadline,
    )
    .await;
    let world = World::with_max_receive_count(100).await;
    let faulty = run(
        soaks(
            world.deps.clone(),
            world.queue.clone(),
            0x5eed_0200,
            Duration::from_secs(1),
            Duration::from_secs(2),
        ),
        MUTATIONS,
        deadline,
    )
    .await;
    check("emulator", &faulty, &clean);
}
