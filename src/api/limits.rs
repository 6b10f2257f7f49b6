//! Connection limits of the HTTP API: slow and idle clients are closed, and at most
//! `--max-connections` connections are served at once.
//!
//! - A request's headers must arrive within `--header-read-timeout-seconds`, counted from the
//!   connection's accept for the first request, from the request's first byte for later ones.
//! - A request's body must arrive within `--body-read-timeout-seconds` of its headers
//!   (tower-http's request body deadline; the API answers 408 and closes the connection).
//! - A keep-alive connection without a request is closed after `--idle-timeout-seconds`.
//! - Over the cap, connections are not accepted: they wait in the kernel's listen backlog and hold
//!   no memory of the process until a connection closes.
//!
//! hyper's own header timeout starts when the server begins waiting for a request, so it cannot
//! tell an idle keep-alive connection from a slow header; the connection task here watches which
//! phase each connection is in and closes it when that phase's time is up.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::Service;

use crate::runtime::Shutdown;

/// The connection-limit flags of `channel-operator api`.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers: from the accept for the first request
    /// of a connection, from the first byte for later ones. Slower clients are disconnected.
    #[arg(long, env = "API_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub header_read_timeout_seconds: f64,
    /// Seconds a client has to send a request's body, from the end of its headers (else 408 and
    /// the connection is closed).
    #[arg(long, env = "API_BODY_READ_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub body_read_timeout_seconds: f64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "API_IDLE_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub idle_timeout_seconds: f64,
    /// Most connections served at once; further clients wait in the listen backlog until one
    /// closes.
    #[arg(long, env = "API_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
}

/// The limits, checked.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time for a request's headers.
    pub header_read: Duration,
    /// Time for a request's body.
    pub body_read: Duration,
    /// Time a connection may wait for its next request.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl LimitArgs {
    /// The limits, or which flag is out of range.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let seconds = |value: f64, flag: &str| {
            if value.is_finite() && value > 0.0 && value <= 86_400.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(anyhow::anyhow!(
                    "--{flag} must be a positive number of seconds (at most a day)"
                ))
            }
        };
        if self.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        Ok(Limits {
            header_read: seconds(
                self.header_read_timeout_seconds,
                "header-read-timeout-seconds",
            )?,
            body_read: seconds(self.body_read_timeout_seconds, "body-read-timeout-seconds")?,
            idle: seconds(self.idle_timeout_seconds, "idle-timeout-seconds")?,
            max_connections: self.max_connections,
        })
    }
}

/// Whether reading a request body failed because its deadline passed.
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Where a connection is.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    /// Reading a request's headers, since the given instant.
    Head(Instant),
    /// A request is being answered (its body is bounded by the body deadline, its handler by
    /// the sync timeout).
    Busy,
    /// Waiting for the next request, since the given instant.
    Idle(Instant),
}

#[derive(Clone)]
struct Watch(Arc<Mutex<Phase>>);

impl Watch {
    fn set(&self, phase: Phase) {
        *self.0.lock().expect("phase lock") = phase;
    }

    /// Bytes arrived: an idle connection starts a request.
    fn bytes_read(&self) {
        let mut phase = self.0.lock().expect("phase lock");
        if matches!(*phase, Phase::Idle(_)) {
            *phase = Phase::Head(Instant::now());
        }
    }

    /// When the current phase runs out, `None` while a request is being answered.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.0.lock().expect("phase lock") {
            Phase::Head(since) => Some(since + limits.header_read),
            Phase::Idle(since) => Some(since + limits.idle),
            Phase::Busy => None,
        }
    }
}

/// The connection's socket, telling its [`Watch`] when bytes arrive.
struct Watched<T> {
    io: T,
    watch: Watch,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown`; then accepts no more connections,
/// lets the requests in flight finish and returns once every connection has closed.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: Shutdown) {
    let app = app.layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
        limits.body_read,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a receiver; the server waits until all are dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.requested() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.requested() => break,
        };
        let open = open_rx.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, limits, shutdown).await;
            tracing::trace!(%peer, "connection closed");
            drop((permit, open));
        });
    }
    tracing::info!("draining the channels API: answering the requests in flight");
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    shutdown: Shutdown,
) {
    let watch = Watch(Arc::new(Mutex::new(Phase::Head(Instant::now()))));
    let io = TokioIo::new(Watched {
        io: stream,
        watch: watch.clone(),
    });
    let phases = watch.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let phases = phases.clone();
        phases.set(Phase::Busy);
        async move {
            let response = app.call(req).await;
            phases.set(Phase::Idle(Instant::now()));
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        // While a request is answered, look again after the shortest timeout.
        let wake = watch
            .deadline(&limits)
            .unwrap_or_else(|| Instant::now() + limits.header_read.min(limits.idle));
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "a connection ended with an error");
                }
                return;
            }
            () = shutdown.requested(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {
                if watch.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection that was idle or sent its request too slowly");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn flags_are_checked() {
        let limits = Cli::parse_from(["x"]).limits.limits().unwrap();
        assert_eq!(limits.header_read, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 512);
        for bad in [
            "--max-connections=0",
            "--idle-timeout-seconds=0",
            "--header-read-timeout-seconds=-1",
            "--body-read-timeout-seconds=NaN",
        ] {
            assert!(
                Cli::parse_from(["x", bad]).limits.limits().is_err(),
                "{bad}"
            );
        }
    }
}
