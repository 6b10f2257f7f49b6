//! Prometheus metrics of the controller, in the text exposition format on `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::credentials_health::Attention;
use crate::runtime::WatchHealth;

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

/// Labels of the watch metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The watched resource (plural: channels, secrets).
    pub resource: String,
}

/// Labels of `channel_operator_credentials_unhealthy`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialsLabels {
    /// Channel, ProviderConfig or ClusterProviderConfig.
    pub kind: String,
    /// The resource's namespace (not `namespace`, which Prometheus gives the scraped pod's).
    pub object_namespace: String,
    /// The resource's name.
    pub object_name: String,
    /// The Channel's source, or the configuration's account (facebook, twilio).
    pub source: String,
    /// The CredentialsHealthy reason.
    pub reason: String,
}

/// Labels of `channel_operator_credentials_expiry_timestamp_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    /// Channel, ProviderConfig or ClusterProviderConfig.
    pub kind: String,
    /// The resource's namespace.
    pub object_namespace: String,
    /// The resource's name.
    pub object_name: String,
    /// The Channel's source, or the configuration's account.
    pub source: String,
}

/// The Channels whose credentials need attention, read from the controller's cache on every
/// scrape.
pub type CredentialsCollector = dyn Fn() -> Vec<Attention> + Send + Sync;

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
    credentials_unhealthy: Family<CredentialsLabels, Gauge>,
    credentials_expiry: Family<ExpiryLabels, Gauge>,
    channel_credentials: Mutex<Option<Arc<CredentialsCollector>>>,
    config_credentials: Mutex<Vec<Attention>>,
    ready: AtomicBool,
    watch_restarts: Family<WatchLabels, Counter>,
    watch_healthy: Family<WatchLabels, Gauge>,
    /// Since when the Channel watch has been failing (None: healthy, or not watching).
    channel_watch_failing: Mutex<Option<Instant>>,
    watch_unhealthy_limit: Duration,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The resource whose watch health decides readiness.
pub const CHANNELS: &str = "channels";

impl Metrics {
    /// Registers every metric; `/readyz` ignores the Channel watch's health.
    pub fn new() -> Self {
        Self::with_watch_unhealthy_limit(Duration::MAX)
    }

    /// Registers every metric; `/readyz` fails once the Channel watch has been failing for `limit`.
    pub fn with_watch_unhealthy_limit(limit: Duration) -> Self {
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
        let credentials_unhealthy = Family::<CredentialsLabels, Gauge>::default();
        let credentials_expiry = Family::<ExpiryLabels, Gauge>::default();
        registry.register(
            "credentials_unhealthy",
            "1 for each Channel or provider configuration whose credentials are not healthy (CredentialsHealthy=False), by reason; healthy ones have no series",
            credentials_unhealthy.clone(),
        );
        registry.register(
            "credentials_expiry_timestamp_seconds",
            "When the credentials of a Channel that is not healthy expire (the token or its data access, whichever first), in seconds since the epoch",
            credentials_expiry.clone(),
        );
        let watch_restarts = Family::<WatchLabels, Counter>::default();
        let watch_healthy = Family::<WatchLabels, Gauge>::default();
        registry.register(
            "watch_restarts",
            "Watch errors and re-lists, per watched resource",
            watch_restarts.clone(),
        );
        registry.register(
            "watch_healthy",
            "1 while the watch of the resource is established, 0 while it is failing",
            watch_healthy.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            channels,
            channel_counter: Mutex::new(None),
            credentials_unhealthy,
            credentials_expiry,
            channel_credentials: Mutex::new(None),
            config_credentials: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            watch_restarts,
            watch_healthy,
            channel_watch_failing: Mutex::new(None),
            watch_unhealthy_limit: limit,
        }
    }

    /// Counts a watch error or re-list and marks the watch failing until [`Self::watch_ok`].
    pub fn watch_failed(&self, resource: &str) {
        let labels = WatchLabels {
            resource: resource.to_owned(),
        };
        self.watch_restarts.get_or_create(&labels).inc();
        self.watch_healthy.get_or_create(&labels).set(0);
        if resource == CHANNELS {
            self.channel_watch_failing
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(Instant::now);
        }
    }

    /// Marks the watch of `resource` established (its list is complete, events flow).
    pub fn watch_ok(&self, resource: &str) {
        let labels = WatchLabels {
            resource: resource.to_owned(),
        };
        self.watch_healthy.get_or_create(&labels).set(1);
        // The restart counter exists from the start (at 0), so alerts on its increase see it.
        let _ = self.watch_restarts.get_or_create(&labels);
        if resource == CHANNELS {
            *self.channel_watch_failing.lock().expect("not poisoned") = None;
        }
    }

    /// Forgets the watch health (the watches stopped: standing by, or shutting down).
    pub fn watches_stopped(&self) {
        self.watch_healthy.clear();
        *self.channel_watch_failing.lock().expect("not poisoned") = None;
    }

    /// Whether the Channel watch has been failing for longer than the limit.
    fn channel_watch_down_too_long(&self) -> bool {
        self.channel_watch_failing
            .lock()
            .expect("not poisoned")
            .is_some_and(|since| since.elapsed() >= self.watch_unhealthy_limit)
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

    /// Sets (or clears) the function that lists the Channels needing attention at scrape time.
    pub fn set_channel_credentials(&self, collector: Option<Arc<CredentialsCollector>>) {
        *self.channel_credentials.lock().expect("not poisoned") = collector;
    }

    /// Replaces the provider configurations whose accounts need attention (the last checks').
    pub fn set_config_credentials(&self, attention: Vec<Attention>) {
        *self.config_credentials.lock().expect("not poisoned") = attention;
    }

    /// Fills the credentials families from the Channels and configurations needing attention.
    fn encode_credentials(&self) {
        let collector = self
            .channel_credentials
            .lock()
            .expect("not poisoned")
            .clone();
        let mut all = collector.map(|c| c()).unwrap_or_default();
        all.extend(
            self.config_credentials
                .lock()
                .expect("not poisoned")
                .iter()
                .cloned(),
        );
        self.credentials_unhealthy.clear();
        self.credentials_expiry.clear();
        for a in all {
            let expiry = ExpiryLabels {
                kind: a.kind.to_owned(),
                object_namespace: a.namespace,
                object_name: a.name,
                source: a.source,
            };
            if let Some(at) = a.expires_at {
                self.credentials_expiry.get_or_create(&expiry).set(at);
            }
            let labels = CredentialsLabels {
                kind: expiry.kind,
                object_namespace: expiry.object_namespace,
                object_name: expiry.object_name,
                source: expiry.source,
                reason: a.health.as_str().to_owned(),
            };
            self.credentials_unhealthy.get_or_create(&labels).set(1);
        }
    }

    /// Marks the process ready (watches synced, or standing by as a non-leader) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200: ready, and the Channel watch not failing for too long.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.channel_watch_down_too_long()
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
        self.encode_credentials();
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

impl WatchHealth for Arc<Metrics> {
    fn watch_failed(&self, resource: &str) {
        Metrics::watch_failed(self, resource)
    }
    fn watch_ok(&self, resource: &str) {
        Metrics::watch_ok(self, resource)
    }
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

    #[test]
    fn only_credentials_needing_attention_have_series() {
        use crate::credentials_health::Health;
        let m = Metrics::new();
        let attention = |name: &str, health, expires_at| Attention {
            kind: "Channel",
            namespace: "shop".into(),
            name: name.into(),
            source: "facebook".into(),
            health,
            expires_at,
        };
        m.set_channel_credentials(Some(Arc::new(move || {
            vec![
                attention("page", Health::ExpiringSoon, Some(1_800_000_000)),
                attention("ig", Health::Invalidated, None),
            ]
        })));
        m.set_config_credentials(vec![Attention {
            kind: "ProviderConfig",
            source: "twilio".into(),
            ..attention("default", Health::AccountSuspended, None)
        }]);
        let text = m.encode();
        for line in [
            r#"channel_operator_credentials_unhealthy{kind="Channel",object_namespace="shop",object_name="page",source="facebook",reason="ExpiringSoon"} 1"#,
            r#"channel_operator_credentials_unhealthy{kind="Channel",object_namespace="shop",object_name="ig",source="facebook",reason="Invalidated"} 1"#,
            r#"channel_operator_credentials_unhealthy{kind="ProviderConfig",object_namespace="shop",object_name="default",source="twilio",reason="AccountSuspended"} 1"#,
            r#"channel_operator_credentials_expiry_timestamp_seconds{kind="Channel",object_namespace="shop",object_name="page",source="facebook"} 1800000000"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert_eq!(
            text.matches("channel_operator_credentials_expiry_timestamp_seconds{")
                .count(),
            1
        );
        // Repaired: the series go.
        m.set_channel_credentials(None);
        m.set_config_credentials(vec![]);
        assert!(!m
            .encode()
            .contains("channel_operator_credentials_unhealthy{"));
    }

    #[test]
    fn a_failing_channel_watch_fails_readiness_after_the_limit() {
        let m = Metrics::with_watch_unhealthy_limit(Duration::ZERO);
        m.set_ready(true);
        m.watch_failed("secrets");
        assert!(m.is_ready(), "a Secret watch does not decide readiness");
        m.watch_failed(CHANNELS);
        assert!(!m.is_ready());
        let text = m.encode();
        assert!(
            text.contains("channel_operator_watch_restarts_total{resource=\"channels\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("channel_operator_watch_healthy{resource=\"channels\"} 0"),
            "{text}"
        );
        m.watch_ok(CHANNELS);
        assert!(m.is_ready());
        assert!(m
            .encode()
            .contains("channel_operator_watch_healthy{resource=\"channels\"} 1"));
    }
}
