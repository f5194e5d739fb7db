//! The fault-injection soak: a fixed mix of mutations (every task type) through the API while
//! workers run on faulty ports, then the same mix on clean ones; the two must end with the same
//! derived data, every task COMPLETE or FAILED, and no message repeated within a task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use shared::adapters::faults::Faults;
use shared::domain::{TaskStatus, TaskType};
use shared::engine::{Deps, Engine, FanOutLimits, Poller, SweepLimits, Worker, resend_stale};
use shared::ports::{Order, QueueConsumer, TaskQuery};
use tokio::sync::watch;
use tower::ServiceExt;

/// What one soak run is made of.
pub struct Soak {
    /// The API's dependencies: a clean store, and a queue whose sends may fail after the
    /// task was written (the enqueue gap).
    pub api: Deps,
    /// The workers' dependencies: the faulty store and a duplicating, failing queue.
    pub workers: Deps,
    /// Clean dependencies on the same data: for the checks and the sweeper.
    pub clean: Deps,
    pub consumer: Arc<dyn QueueConsumer>,
    pub faults: Option<Arc<Faults>>,
    pub lease: Duration,
    pub record_timeout: Duration,
    pub max_receive_count: u32,
    pub pollers_per_type: usize,
    /// How long a failed record stays invisible (SQS counts whole seconds).
    pub retry_delay: Duration,
}

#[derive(Debug)]
pub struct Report {
    pub snapshot: Value,
    pub tasks: usize,
    pub by_status: BTreeMap<String, usize>,
    pub faults: BTreeMap<&'static str, u64>,
    pub deliveries: usize,
    pub sweeps_resent: usize,
    pub max_to_terminal: Duration,
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tasks: {} {:?}", self.tasks, self.by_status)?;
        writeln!(f, "injected faults: {:?}", self.faults)?;
        writeln!(
            f,
            "deliveries: {} ({:.2} per task; every send doubled, the rest are retries)",
            self.deliveries,
            self.deliveries as f64 / self.tasks.max(1) as f64
        )?;
        writeln!(
            f,
            "messages re-sent by the sweeper (tasks QUEUED over 1 s): {}",
            self.sweeps_resent
        )?;
        writeln!(
            f,
            "max time to a terminal state: {:.0} ms; whole run {:.1} s",
            self.max_to_terminal.as_secs_f64() * 1000.0,
            self.elapsed.as_secs_f64()
        )
    }
}

struct Api {
    router: axum::Router,
    names: BTreeMap<String, String>,
}

impl Api {
    async fn call(&self, query: &str) -> Value {
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "query": query }).to_string()))
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        assert!(!status.is_server_error(), "{status} for {query}: {body}");
        body
    }

    /// A mutation that must succeed; remembers the uid it returns under `name`.
    async fn create(&mut self, name: &str, query: &str) -> String {
        let body = self.call(query).await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
        let uid = body["data"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v["uid"].as_str())
            .unwrap_or_else(|| panic!("no uid: {body}"))
            .to_owned();
        self.names.insert(uid.clone(), name.to_owned());
        uid
    }
}

const FAR_PAST: &str = "2000-01-01T00:00:00+00:00";
const NOW_ISH: &str = "2020-01-01T00:00:00+00:00";
const FAR_FUTURE: &str = "2090-01-01T00:00:00+00:00";
const END: &str = "2100-01-01T00:00:00+00:00";

/// The fixed mix: `mutations` mutations touching every task type.
async fn scenario(api: &mut Api, mutations: usize) {
    let active = api
        .create(
            "active",
            &format!(r#"mutation {{ createAvailability(availability: {{ external_id: "active", start: "{NOW_ISH}", end: "{END}" }}) {{ uid }} }}"#),
        )
        .await;
    let future = api
        .create(
            "future",
            &format!(r#"mutation {{ createAvailability(availability: {{ external_id: "future", start: "{FAR_FUTURE}", end: "{END}" }}) {{ uid }} }}"#),
        )
        .await;
    let mut brands = Vec::new();
    for b in 0..4 {
        brands.push(
            api.create(
                &format!("brand{b}"),
                &format!(r#"mutation {{ createBrand(brand: {{ title: "b{b}", external_id: "brand{b}", availability: {{ link: ["always"] }} }}) {{ uid }} }}"#),
            )
            .await,
        );
    }
    let mut movies: Vec<String> = Vec::new();
    let mut episodes: Vec<String> = Vec::new();
    let mut doomed: Vec<String> = Vec::new();
    let mut done = 0;
    let mut i = 0usize;
    while done < mutations {
        i += 1;
        let query = match i % 10 {
            0..=3 => {
                let availability = [&active, &future, &"always".to_owned()][i % 3].clone();
                let doomed_link = doomed
                    .last()
                    .map(|d| format!(r#", "{d}""#))
                    .unwrap_or_default();
                let uid = api
                    .create(
                        &format!("m{i}"),
                        &format!(r#"mutation {{ createMovie(movie: {{ title: "m{i}", external_id: "m{i}", availability: {{ link: ["{availability}"{doomed_link}] }}, relationships: {{ brands: {{ link: ["{}"] }} }} }}) {{ uid }} }}"#, brands[i % brands.len()]),
                    )
                    .await;
                movies.push(uid);
                done += 1;
                continue;
            }
            4 => {
                let Some(movie) = movies.get(i % movies.len().max(1)) else {
                    continue;
                };
                format!(
                    r#"mutation {{ updateMovie(uid: "{movie}", movie: {{ synopsis: "s{i}", availability: {{ link: ["{future}"], unlink: ["{active}"] }}, relationships: {{ brands: {{ unlink: ["{}"] }} }} }}) {{ uid }} }}"#,
                    brands[i % brands.len()]
                )
            }
            5 => {
                let uid = api
                    .create(
                        &format!("e{i}"),
                        &format!(r#"mutation {{ createEpisode(episode: {{ title: "e{i}", external_id: "e{i}", availability: {{ link: ["{active}"] }} }}) {{ uid }} }}"#),
                    )
                    .await;
                episodes.push(uid.clone());
                format!(
                    r#"mutation {{ updateEpisode(uid: "{uid}", episode: {{ title: "fr{i}" }}, language: "fr") {{ uid }} }}"#
                )
            }
            6 => {
                if movies.len() < 4 {
                    continue;
                }
                let movie = movies.remove(i % movies.len());
                format!(r#"mutation {{ deleteMovie(uid: "{movie}") {{ task_id }} }}"#)
            }
            7 => {
                if movies.len() < 4 || episodes.is_empty() {
                    continue;
                }
                let a = movies.remove(i % movies.len());
                let episode = episodes.remove(0);
                format!(
                    r#"mutation {{ batchDeleteObjects(objects: [{{ uid: "{a}" }}, {{ uid: "missing-{i}" }}, {{ uid: "{episode}", language: "fr" }}]) {{ task_id }} }}"#
                )
            }
            // The doomed availability's movies are few: fan-outs stay small, the run linear.
            8 => {
                let Some(d) = doomed.last() else { continue };
                format!(
                    r#"mutation {{ updateAvailability(uid: "{d}", availability: {{ title: "t{i}", end: "{FAR_FUTURE}" }}) {{ uid }} }}"#
                )
            }
            _ => {
                // Every 10th: an availability that lives a while, linked by the next movies,
                // then deleted.
                if let Some(d) = doomed.pop() {
                    format!(r#"mutation {{ deleteAvailability(uid: "{d}") {{ task_id }} }}"#)
                } else {
                    let uid = api
                        .create(
                            &format!("doomed{i}"),
                            &format!(r#"mutation {{ createAvailability(availability: {{ external_id: "doomed{i}", start: "{FAR_PAST}", end: "{END}" }}) {{ uid }} }}"#),
                        )
                        .await;
                    doomed.push(uid);
                    done += 1;
                    continue;
                }
            }
        };
        let body = api.call(&query).await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
        done += 1;
    }
}

async fn snapshot(api: &Api) -> Value {
    let mut content = Vec::new();
    for (list, extra) in [
        ("listMovie", "brands { objects { uid } }"),
        ("listEpisode", ""),
        ("listBrand", "movies { objects { uid } }"),
    ] {
        let mut token: Option<String> = None;
        loop {
            let after = token
                .as_ref()
                .map(|t| format!(r#", next_token: "{t}""#))
                .unwrap_or_default();
            let body = api
                .call(&format!(
                    "{{ {list}(ignore_availability: true, limit: 100{after}) {{ next_token objects {{ uid title synopsis _meta {{ availability_status available_languages }} availability {{ objects {{ uid }} }} {extra} }} }} }}"
                ))
                .await;
            let listing = &body["data"][list];
            content.extend(listing["objects"].as_array().expect("objects").clone());
            match listing["next_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
    }
    let mut text = Value::Array(content).to_string();
    for (uid, name) in &api.names {
        text = text.replace(uid.as_str(), name);
    }
    let mut content: Vec<Value> = serde_json::from_str::<Vec<Value>>(&text).expect("json");
    content.sort_by_key(|v| v["uid"].to_string());
    Value::Array(content)
}

/// Every task, oldest first, through the clean store.
async fn all_tasks(deps: &Deps) -> Vec<shared::domain::Task> {
    let mut tasks = Vec::new();
    let mut cursor = None;
    loop {
        let page = deps
            .tasks
            .list_tasks(
                &TaskQuery {
                    status: None,
                    object_uid: None,
                    task_type: None,
                    order: Order::Asc,
                    limit: 100,
                    cursor,
                },
                deps.clock.now(),
            )
            .await
            .expect("list tasks");
        tasks.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return tasks,
        }
    }
}

async fn unfinished(deps: &Deps) -> usize {
    let mut count = 0;
    for status in [TaskStatus::Queued, TaskStatus::InProgress] {
        let page = deps
            .tasks
            .list_tasks(
                &TaskQuery {
                    status: Some(status),
                    object_uid: None,
                    task_type: None,
                    order: Order::Asc,
                    limit: 100,
                    cursor: None,
                },
                deps.clock.now(),
            )
            .await
            .expect("list tasks");
        count += page.items.len();
    }
    count
}

/// Counts the records a poller's worker is handed.
struct Counted {
    poller: Poller,
    deliveries: Arc<AtomicUsize>,
}

impl Counted {
    async fn run(self, shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let n = self.poller.poll_once(Duration::from_millis(50)).await;
            self.deliveries.fetch_add(n, Ordering::Relaxed);
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Runs the mix, waits until no task is QUEUED or IN_PROGRESS (sweeping the enqueue gap), and
/// reports. Panics if that takes longer than `deadline`.
pub async fn run(soak: Soak, mutations: usize, deadline: Duration) -> Report {
    let started = Instant::now();
    let limits = FanOutLimits {
        page: 10,
        pages_per_run: 2,
    };
    let engine =
        Arc::new(Engine::with_fan_out(soak.workers.clone(), limits).with_lease(soak.lease));
    let deliveries = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let mut pollers = tokio::task::JoinSet::new();
    for task_type in TaskType::ALL {
        for _ in 0..soak.pollers_per_type {
            let worker = Worker::new(engine.clone(), Some(*task_type), 10)
                .with_max_receive_count(soak.max_receive_count)
                .with_record_timeout(soak.record_timeout);
            let counted = Counted {
                poller: Poller {
                    consumer: soak.consumer.clone(),
                    worker: Arc::new(worker),
                    task_type: *task_type,
                    batch_size: 10,
                    retry_delay: soak.retry_delay,
                },
                deliveries: deliveries.clone(),
            };
            pollers.spawn(counted.run(stopped.clone()));
        }
    }

    let mut api = Api {
        router: shared::http::router(soak.api.clone(), &shared::http::ApiSettings::open()),
        names: BTreeMap::new(),
    };
    scenario(&mut api, mutations).await;

    let mut sweeps_resent = 0;
    let mut before = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = unfinished(&soak.clean).await;
        if left == 0 {
            break;
        }
        if std::env::var("SOAK_DEBUG").is_ok() {
            eprintln!("{:?}: {left} unfinished", started.elapsed());
        }
        let stalled = left >= before;
        before = left;
        if !stalled {
            continue;
        }
        // No progress for a while: what is left QUEUED lost its message. The sweeper (here
        // with a 1 s threshold) sends it again.
        sweeps_resent += resend_stale(
            &soak.clean,
            SweepLimits {
                older_than: Duration::from_secs(1),
                max: 1000,
            },
        )
        .await
        .expect("sweep");
        assert!(
            started.elapsed() < deadline,
            "tasks still unfinished after {deadline:?}"
        );
    }
    let _ = stop.send(true);
    while pollers.join_next().await.is_some() {}

    let tasks = all_tasks(&soak.clean).await;
    let mut by_status = BTreeMap::new();
    let mut max_to_terminal = Duration::ZERO;
    // Children depend on what was linked when their parent ran, so only the tasks the
    // mutations created must match a clean run's, by type.
    let mut from_api: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &tasks {
        if task.parent.is_none() {
            *from_api.entry(task.task_type.as_str()).or_default() += 1;
        }
        *by_status.entry(task.status.to_string()).or_default() += 1;
        let unique: BTreeSet<&str> = task.messages.iter().map(|m| m.as_ref()).collect();
        assert_eq!(
            unique.len(),
            task.messages.len(),
            "repeated messages in {task:?}"
        );
        let micros = (task.updated_at.micros() - task.created_at.micros()).max(0);
        max_to_terminal = max_to_terminal.max(Duration::from_micros(micros as u64));
    }
    Report {
        snapshot: json!({ "content": snapshot(&api).await, "tasks_from_mutations": from_api }),
        tasks: tasks.len(),
        by_status,
        faults: soak.faults.map(|f| f.log.counts()).unwrap_or_default(),
        deliveries: deliveries.load(Ordering::Relaxed),
        sweeps_resent,
        max_to_terminal,
        elapsed: started.elapsed(),
    }
}
