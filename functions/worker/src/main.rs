//! The worker Lambda, deployed once per task type: `TASK_TYPE` says which; it refuses messages
//! of any other type. Configuration as the API's, plus `TASK_TYPE`.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::app::lambda_worker;
use shared::config::AwsSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(true);
    let task_type = AwsSettings::task_type_from_env()?;
    let settings = AwsSettings::from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let (deps, _) = settings.deps(&sdk);
    let worker = Arc::new(lambda_worker(deps, task_type));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        async move { worker::handle(&worker, event).await }
    }))
    .await
}
