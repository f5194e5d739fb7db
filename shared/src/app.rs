//! Composition helpers: the embedded stack (in-memory adapters, in-process workers).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::adapters::{MemoryQueue, MemoryStore, SecretToken};
use crate::config::ApiEnv;
use crate::domain::TaskType;
use crate::engine::{DEFAULT_LEASE, Deps, Engine, Poller, SweepLimits, Worker, resend_stale};
use crate::http::{ApiSettings, Auth, TokenError};
use crate::ports::{Clock, QueueConsumer, SystemClock};

/// Receives of one message before its task's last attempt (the template's default redrive
/// limit), for the local pollers.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// How often the local binary sweeps for tasks that lost their message.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Everything one process needs to serve the API and run the workers.
pub struct Stack {
    pub deps: Deps,
    pub consumer: Arc<dyn QueueConsumer>,
    pub engine: Arc<Engine>,
}

/// The embedded store and queue, kept typed so callers can use their extras.
pub struct Embedded {
    pub store: Arc<MemoryStore>,
    pub queue: Arc<MemoryQueue>,
    pub stack: Stack,
}

impl Stack {
    pub fn new(deps: Deps, consumer: Arc<dyn QueueConsumer>) -> Self {
        let engine = Arc::new(Engine::new(deps.clone()));
        Stack {
            deps,
            consumer,
            engine,
        }
    }

    /// The API on this stack's adapters.
    pub fn router(&self, settings: &ApiSettings) -> axum::Router {
        crate::http::router(self.deps.clone(), settings)
    }

    /// The in-memory stack: the embedded default and the fast test bed.
    pub fn embedded(clock: Arc<dyn Clock>, visibility_timeout: Duration) -> Embedded {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new(visibility_timeout));
        let deps = Deps {
            content: store.clone(),
            tasks: store.clone(),
            queue: queue.clone(),
            clock,
        };
        let stack = Stack::new(deps, queue.clone());
        Embedded {
            store,
            queue,
            stack,
        }
    }

    pub fn embedded_default() -> Embedded {
        Self::embedded(Arc::new(SystemClock), Duration::from_secs(30))
    }

    pub fn poller(&self, task_type: TaskType, concurrency: usize, retry_delay: Duration) -> Poller {
        let worker = Worker::new(self.engine.clone(), Some(task_type), concurrency)
            .with_max_receive_count(MAX_RECEIVE_COUNT)
            .with_record_timeout(DEFAULT_LEASE);
        Poller {
            consumer: self.consumer.clone(),
            worker: Arc::new(worker),
            task_type,
            batch_size: 10,
            retry_delay,
        }
    }

    /// Starts `pollers_per_type` poll loops for every task type, and the sweeper of the enqueue
    /// gap (once a minute); they stop when `shutdown` is true.
    pub fn spawn_workers(
        &self,
        pollers_per_type: usize,
        record_concurrency: usize,
        retry_delay: Duration,
        shutdown: &watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for task_type in TaskType::ALL {
            for _ in 0..pollers_per_type.max(1) {
                let poller = self.poller(*task_type, record_concurrency, retry_delay);
                set.spawn(poller.run(shutdown.clone()));
            }
        }
        let deps = self.deps.clone();
        let mut stop = shutdown.clone();
        set.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = resend_stale(&deps, SweepLimits::default()).await {
                            tracing::warn!(error = %e, "sweep failed; trying again at the next tick");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        set
    }
}

impl Embedded {
    /// Does what DynamoDB's TTL process does for the tables: removes expired tasks, once a minute,
    /// so a long-running local process does not grow without bound. Reads never depend on it.
    pub fn spawn_ttl_sweeper(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let clock = self.stack.deps.clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        store.purge_expired_tasks(clock.now());
                    }
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

/// The API Lambda's router, as its `main` assembles it: the token from the Secrets Manager secret
/// `env` names (read now; an error means the function must not start), CORS and introspection
/// from `env`.
pub async fn lambda_api(
    deps: Deps,
    env: &ApiEnv,
    secrets: aws_sdk_secretsmanager::Client,
) -> Result<axum::Router, TokenError> {
    let token = SecretToken::load(secrets, env.token_secret.clone()).await?;
    let settings = ApiSettings {
        auth: Auth::Token(Arc::new(token)),
        cors: env.cors.clone(),
        introspection: env.introspection,
    };
    Ok(crate::http::router(deps, &settings))
}

/// Records of one SQS batch a worker Lambda handles at once.
pub const LAMBDA_RECORD_CONCURRENCY: usize = 10;

/// The worker Lambda's handler for one task type, on `deps`.
pub fn lambda_worker(deps: Deps, task_type: TaskType) -> Worker {
    Worker::new(
        Arc::new(Engine::new(deps)),
        Some(task_type),
        LAMBDA_RECORD_CONCURRENCY,
    )
}
