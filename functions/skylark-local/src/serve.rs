//! The HTTP server of the local binary: `axum::serve`'s loop, with time limits.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fires: a client that
//! opens a connection and never finishes its headers, or never sends the body it announced,
//! holds that connection (and, by the hundred, the process's file descriptors) forever. Behind
//! API Gateway the deployed API never sees such a client; the local binary, once it listens
//! beyond loopback with a token, does. Here every request has `limit` to arrive, headers and
//! body, and to be answered, as API Gateway gives an integration 30 seconds; and a client that
//! stops reading its answer is let go once a write has waited `limit` ([`StalledWrites`]), so
//! two hundred of them cannot hold a gigabyte of answers.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Sleep;
use tracing::{debug, warn};

/// How long connections in flight may take to finish once the server is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Each connection's kernel send buffer (Linux doubles it). Left to autotuning it grows to
/// about 4 MB, and Linux wakes a writer only once a third of it has drained: a client reading a
/// large answer at 64 KB/s showed no progress for 20 s and more, and [`StalledWrites`] took it
/// for one that had stopped. 256 KiB is a wake-up every 2.7 s at 64 KB/s, and on loopback or a
/// LAN still hundreds of MB/s.
const SEND_BUFFER_BYTES: u32 = 256 * 1024;

/// A listener on `addr` whose connections have [`SEND_BUFFER_BYTES`] (accepted sockets inherit
/// it), with `SO_REUSEADDR` as `TcpListener::bind` sets it.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

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
                TokioIo::new(StalledWrites::new(stream, limit)),
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

/// A connection whose writes give up once they have waited `limit` without progress: hyper has
/// no write timeout, and an answer the client never reads stays in memory as long as the
/// connection does. Reads pass through (hyper and [`answer_within`] time them).
struct StalledWrites<T> {
    inner: T,
    limit: Duration,
    /// Armed when a write first finds the socket full; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StalledWrites<T> {
    fn new(inner: T, limit: Duration) -> Self {
        StalledWrites {
            inner,
            limit,
            stalled: None,
        }
    }

    fn progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", limit.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StalledWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StalledWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, poll)
    }
}
