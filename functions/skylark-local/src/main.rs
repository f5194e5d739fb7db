//! `skylark-local`: the whole system in one process — the GraphQL API on HTTP and worker loops
//! for every task type. Embedded (default): in-memory adapters. `--emulator`: the DynamoDB and
//! SQS adapters against `AWS_ENDPOINT_URL`, polling the queues as Lambda's event source mapping
//! would. Stops cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use aws_config::BehaviorVersion;
use clap::Parser;
use shared::adapters::TableNames;
use shared::adapters::provision::{create_queues, create_tables};
use shared::app::Stack;
use shared::config::AwsSettings;
use shared::http::{ApiSettings, ApiToken, Auth, CorsOrigins};
use tokio::sync::watch;
use tracing::{info, warn};

mod serve;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Config {
    /// Address to serve the API on.
    #[arg(long, env = "SKYLARK_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Poll loops per task type (each takes batches of up to 10 messages).
    #[arg(long, env = "SKYLARK_POLLERS_PER_TYPE", default_value_t = 2, value_parser = at_least_one)]
    pollers_per_type: usize,
    /// Records of one batch handled at once.
    #[arg(long, env = "SKYLARK_WORKER_CONCURRENCY", default_value_t = 10, value_parser = at_least_one)]
    worker_concurrency: usize,
    /// How long a failed record waits before it is delivered again, in milliseconds.
    #[arg(long, env = "SKYLARK_RETRY_DELAY_MS", default_value_t = 1000)]
    retry_delay_ms: u64,
    /// Use DynamoDB and SQS at `AWS_ENDPOINT_URL` (moto, LocalStack) instead of memory.
    #[arg(long, env = "SKYLARK_EMULATOR", default_value_t = false)]
    emulator: bool,
    /// With --emulator: create the tables and queues (named from --resource-prefix) as
    /// infra/template.yaml declares them, instead of reading CONTENT_TABLE, TASKS_TABLE and
    /// QUEUE_URL_<TYPE> (every type) from the environment.
    #[arg(long, env = "SKYLARK_CREATE_RESOURCES", default_value_t = false)]
    create_resources: bool,
    /// Name prefix of the tables and queues --create-resources makes.
    #[arg(long, env = "SKYLARK_RESOURCE_PREFIX", default_value = "skylark-local")]
    resource_prefix: String,
    /// The token every GraphQL request must present (`Authorization: Bearer <token>` or
    /// `x-api-key`). Unset: no authentication, and only a loopback --listen address is allowed.
    #[arg(long, env = "SKYLARK_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Web origins browsers may call the API from, comma-separated (`https://cms.example.com`),
    /// or `*`. Empty: none (no CORS headers).
    #[arg(long, env = "SKYLARK_CORS_ORIGINS", default_value = "")]
    cors_origins: String,
    /// Answer introspection queries (`__schema`, `__type`); GraphiQL needs them.
    #[arg(long, env = "SKYLARK_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    introspection: bool,
    /// How long a request may take to arrive (headers and body) and be answered, in
    /// milliseconds; past it the connection is closed, or the answer is a 408.
    #[arg(long, env = "SKYLARK_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SKYLARK_LOG_JSON", default_value_t = false)]
    log_json: bool,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The DynamoDB and SQS adapters on the endpoint of `AWS_ENDPOINT_URL`.
async fn emulator_stack(config: &Config) -> anyhow::Result<Stack> {
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let settings = if config.create_resources {
        let tables = TableNames {
            content: format!("{}-content", config.resource_prefix),
            tasks: format!("{}-tasks", config.resource_prefix),
        };
        create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &tables)
            .await
            .map_err(|e| anyhow::anyhow!("creating tables: {e}"))?;
        let queue_urls = create_queues(&aws_sdk_sqs::Client::new(&sdk), &config.resource_prefix)
            .await
            .map_err(|e| anyhow::anyhow!("creating queues: {e}"))?;
        info!(prefix = %config.resource_prefix, "tables and queues ready");
        AwsSettings { tables, queue_urls }
    } else {
        AwsSettings::for_local()?
    };
    let (deps, queue) = settings.deps(&sdk);
    Ok(Stack::new(deps, queue))
}

/// Who may call: with a token, whoever presents it; without one, anyone who can reach the port,
/// so only loopback is allowed, and it is said loudly.
fn api_settings(config: &Config) -> anyhow::Result<ApiSettings> {
    let cors = CorsOrigins::parse(&config.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origins / SKYLARK_CORS_ORIGINS: {e}"))?;
    let auth = match config.api_token.as_deref() {
        Some(token) => Auth::token(
            ApiToken::new(token)
                .map_err(|e| anyhow::anyhow!("--api-token / SKYLARK_API_TOKEN: {e}"))?,
        ),
        None if config.listen.ip().is_loopback() => {
            warn!("==================================================================");
            warn!("AUTHENTICATION IS OFF: SKYLARK_API_TOKEN is not set, so any program");
            warn!("on this machine can read and change everything through the API.");
            warn!("Set SKYLARK_API_TOKEN to require `Authorization: Bearer <token>`.");
            warn!("==================================================================");
            Auth::Off
        }
        None => anyhow::bail!(
            "refusing to listen on {} without a token: set SKYLARK_API_TOKEN (or --api-token), \
             or listen on a loopback address such as 127.0.0.1:4000",
            config.listen
        ),
    };
    Ok(ApiSettings {
        auth,
        cors,
        introspection: config.introspection,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(config.log_json);
    let api = api_settings(&config)?;

    let (stop, stopped) = watch::channel(false);
    let (stack, ttl) = if config.emulator {
        (emulator_stack(&config).await?, None)
    } else {
        let embedded = Stack::embedded_default();
        let ttl = embedded.spawn_ttl_sweeper(stopped.clone());
        (embedded.stack, Some(ttl))
    };
    let mut workers = stack.spawn_workers(
        config.pollers_per_type,
        config.worker_concurrency,
        Duration::from_millis(config.retry_delay_ms),
        &stopped,
    );

    let listener = serve::listen(config.listen)?;
    info!(
        "Skylark Tasks ({}) on http://{}/graphql — GraphiQL at http://{}/",
        if config.emulator {
            "emulator"
        } else {
            "embedded"
        },
        listener.local_addr()?,
        listener.local_addr()?
    );
    serve::serve(
        listener,
        stack.router(&api),
        Duration::from_millis(config.request_timeout_ms),
        shutdown_signal(),
    )
    .await;

    info!("stopping: finishing the batches in hand");
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    if let Some(ttl) = ttl {
        let _ = ttl.await;
    }
    info!("stopped");
    Ok(())
}
