//! The channels HTTP API (docs/api.md), served from the cluster state.
//!
//! - [`args`]: the flags;
//! - [`model`]: request and response types; [`validate`]: value checks; [`error`]: `{"message"}`
//!   errors and the body extractor;
//! - [`cache`]: the reflector-backed channel cache with precomputed responses;
//! - [`state`]: the handlers' state, [`AppState`], and its writes: connect, disconnect and update
//!   through the Kubernetes API ([`kube_calls`]), waiting for the controller's verdict, one at a
//!   time per channel id ([`id_locks`]); [`undo`]: a refused connect's patch put back;
//! - [`endpoints`]: the one table of endpoints the router, the OpenAPI document and the
//!   metrics are built from;
//! - [`limits`] and [`connections`]: the connection loop, its timeouts and caps, and which
//!   connection is closed for a new client;
//! - [`handlers`], [`auth`], [`metrics`], [`openapi`]; explore calls the Graph API through
//!   [`crate::providers::facebook`].

pub mod args;
pub mod auth;
pub mod cache;
pub mod confine;
pub mod connections;
pub mod endpoints;
pub mod error;
pub mod handlers;
pub mod id_locks;
pub mod kube_calls;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod state;
pub mod undo;
pub mod validate;

use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use bytes::Bytes;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::runtime::{AbortOnDrop, Shutdown};
pub use args::Args;
use cache::AnswerCache;
use error::{json_bytes, json_error, method_not_allowed, MAX_BODY_BYTES};
pub use state::AppState;

fn get_route<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).fallback(|| async { method_not_allowed("GET, HEAD") })
}

async fn not_found(State(state): State<AppState>) -> Response {
    // Unknown paths share one label, so a scan cannot grow the metric's label set.
    state.metrics.observe("unmatched", 404, 0.0);
    json_error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The endpoints that write Channels: connect, disconnect, update.
fn is_write(path: &str) -> bool {
    path.ends_with(".connect") || path.ends_with(".disconnect") || path == "/channels.update"
}

/// The outage policy. Until the cache has listed every Channel, answers would be wrong (info
/// 404s, connect could create a second Channel for an id that exists elsewhere): 503. While a
/// watch is failing (the apiserver unreachable, or a re-list under way), a write could not see
/// the controller's verdict: 503 at once rather than 504 after `--sync-timeout-seconds`; reads
/// are served from the cache until it has been stale for `--cache-stale-seconds`, then 503.
async fn require_synced_cache(
    State(cache): State<AnswerCache>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(because) = cache.not_ready_because() {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{because}; try again shortly"),
        )
    } else if is_write(req.uri().path()) && !cache.is_current() {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Kubernetes API is unreachable or the channel cache is catching up; try again shortly",
        )
    } else {
        next.run(req).await
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    state.metrics.set_cached_channels(state.cache.len());
    state.metrics.set_cache_stale(state.cache.stale_for());
    metrics::handler(State(state.metrics.clone()))
        .await
        .into_response()
}

/// The HTTP API as an axum router.
pub fn router(state: AppState, cors_origins: &[String]) -> anyhow::Result<Router> {
    let api = endpoints::router()
        .route_layer(axum::middleware::from_fn_with_state(
            state.cache.clone(),
            require_synced_cache,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_auth,
        ));
    // With auth on, the metrics need it too; probes and the OpenAPI document stay open.
    let metrics = Router::new()
        .route("/metrics", get_route(metrics_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_auth,
        ));
    let document = Bytes::from(openapi::document_json());
    let openapi_json = move || std::future::ready(json_bytes(StatusCode::OK, document.clone()));
    let ops = Router::new()
        .route("/healthz", get_route(handlers::healthz))
        .route("/readyz", get_route(handlers::readyz))
        .route("/openapi.json", get_route(openapi_json));
    let mut app = api
        .merge(metrics)
        .merge(ops)
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let origins: Vec<HeaderValue> = cors_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|o| HeaderValue::from_str(o).with_context(|| format!("bad CORS origin {o:?}")))
        .collect::<anyhow::Result<_>>()?;
    if !origins.is_empty() {
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::HeaderName::from_static("x-requested-with"),
                ])
                .allow_credentials(true)
                .max_age(Duration::from_secs(3600)),
        );
    }
    Ok(app)
}

/// Serves the HTTP API on `listener` until the future is dropped.
pub async fn serve(
    client: kube::Client,
    args: Args,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    serve_until(client, args, listener, Shutdown::new()).await
}

/// Serves the HTTP API on `listener` until `shutdown`, then drains: no new connections, and the
/// requests in flight (a connect waits up to `--sync-timeout-seconds`) get their answer, for at
/// most that timeout and five seconds more.
pub async fn serve_until(
    client: kube::Client,
    args: Args,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let namespaces = args.api_namespaces()?;
    let limits = args.limits.limits()?;
    if !(args.cache_stale_seconds.is_finite() && args.cache_stale_seconds > 0.0) {
        anyhow::bail!("--cache-stale-seconds must be a positive number");
    }
    let cache = AnswerCache::for_namespaces(
        &namespaces,
        args.chatplugin_naming,
        Duration::from_secs_f64(args.cache_stale_seconds),
    );
    let state = AppState::new(client.clone(), cache.clone(), &args)?;
    let drain_limit = state.sync_timeout + Duration::from_secs(5);
    let metrics = state.metrics.clone();
    let app = router(state, &args.cors_origins)?;
    let watch = tokio::spawn(cache.run(client, namespaces.clone(), metrics.clone()));
    let _stop_watch = AbortOnDrop(watch);
    tracing::info!(addr = %listener.local_addr()?, namespaces = %namespaces.join(","), creates_in = %args.channels_namespace(), "serving the channels API for the Channels of these namespaces");
    let server = limits::serve(listener, app, limits, shutdown.clone(), metrics.clone());
    let overdue = async {
        shutdown.requested().await;
        tokio::time::sleep(drain_limit).await;
    };
    tokio::select! {
        () = server => {}
        () = overdue => tracing::warn!("requests still in flight at the drain limit; closing them"),
    }
    Ok(())
}

/// Runs the API server (client from the kubeconfig or service account) until SIGTERM or SIGINT,
/// then drains it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (kubeconfig or in-cluster)")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    serve_until(client, args, listener, shutdown).await
}
