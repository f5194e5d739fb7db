//! The API Lambda: API Gateway events (HTTP API v2 or REST v1) into the shared GraphQL router,
//! on DynamoDB and SQS. Configuration (`Role::Api`): `CONTENT_TABLE`, `TASKS_TABLE` and
//! `QUEUE_URL_<TYPE>` for the task types mutations create.

use aws_config::BehaviorVersion;
use shared::app::api_router;
use shared::config::AwsSettings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(true);
    let settings = AwsSettings::for_api()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let (deps, _) = settings.deps(&sdk);
    lambda_http::run(api_router(deps)).await
}
