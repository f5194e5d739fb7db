//! `skylark-local`: the whole system in one process — the GraphQL API on HTTP and one worker
//! loop per task type, on the in-memory adapters. Stops cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use shared::app::Stack;
use shared::http::router;
use tokio::sync::watch;
use tracing::info;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Config {
    /// Address to serve the API on.
    #[arg(long, env = "SKYLARK_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Poll loops per task type (each takes batches of up to 10 messages).
    #[arg(long, env = "SKYLARK_POLLERS_PER_TYPE", default_value_t = 2)]
    pollers_per_type: usize,
    /// Records of one batch handled at once.
    #[arg(long, env = "SKYLARK_WORKER_CONCURRENCY", default_value_t = 10)]
    worker_concurrency: usize,
    /// How long a failed record waits before it is delivered again, in milliseconds.
    #[arg(long, env = "SKYLARK_RETRY_DELAY_MS", default_value_t = 1000)]
    retry_delay_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SKYLARK_LOG_JSON", default_value_t = false)]
    log_json: bool,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(config.log_json);

    let embedded = Stack::embedded_default();
    let (stop, stopped) = watch::channel(false);
    let mut workers = embedded.stack.spawn_workers(
        config.pollers_per_type,
        config.worker_concurrency,
        Duration::from_millis(config.retry_delay_ms),
        &stopped,
    );
    let ttl = embedded.spawn_ttl_sweeper(stopped.clone());

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    info!(
        "Skylark Tasks (embedded) on http://{}/graphql — GraphiQL at http://{}/",
        listener.local_addr()?,
        listener.local_addr()?
    );
    axum::serve(listener, router(embedded.stack.schema.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    info!("stopping: finishing the batches in hand");
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    let _ = ttl.await;
    info!("stopped");
    Ok(())
}
