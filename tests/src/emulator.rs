//! One test's own world on the emulator: uniquely named tables and queues created as
//! `infra/template.yaml` declares them, the real DynamoDB and SQS adapters, the API Lambda's router
//! behind `lambda_http`'s own adapter, and the worker Lambda's handler — fed with real event JSON.
//! Each entry point gets only the queues the template gives its function (`config::Role`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use shared::adapters::provision::{create_queues_with, create_tables};
use shared::adapters::{SqsTaskQueue, TableNames};
use shared::app::{lambda_api, lambda_worker};
use shared::config::{ApiEnv, AwsSettings, Role};
use shared::domain::TaskType;
use shared::engine::{Deps, Worker, sqs_event};
use shared::http::CorsOrigins;
use shared::ports::{QueueConsumer, ReceivedMessage};

/// The API token the test worlds keep in their secret; `tests/events/` carry it.
pub const TEST_TOKEN: &str = "skylark-test-token";

/// Counts the requests each client sends, per operation, attempts included.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", metadata.service(), metadata.name());
            if let Ok(mut counts) = self.0.lock() {
                *counts.entry(key).or_default() += 1;
            }
        }
        Ok(())
    }
}

impl RequestCounter {
    pub fn take(&self) -> BTreeMap<String, usize> {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// The endpoint the suite runs against; the test command sets it (it starts moto if unset).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: run the suite with `bash tests/run.sh`, which starts \
             moto's server, or point it at LocalStack (http://localhost:4566)"
        )
    })
}

pub async fn sdk_config() -> SdkConfig {
    endpoint();
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
        ))
        .load()
        .await
}

pub struct World {
    pub prefix: String,
    /// Every table and queue (what `skylark-local --emulator` has).
    pub settings: AwsSettings,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The adapters on every queue, for arranging and inspecting state.
    pub deps: Deps,
    /// The consuming side of every queue (receive, delete), as Lambda's event source mapping.
    pub queue: Arc<SqsTaskQueue>,
    pub counter: RequestCounter,
    counted_dynamodb: aws_sdk_dynamodb::Client,
    counted_sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The ARN of this world's token secret (holding [`TEST_TOKEN`]).
    pub token_secret: String,
    router: axum::Router,
}

impl World {
    /// A fresh set of tables and queues, as the template declares them.
    pub async fn new() -> World {
        Self::build(None).await
    }

    /// `new`, with the redrive-limit parameter set to `max_receive_count`.
    pub async fn with_max_receive_count(max_receive_count: u32) -> World {
        Self::build(Some(max_receive_count)).await
    }

    async fn build(max_receive_count: Option<u32>) -> World {
        let sdk = sdk_config().await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let tables = TableNames {
            content: format!("{prefix}-content"),
            tasks: format!("{prefix}-tasks"),
        };
        let plain_dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let plain_sqs = aws_sdk_sqs::Client::new(&sdk);
        create_tables(&plain_dynamodb, &tables)
            .await
            .expect("create tables");
        let queue_urls = create_queues_with(&plain_sqs, &prefix, max_receive_count)
            .await
            .expect("create queues");
        let settings = AwsSettings { tables, queue_urls };

        let counter = RequestCounter::default();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        let (deps, queue) = settings.deps_with(dynamodb.clone(), sqs.clone());
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let token_secret = secrets
            .create_secret()
            .name(format!("{prefix}-api-token"))
            .secret_string(TEST_TOKEN)
            .send()
            .await
            .expect("create the token secret")
            .arn
            .expect("the secret's ARN");
        let mut world = World {
            prefix,
            settings,
            dynamodb: plain_dynamodb,
            sqs: plain_sqs,
            deps,
            queue,
            counter,
            counted_dynamodb: dynamodb,
            counted_sqs: sqs,
            secrets,
            token_secret,
            router: axum::Router::new(),
        };
        world.router = world.api(CorsOrigins::None, false).await;
        world
    }

    /// The API Lambda's router as its `main` assembles it (token from this world's secret), with
    /// the given CORS origins and introspection setting, on the API's own queues.
    pub async fn api(&self, cors: CorsOrigins, introspection: bool) -> axum::Router {
        let env = ApiEnv {
            token_secret: self.token_secret.clone(),
            cors,
            introspection,
        };
        lambda_api(self.deps_of(Role::Api), &env, self.secrets.clone())
            .await
            .expect("the API starts")
    }

    /// The adapters as a deployed function of `role` has them: only its own queues.
    pub fn deps_of(&self, role: Role) -> Deps {
        self.settings
            .for_role(role)
            .deps_with(self.counted_dynamodb.clone(), self.counted_sqs.clone())
            .0
    }

    /// An API Gateway event (JSON) through `lambda_http`'s own adapter, as the runtime calls it;
    /// returns the API Gateway response as JSON (statusCode, headers, body).
    pub async fn api_event(&self, event: &Value) -> Value {
        api_event_on(&self.router, event).await
    }

    /// A GraphQL document as an HTTP API v2 POST event; returns (statusCode, body JSON).
    pub async fn graphql(&self, query: &str) -> (u16, Value) {
        let mut event: Value =
            serde_json::from_str(include_str!("../events/http-api-v2-seed.json")).expect("event");
        event["body"] = Value::String(serde_json::json!({ "query": query }).to_string());
        let response = self.api_event(&event).await;
        response_parts(&response)
    }

    /// Receives up to `max` messages of one queue, as an `SqsEvent` plus what was received.
    pub async fn receive(
        &self,
        task_type: TaskType,
        max: usize,
    ) -> (SqsEvent, Vec<ReceivedMessage>) {
        let messages = self
            .queue
            .receive(task_type, max, Duration::from_secs(1))
            .await
            .expect("receive");
        let event = sqs_event(&messages, &self.queue.source_arn(task_type));
        (event, messages)
    }

    /// The worker Lambda's handler for `task_type`, with a real `LambdaEvent`.
    pub async fn invoke_worker(&self, task_type: TaskType, event: SqsEvent) -> SqsBatchResponse {
        invoke(
            &lambda_worker(self.deps_of(Role::Worker(task_type)), task_type),
            event,
        )
        .await
    }

    /// The worker Lambda's handler for `task_type`, given the event JSON Lambda would send,
    /// with only the queues the template gives that worker.
    pub async fn invoke_worker_json(&self, task_type: TaskType, event: Value) -> SqsBatchResponse {
        let event: SqsEvent = serde_json::from_value(event).expect("an SqsEvent");
        self.invoke_worker(task_type, event).await
    }

    /// Receives, invokes the worker and deletes what succeeded, until the queue is empty:
    /// what Lambda's event source mapping does. Returns how many records it handled.
    pub async fn run_queue(&self, task_type: TaskType) -> usize {
        let worker = lambda_worker(self.deps_of(Role::Worker(task_type)), task_type);
        self.run_queue_with(&worker, task_type, 1).await
    }

    /// `run_queue` with a given worker, handing each event to it `deliveries` times (2: every
    /// record delivered twice, as SQS may).
    pub async fn run_queue_with(
        &self,
        worker: &Worker,
        task_type: TaskType,
        deliveries: usize,
    ) -> usize {
        let mut handled = 0;
        loop {
            let (event, messages) = self.receive(task_type, 10).await;
            if messages.is_empty() {
                return handled;
            }
            handled += messages.len();
            for _ in 1..deliveries {
                let again = invoke(worker, event.clone()).await;
                assert!(again.batch_item_failures.is_empty(), "{again:?}");
            }
            let response = invoke(worker, event).await;
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            let done: Vec<String> = messages
                .iter()
                .filter(|m| !failed.contains(&m.message_id.as_str()))
                .map(|m| m.receipt_handle.clone())
                .collect();
            self.queue.delete(task_type, &done).await.expect("delete");
            assert!(failed.is_empty(), "records failed: {failed:?}");
        }
    }

    pub async fn raw_task(
        &self,
        task_id: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(&self.settings.tables.tasks)
            .key("task_id", AttributeValue::S(task_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get_item")
            .item
    }
}

/// The worker Lambda's handler, with a real `LambdaEvent` made from the event's JSON, as Lambda
/// delivers it.
pub async fn invoke(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let json = serde_json::to_value(&event).expect("event JSON");
    let event: SqsEvent = serde_json::from_value(json).expect("an SqsEvent");
    worker::handle(worker, LambdaEvent::new(event, Context::default()))
        .await
        .expect("the batch as a whole succeeds")
}

/// A sample event of `tests/events/` (`name` without `.json`) as JSON.
pub fn sample_event(name: &str) -> Value {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An API Gateway event (JSON) through the API Lambda's handler on `router` (lambda_http's own
/// adapter inside), as the runtime calls it; returns the API Gateway response as JSON
/// (statusCode, headers, body).
pub async fn api_event_on(router: &axum::Router, event: &Value) -> Value {
    let Ok(response) = api::handle(
        router.clone(),
        LambdaEvent::new(event.clone(), Context::default()),
    )
    .await;
    serde_json::to_value(&response).expect("response JSON")
}

/// (statusCode, parsed body) of an API Gateway response.
pub fn response_parts(response: &Value) -> (u16, Value) {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let body = response["body"].as_str().unwrap_or("");
    let body = if response["isBase64Encoded"].as_bool() == Some(true) {
        panic!("unexpected base64 response body: {body}")
    } else {
        serde_json::from_str(body).unwrap_or(Value::Null)
    };
    (status, body)
}
