//! Connection limits of the HTTP API: slow and idle clients are closed, at most
//! `--max-connections` connections are served at once and at most `--max-connections-per-peer`
//! from one address, and idle or slow clients are shed before a working one waits
//! ([`super::connections`]).
//!
//! - A request's headers must arrive within `--header-read-timeout-seconds`, counted from the
//!   connection's accept for the first request, from the request's first byte for later ones.
//! - A request's body must arrive within `--body-read-timeout-seconds` of its headers
//!   (tower-http's request body deadline; the API answers 408 and closes the connection).
//! - A keep-alive connection without a request is closed after `--idle-timeout-seconds`.
//! - At the cap, the connection idle longest is closed for a new client, else a request that
//!   has been arriving for `--slow-request-seconds`; with none (every connection is being
//!   answered), new clients wait in the kernel's listen backlog and hold no memory of the
//!   process until a connection closes. A peer at its own cap gets the same treatment among its
//!   own connections, or its new connection is closed at once.
//!
//! hyper's own header timeout starts when the server begins waiting for a request, so it cannot
//! tell an idle keep-alive connection from a slow header; the connection task here watches which
//! phase each connection is in and closes it when that phase's time is up.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service;

use super::connections::{Caps, Connections, Phase, Shed, Ticket, Watch};
use super::metrics::Metrics;
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
    /// Most connections served at once. At the cap, the connection idle longest (or a request
    /// arriving for --slow-request-seconds) is closed for a new client; when every connection
    /// is being answered, new clients wait in the listen backlog until one closes.
    #[arg(long, env = "API_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Most connections from one IP address. At its cap, the peer's connection idle longest (or
    /// its slow request) is closed for its new one; with none, the new one is closed at once.
    /// Behind a proxy every client shares the proxy's address: raise it there.
    #[arg(long, env = "API_MAX_CONNECTIONS_PER_PEER", default_value_t = 128)]
    pub max_connections_per_peer: usize,
    /// Seconds after which a request whose headers or body are still arriving counts as slow:
    /// it is closed when a new client needs its slot (the timeouts above apply otherwise).
    #[arg(long, env = "API_SLOW_REQUEST_SECONDS", default_value_t = 1.0)]
    pub slow_request_seconds: f64,
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
    /// Connections from one IP address.
    pub max_connections_per_peer: usize,
    /// When a request still arriving counts as slow.
    pub slow_request: Duration,
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
        if self.max_connections_per_peer == 0 {
            anyhow::bail!("--max-connections-per-peer must be at least 1");
        }
        Ok(Limits {
            header_read: seconds(
                self.header_read_timeout_seconds,
                "header-read-timeout-seconds",
            )?,
            body_read: seconds(self.body_read_timeout_seconds, "body-read-timeout-seconds")?,
            idle: seconds(self.idle_timeout_seconds, "idle-timeout-seconds")?,
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            slow_request: seconds(self.slow_request_seconds, "slow-request-seconds")?,
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

/// A request's body, telling its [`Watch`] when it has arrived in full.
struct WatchedBody {
    body: Incoming,
    watch: Watch,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.watch.body_read();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When the phase of a connection runs out, and what closing it then counts as; `None` while a
/// request is answered or its body arrives (the body deadline bounds that).
fn deadline(phase: Phase, limits: &Limits) -> Option<(Instant, Shed)> {
    match phase {
        Phase::Head(since) => Some((since + limits.header_read, Shed::HeaderTimeout)),
        Phase::Idle(since) => Some((since + limits.idle, Shed::IdleTimeout)),
        Phase::Body(_) | Phase::Busy => None,
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown`; then accepts no more connections,
/// lets the requests in flight finish and returns once every connection has closed. `metrics`
/// count the connections closed by the limits.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: Shutdown,
    metrics: Metrics,
) {
    let app = app.layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
        limits.body_read,
    ));
    let connections = Connections::new(
        Caps {
            total: limits.max_connections,
            per_peer: limits.max_connections_per_peer,
            slow: limits.slow_request,
        },
        metrics,
    );
    // Every connection task holds a receiver; the server waits until all are dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        tokio::select! {
            () = connections.room() => {}
            () = shutdown.requested() => break,
        }
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
        // Over its peer's share with nothing of the peer's to close: the stream is dropped.
        let Some(ticket) = connections.admit(peer.ip()) else {
            continue;
        };
        let open = open_rx.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, limits, shutdown, ticket, &connections).await;
            tracing::trace!(%peer, "connection closed");
            drop(open);
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
    ticket: Ticket,
    connections: &Connections,
) {
    let Ticket {
        watch,
        mut closed,
        entry,
    } = ticket;
    let io = TokioIo::new(Watched {
        io: stream,
        watch: watch.clone(),
    });
    let phases = watch.clone();
    let idle = connections.clone();
    let counted = connections.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut app = app.clone();
        let phases = phases.clone();
        let idle = idle.clone();
        let counted = counted.clone();
        let req = req.map(|body| {
            phases.set(if body.is_end_stream() {
                Phase::Busy
            } else {
                Phase::Body(Instant::now())
            });
            WatchedBody {
                body,
                watch: phases.clone(),
            }
        });
        async move {
            let response = app.call(req).await;
            if response
                .as_ref()
                .is_ok_and(|r| r.status() == http::StatusCode::REQUEST_TIMEOUT)
            {
                counted.closed(Shed::BodyTimeout);
            }
            phases.set(Phase::Idle(Instant::now()));
            idle.went_idle();
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        // While a request is answered, look again after the shortest timeout.
        let wake = deadline(watch.get(), &limits).map_or_else(
            || Instant::now() + limits.header_read.min(limits.idle),
            |(at, _)| at,
        );
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "a connection ended with an error");
                }
                break;
            }
            () = shutdown.requested(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            // Shed to make room for a new client (already counted).
            _ = &mut closed => break,
            () = tokio::time::sleep_until(wake) => {
                if let Some((_, why)) = deadline(watch.get(), &limits).filter(|(at, _)| *at <= Instant::now()) {
                    tracing::debug!(reason = why.as_str(), "closing a connection that was idle or sent its request too slowly");
                    connections.closed(why);
                    break;
                }
            }
        }
    }
    drop(entry);
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
        assert_eq!(limits.max_connections_per_peer, 128);
        assert_eq!(limits.slow_request, Duration::from_secs(1));
        for bad in [
            "--max-connections=0",
            "--idle-timeout-seconds=0",
            "--header-read-timeout-seconds=-1",
            "--body-read-timeout-seconds=NaN",
            "--max-connections-per-peer=0",
            "--slow-request-seconds=0",
        ] {
            assert!(
                Cli::parse_from(["x", bad]).limits.limits().is_err(),
                "{bad}"
            );
        }
    }
}
