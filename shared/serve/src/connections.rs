//! The accept loop under [`crate::serve`]: what a slow or greedy client meets before a request
//! reaches the router.
//!
//! - **A cap on open connections** ([`ServeConfig::max_connections`]): a connection beyond it is
//!   answered `503 too_many_connections` with `Retry-After` and closed at once, so the server
//!   never holds more sockets than it was sized for.
//! - **A request-head timeout** ([`ServeConfig::header_timeout`], hyper's header read timer): a
//!   client that trickles its request line and headers, or sits idle on a keep-alive
//!   connection, is disconnected.
//! - **An idle timeout** ([`ServeConfig::idle_timeout`]): a connection on which no byte moved in
//!   either direction for that long is closed ([`IdleStream`]) — a stalled body upload, a dead
//!   peer. Live streams stay busy: SSE sends keep-alive comments and WebSockets pings, both
//!   more often than the timeout (the configuration refuses an idle timeout at or below the
//!   keep-alive interval).
//! - **Graceful shutdown**: when told, it stops accepting, asks every connection to finish its
//!   in-flight request and close, and waits for them up to the shutdown grace.
//!
//! Header *size* (431) is checked by a middleware in the router ([`crate::app`]), since hyper's
//! own limit is its read buffer, far above what a gateway needs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::{Metrics, ServeConfig};

/// Accepts connections on `listener` and serves `router` on each until `shutdown` turns true;
/// then drains (see the module comment). Returns once every connection closed or the grace
/// ran out.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    config: &ServeConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let capacity = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let open = Arc::new(Semaphore::new(capacity));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    loop {
        let (stream, _) = tokio::select! {
            () = until_down(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, then go on accepting.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            metrics.connection_refused();
            tokio::spawn(refuse(stream));
            continue;
        };
        let io = TokioIo::new(IdleStream::new(stream, config.idle_timeout));
        let connection = http
            .serve_connection(io, TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let mut down = shutdown.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = until_down(&mut down) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    if tokio::time::timeout(config.shutdown_grace, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = capacity - open.available_permits(),
            grace_secs = config.shutdown_grace.as_secs(),
            "shutdown grace over; leaving connections behind"
        );
    }
}

/// Completes once `shutdown` is true (or its sender is gone).
async fn until_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// Answers a connection over the cap with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": "the server holds as many connections as it is configured for \
                    (WORLDFLEET_SERVE_MAX_CONNECTIONS); retry after a second, or reuse one \
                    connection for many requests",
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// A TCP stream that fails with `TimedOut` once no byte was read or written for `idle`.
pub(crate) struct IdleStream {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleStream {
    fn new(inner: TcpStream, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// A write's outcome: bytes written move the deadline; a pending write fails once idle.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }

    /// `Ready(error)` once the deadline passed (and registers the waker until then).
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle past WORLDFLEET_SERVE_IDLE_TIMEOUT_SECS",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.expired(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
