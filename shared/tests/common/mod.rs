//! An embedded stack driven by hand: requests go through the real HTTP router, and the workers
//! run only when a test calls `drain`, so a test can look at the state before a task runs.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use shared::adapters::MemoryQueue;
use shared::app::{Embedded, Stack};
use shared::domain::{TaskType, Timestamp};
use shared::engine::Poller;
use shared::http::{ApiSettings, ApiToken};
use shared::ports::{ManualClock, TaskQueue};
use tower::ServiceExt;

pub const SEED_CREATE_MOVIE: &str = r#"mutation {
  createMovie(movie: {
    title: "My movie",
    availability: {
      link: ["always"]
    }
  }) {
    uid
    _context {
      task_id
    }
  }
}"#;

/// The API token of the test stacks, and the header that presents it.
pub const TOKEN: &str = "test-token-0123456789";
pub const BEARER: &str = "Bearer test-token-0123456789";

pub const SEED_MESSAGES: [&str; 5] = [
    "Job started",
    "Starting availability creation",
    "Availability creation complete",
    "Starting availability post-processing",
    "Availability post-processing complete",
];

pub struct Harness {
    pub embedded: Embedded,
    pub clock: Arc<ManualClock>,
    router: Router,
    pollers: Vec<Poller>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_queue(|queue| queue)
    }

    /// An embedded stack whose senders (service and engine) go through `wrap`: to duplicate,
    /// fail or stall sends. The pollers still consume the memory queue itself.
    pub fn with_queue(wrap: impl FnOnce(Arc<MemoryQueue>) -> Arc<dyn TaskQueue>) -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let plain = Stack::embedded(clock.clone(), Duration::from_secs(30));
        let mut deps = plain.stack.deps.clone();
        deps.queue = wrap(plain.queue.clone());
        let embedded = Embedded {
            stack: Stack::new(deps, plain.queue.clone()),
            store: plain.store,
            queue: plain.queue,
        };
        let router = embedded.stack.router(&ApiSettings::with_token(
            ApiToken::new(TOKEN).expect("token"),
        ));
        let pollers = TaskType::ALL
            .iter()
            .map(|t| embedded.stack.poller(*t, 10, Duration::ZERO))
            .collect();
        Harness {
            embedded,
            clock,
            router,
            pollers,
        }
    }

    /// Sends a raw body to `POST /graphql`, with the token.
    pub async fn post(&self, content_type: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post("/graphql")
            .header("content-type", content_type)
            .header("authorization", BEARER)
            .body(body.into())
            .expect("request");
        self.send(request).await
    }

    /// Sends `request` as it is (add the token yourself).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, _, body) = self.exchange(request).await;
        (status, body)
    }

    /// Sends `request` as it is; returns the status, headers and JSON body.
    pub async fn exchange(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    /// Runs a GraphQL document; panics on a 5xx, which is never acceptable.
    pub async fn gql(&self, query: &str) -> Value {
        let (status, body) = self
            .post("application/json", json!({ "query": query }).to_string())
            .await;
        assert!(!status.is_server_error(), "{status} for {query}: {body}");
        body
    }

    /// Runs a document that must succeed, and returns its `data`.
    pub async fn ok(&self, query: &str) -> Value {
        let body = self.gql(query).await;
        assert!(body.get("errors").is_none(), "errors for {query}: {body}");
        body["data"].clone()
    }

    /// Lets the workers run until every queue is empty; returns how many messages they handled.
    pub async fn drain(&self) -> usize {
        let mut handled = 0;
        for _ in 0..10_000 {
            let mut round = 0;
            for poller in &self.pollers {
                round += poller.poll_once(Duration::ZERO).await;
            }
            handled += round;
            let busy = TaskType::ALL.iter().any(|t| {
                let (ready, in_flight) = self.embedded.queue.depth(*t);
                ready + in_flight > 0
            });
            if round == 0 && !busy {
                return handled;
            }
        }
        panic!("queues did not drain");
    }

    pub async fn task(&self, task_id: &str) -> Value {
        self.ok(&format!(
            r#"{{ getSkylarkBackgroundTask(task_id: "{task_id}") {{ task_id created_at updated_at status task_type object_uid messages }} }}"#
        ))
        .await["getSkylarkBackgroundTask"]
            .clone()
    }

    /// Creates a movie linked to `always`; returns (uid, task_id).
    pub async fn create_movie(&self, title: &str) -> (String, String) {
        let data = self
            .ok(&format!(
                r#"mutation {{ createMovie(movie: {{ title: "{title}", availability: {{ link: ["always"] }} }}) {{ uid _context {{ task_id }} }} }}"#
            ))
            .await;
        (
            data["createMovie"]["uid"].as_str().expect("uid").to_owned(),
            data["createMovie"]["_context"]["task_id"]
                .as_str()
                .expect("task_id")
                .to_owned(),
        )
    }
}

pub fn error_type(body: &Value) -> Option<&str> {
    body["errors"][0]["errorType"].as_str()
}

pub fn messages(task: &Value) -> Vec<String> {
    task["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m.as_str().expect("string").to_owned())
        .collect()
}

/// `2023-11-03T13:02:25.584885+00:00`: fixed width, six fractional digits, `+00:00`.
pub fn is_fixed_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 32
        && text.ends_with("+00:00")
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[20..26].iter().all(u8::is_ascii_digit)
        && chrono_like_parse(text)
}

fn chrono_like_parse(text: &str) -> bool {
    Timestamp::parse_rfc3339(text).is_some_and(|t| t.to_string() == text)
}
