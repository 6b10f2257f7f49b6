//! Serving connections: the accept loop, stopping, and apiserver restarts that really cut TCP
//! connections and refuse new ones.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::server::{self, Shared};

/// The accept loop of the current listener and the switches of its connections.
#[derive(Default)]
pub struct Serving {
    /// Stops accepting (the listener is closed) and closes connections once idle.
    stop: CancellationToken,
    /// Drops every connection at once.
    cut: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts serving on `listener`.
pub fn serve(sh: &Arc<Shared>, listener: TcpListener) {
    let serving = Serving {
        stop: CancellationToken::new(),
        cut: CancellationToken::new(),
        task: None,
    };
    let (stop, cut) = (serving.stop.clone(), serving.cut.clone());
    let mut slot = sh.serving.lock().unwrap_or_else(|e| e.into_inner());
    *slot = serving;
    slot.task = Some(tokio::spawn(accept_loop(sh.clone(), listener, stop, cut)));
}

async fn accept_loop(
    sh: Arc<Shared>,
    listener: TcpListener,
    stop: CancellationToken,
    cut: CancellationToken,
) {
    let app = axum::Router::new().fallback(server::handle).with_state(sh);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // out of file descriptors and the like: wait instead of spinning
                    tracing::warn!("sandbox accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let (stop, cut) = (stop.clone(), cut.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = cut.cancelled() => return,
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cut.cancelled() => {}
            }
        });
    }
}

/// Stops accepting and closes connections once their requests are answered (open watches
/// must be ended separately); returns the accept loop to wait for.
pub fn stop(sh: &Shared) -> Option<tokio::task::JoinHandle<()>> {
    let mut serving = sh.serving.lock().unwrap_or_else(|e| e.into_inner());
    serving.stop.cancel();
    serving.task.take()
}

/// Cuts every connection, refuses connections for `down`, compacts the watch history and
/// serves again on the same address.
pub async fn restart(sh: &Arc<Shared>, down: Duration) {
    let task = {
        let mut serving = sh.serving.lock().unwrap_or_else(|e| e.into_inner());
        serving.cut.cancel();
        serving.stop.cancel();
        serving.task.take()
    };
    if let Some(task) = task {
        // the listener is closed when the accept loop returns
        let _ = task.await;
    }
    {
        let mut st = sh.lock();
        st.watch_cancel.cancel();
        st.watch_cancel = CancellationToken::new();
        // A real cluster moves on while its apiserver restarts (lease renewals, Events from
        // other components), so no client's resourceVersion is current any more.
        st.rv += 1;
        st.compact();
    }
    tokio::time::sleep(down).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match TcpListener::bind(sh.addr).await {
            Ok(l) => break l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("re-binding {}: {e}", sh.addr);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the sandbox cannot bind {} again: {e}", sh.addr),
        }
    };
    serve(sh, listener);
}
