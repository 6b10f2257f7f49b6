//! `/metrics`: requests by endpoint and status, a latency histogram by endpoint (every endpoint
//! of [`super::endpoints`] from the start), the health of the cache's watches, and the open
//! connections and those the connection limits closed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::connections::Shed;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    /// The namespace whose Channels the watch follows (not `namespace`: Prometheus sets that
    /// to the pod's namespace).
    watch_namespace: String,
}

/// The API's metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    channels: Gauge,
    watch_restarts: Family<NamespaceLabels, Counter>,
    watch_healthy: Family<NamespaceLabels, Gauge>,
    cache_stale: Gauge<f64, std::sync::atomic::AtomicU64>,
    shed: Family<ShedLabels, Counter>,
    connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("channel_operator_api");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by endpoint and status",
            requests.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer an HTTP request, by endpoint",
            latency.clone(),
        );
        // Every endpoint of the table has its latency series from the start, so a dashboard or
        // an alert sees an endpoint nobody called yet as zero rather than absent.
        for path in super::endpoints::paths() {
            let _ = latency.get_or_create(&EndpointLabels {
                endpoint: endpoint_label(path),
            });
        }
        let channels = Gauge::default();
        registry.register("cached_channels", "Channels in the cache", channels.clone());
        let watch_restarts = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Errors and re-lists of the cache's Channel watch, per namespace",
            watch_restarts.clone(),
        );
        let watch_healthy = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "watch_healthy",
            "1 while the cache's Channel watch of the namespace is established, 0 while it is failing",
            watch_healthy.clone(),
        );
        let cache_stale = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "cache_stale_seconds",
            "How long the longest-failing Channel watch has been failing (0: the cache is current)",
            cache_stale.clone(),
        );
        let shed = Family::<ShedLabels, Counter>::default();
        registry.register(
            "connections_shed",
            "Connections the server closed: idle or slow ones for a new client (idle, slow), a peer's over its share (peer_limit), and the timeouts (header_timeout, body_timeout, idle_timeout)",
            shed.clone(),
        );
        for why in Shed::ALL {
            let _ = shed.get_or_create(&ShedLabels {
                reason: why.as_str(),
            });
        }
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open (at most --max-connections)",
            connections.clone(),
        );
        Metrics {
            inner: Arc::new(MetricsInner {
                registry,
                requests,
                latency,
                channels,
                watch_restarts,
                watch_healthy,
                cache_stale,
                shed,
                connections,
            }),
        }
    }

    /// Counts an error or re-list of the watch of `namespace`, and marks it failing.
    pub fn watch_failed(&self, namespace: &str) {
        let labels = NamespaceLabels {
            watch_namespace: namespace.to_owned(),
        };
        self.inner.watch_restarts.get_or_create(&labels).inc();
        self.inner.watch_healthy.get_or_create(&labels).set(0);
    }

    /// Marks the watch of `namespace` established.
    pub fn watch_ok(&self, namespace: &str) {
        let labels = NamespaceLabels {
            watch_namespace: namespace.to_owned(),
        };
        self.inner.watch_healthy.get_or_create(&labels).set(1);
    }

    /// Sets how long the cache has been behind (see `AnswerCache::stale_for`).
    pub fn set_cache_stale(&self, stale: std::time::Duration) {
        self.inner.cache_stale.set(stale.as_secs_f64());
    }

    /// Counts a connection the server closed, and why.
    pub fn shed(&self, why: Shed) {
        self.inner
            .shed
            .get_or_create(&ShedLabels {
                reason: why.as_str(),
            })
            .inc();
    }

    /// Sets the open connections gauge.
    pub fn set_open_connections(&self, n: usize) {
        self.inner.connections.set(n as i64);
    }

    /// Sets the cached channels gauge.
    pub fn set_cached_channels(&self, n: usize) {
        self.inner.channels.set(n as i64);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &str, status: u16, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .observe(seconds);
    }
}

/// The `endpoint` label of a route: its path without the leading slash.
fn endpoint_label(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// Middleware recording every request under its route (`unmatched` for unknown paths, so a
/// scan cannot grow the label set).
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| endpoint_label(p.as_str()))
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.observe(
        &endpoint,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`.
pub async fn handler(State(metrics): State<Metrics>) -> Response {
    let mut resp = metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
