//! Prometheus metrics of the controller, in the text exposition format on `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `channel_operator_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The Ready reason the error maps to (ProviderError, InvalidCredentials, ...) or KubeError.
    pub reason: String,
}

/// Labels of `channel_operator_channels`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// The source string.
    pub source: String,
    /// connected, disconnected or error.
    pub state: String,
}

/// A point-in-time count of channels, recomputed from the controller's cache on every scrape.
pub type ChannelCounter = dyn Fn() -> Vec<(ChannelLabels, i64)> + Send + Sync;

/// The controller's metrics and health state.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Failed reconciles by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Histogram,
    channels: Family<ChannelLabels, Gauge>,
    channel_counter: Mutex<Option<Arc<ChannelCounter>>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("channel_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let channels = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Channel reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Channel reconciles that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one Channel reconcile",
            duration.clone(),
        );
        registry.register(
            "channels",
            "Channels by source and state (connected, disconnected, error)",
            channels.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            channels,
            channel_counter: Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets (or clears) the function that counts channels at scrape time.
    pub fn set_channel_counter(&self, counter: Option<Arc<ChannelCounter>>) {
        *self.channel_counter.lock().expect("not poisoned") = counter;
    }

    /// Marks the process ready (watches synced, or standing by as a non-leader) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let counter = self.channel_counter.lock().expect("not poisoned").clone();
        self.channels.clear();
        if let Some(counter) = counter {
            for (labels, n) in counter() {
                self.channels.get_or_create(&labels).set(n);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until dropped.
pub async fn serve(metrics: Arc<Metrics>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let m1 = metrics.clone();
    let m2 = metrics;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = m2.clone();
                async move {
                    if m.is_ready() {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                    }
                }
            }),
        );
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_metric_with_channel_counts() {
        let m = Metrics::new();
        m.reconciles.inc();
        m.error("ProviderError");
        m.duration.observe(0.02);
        m.set_channel_counter(Some(Arc::new(|| {
            vec![(
                ChannelLabels {
                    source: "facebook".into(),
                    state: "connected".into(),
                },
                3,
            )]
        })));
        let text = m.encode();
        assert!(
            text.contains("channel_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("channel_operator_reconcile_errors_total{reason=\"ProviderError\"} 1"),
            "{text}"
        );
        assert!(text.contains("channel_operator_reconcile_duration_seconds_bucket"));
        assert!(
            text.contains("channel_operator_channels{source=\"facebook\",state=\"connected\"} 3"),
            "{text}"
        );
    }
}
