//! The HTTP server of the local binary: `axum::serve`'s loop, with time limits.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fires: a client that
//! opens a connection and never finishes its headers, or never sends the body it announced,
//! holds that connection (and, by the hundred, the process's file descriptors) forever. Behind
//! API Gateway the deployed API never sees such a client; the local binary, once it listens
//! beyond loopback with a token, does. Here every request has `limit` to arrive, headers and
//! body, and to be answered, as API Gateway gives an integration 30 seconds.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use shared::graphql::ErrorType;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// How long connections in flight may take to finish once the server is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then lets the connections in
/// flight finish (for at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limit: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn(move |request, next| {
        answer_within(limit, request, next)
    }));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limit)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
}

/// The request read and answered within `limit`, or a JSON 408.
async fn answer_within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let message = format!(
                "the request was not received and answered within {} ms",
                limit.as_millis()
            );
            let mut response = (
                StatusCode::REQUEST_TIMEOUT,
                ErrorType::ValidationError.body(&message).to_string(),
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // The rest of a body that did not arrive is not waited for.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
