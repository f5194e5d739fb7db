//! The worker Lambda, deployed once per task type: `TASK_TYPE` says which; it refuses messages
//! of any other type. Configuration (`Role::Worker`): `CONTENT_TABLE`, `TASKS_TABLE`, `TASK_TYPE`
//! and `QUEUE_URL_<TYPE>` for its child task types only.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::app::lambda_worker;
use shared::config::AwsSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(true);
    let (task_type, settings) = AwsSettings::for_worker()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let (deps, _) = settings.deps(&sdk);
    let worker = Arc::new(lambda_worker(deps, task_type));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        async move { worker::handle(&worker, event).await }
    }))
    .await
}
