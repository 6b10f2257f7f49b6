//! One shutdown signal for the whole process: SIGTERM (a rollout, a node drain) or SIGINT
//! (Ctrl-C). The controller stops taking reconciles, lets running ones finish within
//! `--shutdown-timeout-seconds` and releases the Lease; the API stops accepting connections and
//! answers the requests in flight.

use tokio::sync::watch;

/// A shutdown request that every part of the process can wait for; cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
    // Keeps the channel open for a handle made by `never`, and lets `trigger` send.
    trigger: std::sync::Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A handle nothing triggers but [`Shutdown::trigger`].
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            requested: rx,
            trigger: std::sync::Arc::new(tx),
        }
    }

    /// A handle triggered by the first SIGTERM or SIGINT the process receives.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = Shutdown::new();
        let handle = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down gracefully");
            handle.trigger();
        });
        Ok(shutdown)
    }

    /// Requests the shutdown.
    pub fn trigger(&self) {
        self.trigger.send_replace(true);
    }

    /// Whether the shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves once the shutdown is requested.
    pub async fn requested(&self) {
        let mut rx = self.requested.clone();
        // The sender lives in `self`: waiting cannot fail.
        let _ = rx.wait_for(|requested| *requested).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
