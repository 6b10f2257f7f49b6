//! The channels HTTP API (docs/api.md), served from the cluster state.
//!
//! - [`model`]: request and response types; [`validate`]: value checks; [`error`]: `{"message"}`
//!   errors and the body extractor;
//! - [`cache`]: the reflector-backed channel cache with precomputed responses;
//! - [`writes`]: connect, disconnect and update through the Kubernetes API, waiting for the
//!   controller's verdict; [`undo`]: a refused connect's patch put back;
//! - [`endpoints`]: the one table of endpoints the router, the OpenAPI document and the
//!   metrics are built from;
//! - [`limits`] and [`connections`]: the connection loop, its timeouts and caps, and which
//!   connection is closed for a new client;
//! - [`handlers`], [`auth`], [`metrics`], [`openapi`]; explore calls the Graph API through
//!   [`crate::providers::facebook`].

pub mod auth;
pub mod cache;
pub mod connections;
pub mod endpoints;
pub mod error;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod scope;
pub mod turns;
pub mod undo;
pub mod validate;
pub mod writes;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use bytes::Bytes;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::secret::Secret;
use cache::ChannelCache;
use error::{json_bytes, json_error, MAX_BODY_BYTES};

/// Flags of `channel-operator api`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "api")]
pub struct Args {
    /// Address to serve the API (and /healthz, /readyz, /metrics, /openapi.json) on.
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// Comma-separated namespaces whose Channels the API reads and writes (default: the
    /// channels namespace). A connect for a channel id held by a Channel elsewhere answers 409.
    #[arg(long, env = "API_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Namespace new Channels are created in (default: $POD_NAMESPACE, else "default"); must be
    /// one of `--namespaces`.
    #[arg(long, env = "CHANNELS_NAMESPACE")]
    pub channels_namespace: Option<String>,
    /// How long connect and disconnect wait for the controller's verdict, in seconds.
    #[arg(long, env = "SYNC_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub sync_timeout_seconds: f64,
    /// Comma-separated static bearer tokens. With neither these nor --jwt-secret, auth is off.
    #[arg(
        long,
        env = "API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<Secret>,
    /// Secret of HS256 JWTs (with a user_id claim) accepted as bearer tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Seconds a Channel watch may fail (apiserver unreachable) before `/readyz` and every
    /// `channels.*` endpoint answer 503; until then reads are served from the cache. Writes
    /// answer 503 at once while a watch is failing.
    #[arg(long, env = "CACHE_STALE_SECONDS", default_value_t = 60.0)]
    pub cache_stale_seconds: f64,
    /// Comma-separated origins allowed by CORS (with credentials).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// The chat plugin's name in channel ids and answers: chat_plugin (the original API) or
    /// chatplugin (Airy Core since March 2021); the controller must be given the same. List
    /// filters and disconnect paths accept both names either way.
    #[arg(long, env = "CHATPLUGIN_NAMING", value_enum, default_value_t)]
    pub chatplugin_naming: crate::naming::ChatPluginNaming,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub providers: crate::providers::ProviderArgs,
}

impl Args {
    /// The namespace new Channels go to.
    pub fn channels_namespace(&self) -> String {
        self.channels_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The namespaces the API serves, the channels namespace among them.
    pub fn api_namespaces(&self) -> anyhow::Result<Vec<String>> {
        let channels = self.channels_namespace();
        let mut namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if namespaces.is_empty() {
            namespaces.push(channels.clone());
        }
        if let Some(bad) = namespaces.iter().find(|n| !crate::rules::is_namespace(n)) {
            anyhow::bail!("--namespaces: {bad:?} is not a namespace name");
        }
        if !namespaces.contains(&channels) {
            anyhow::bail!(
                "--namespaces must include the channels namespace {channels:?} (where new Channels are created)"
            );
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(namespaces)
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) cache: ChannelCache,
    pub(crate) client: kube::Client,
    pub(crate) namespace: String,
    pub(crate) connects: turns::IdLocks,
    pub(crate) sync_timeout: Duration,
    pub(crate) naming: crate::naming::ChatPluginNaming,
    pub(crate) facebook: std::sync::Arc<crate::providers::facebook::Facebook>,
    pub(crate) viber: std::sync::Arc<crate::providers::viber::Viber>,
    pub(crate) viber_token: Option<Secret>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) auth: auth::Auth,
    openapi: Bytes,
}

impl AppState {
    /// State over a cache (filled by [`ChannelCache::run`] or by hand in tests).
    pub fn new(client: kube::Client, cache: ChannelCache, args: &Args) -> anyhow::Result<Self> {
        if !(args.sync_timeout_seconds.is_finite() && args.sync_timeout_seconds > 0.0) {
            anyhow::bail!("--sync-timeout-seconds must be a positive number");
        }
        // The namespace flags are checked here too, so a state built by hand follows them.
        args.api_namespaces()?;
        if cache.naming() != args.chatplugin_naming {
            anyhow::bail!(
                "the channel cache and --chatplugin-naming name the chat plugin differently"
            );
        }
        let providers = crate::providers::Providers::new(&args.providers)?;
        Ok(AppState {
            cache,
            client,
            namespace: args.channels_namespace(),
            connects: Default::default(),
            sync_timeout: Duration::from_secs_f64(args.sync_timeout_seconds),
            naming: args.chatplugin_naming,
            facebook: providers.facebook(),
            viber: providers.viber(),
            viber_token: args
                .providers
                .viber_auth_token
                .clone()
                .filter(|t| !t.is_empty()),
            metrics: metrics::Metrics::new(),
            auth: auth::Auth::new(&args.api_tokens, args.jwt_secret.as_ref()),
            openapi: Bytes::from(openapi::document_json()),
        })
    }

    /// The cache.
    pub fn cache(&self) -> &ChannelCache {
        &self.cache
    }
}

fn get_route<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).fallback(|| async { method_not_allowed("GET, HEAD") })
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
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
    State(cache): State<ChannelCache>,
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

async fn openapi_json(State(state): State<AppState>) -> Response {
    json_bytes(StatusCode::OK, state.openapi.clone())
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
    serve_until(client, args, listener, crate::controller::Shutdown::new()).await
}

/// Serves the HTTP API on `listener` until `shutdown`, then drains: no new connections, and the
/// requests in flight (a connect waits up to `--sync-timeout-seconds`) get their answer, for at
/// most that timeout and five seconds more.
pub async fn serve_until(
    client: kube::Client,
    args: Args,
    listener: tokio::net::TcpListener,
    shutdown: crate::controller::Shutdown,
) -> anyhow::Result<()> {
    let namespaces = args.api_namespaces()?;
    let limits = args.limits.limits()?;
    if !(args.cache_stale_seconds.is_finite() && args.cache_stale_seconds > 0.0) {
        anyhow::bail!("--cache-stale-seconds must be a positive number");
    }
    let cache = ChannelCache::for_namespaces(
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the API server (client from the kubeconfig or service account) until SIGTERM or SIGINT,
/// then drains it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = crate::controller::Shutdown::on_signals()?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (kubeconfig or in-cluster)")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    serve_until(client, args, listener, shutdown).await
}
