//! The worker Lambda. Deployed once per task type (`TASK_TYPE` says which; it refuses messages
//! of any other type), once as the consumer of the dead-letter queues (`WORKER_ROLE=dead_letters`)
//! and once as the scheduled sweeper of the enqueue gap (`WORKER_ROLE=sweeper`). Each reads only
//! the variables of its `config::Role`.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::app::{LAMBDA_RECORD_CONCURRENCY, lambda_worker};
use shared::config::{AwsSettings, Role};
use shared::engine::{Engine, SweepLimits, Worker};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(true);
    let role = AwsSettings::worker_role()?;
    let settings = AwsSettings::for_role_from_env(role)?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let (deps, _) = settings.deps(&sdk);
    let worker = match role {
        Role::Worker(task_type) => Arc::new(
            lambda_worker(deps, task_type)
                .with_max_receive_count(AwsSettings::max_receive_count()?),
        ),
        Role::DeadLetters => Arc::new(Worker::dead_letters(
            Arc::new(Engine::new(deps)),
            LAMBDA_RECORD_CONCURRENCY,
        )),
        Role::Sweeper => {
            return lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
                let deps = deps.clone();
                async move { worker::sweep(&deps, SweepLimits::default()).await }
            }))
            .await;
        }
        Role::Api | Role::Local => unreachable!("worker_role returns worker roles only"),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        async move { worker::handle(&worker, event).await }
    }))
    .await
}
