//! The API Lambda: API Gateway events (HTTP API v2 or REST v1) into the shared GraphQL router,
//! on DynamoDB and SQS, through [`api::handle`]. Configuration (`Role::Api`): `CONTENT_TABLE`, `TASKS_TABLE`,
//! `QUEUE_URL_<TYPE>` for the task types mutations create, `API_TOKEN_SECRET_ARN` (the secret
//! holding the token every request must present), `CORS_ALLOWED_ORIGINS` and
//! `GRAPHQL_INTROSPECTION`.

use aws_config::BehaviorVersion;
use shared::app::lambda_api;
use shared::config::{ApiEnv, AwsSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(true);
    let settings = AwsSettings::for_api()?;
    let api = ApiEnv::from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let (deps, _) = settings.deps(&sdk);
    let router = lambda_api(deps, &api, aws_sdk_secretsmanager::Client::new(&sdk)).await?;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event| {
        api::handle(router.clone(), event)
    }))
    .await
}
