//! The in-process router tests: Channels for the hand-filled cache, the router over a Kubernetes
//! client that cannot connect, and request helpers.

pub use axum::body::Body;
pub use axum::http::{header, Method, Request, StatusCode};
pub use axum::Router;
pub use channel_operator::api::{self, cache::AnswerCache, AppState, Args};
pub use channel_operator::crd::{Channel, ChannelSpec, ChannelStatus, Source};
pub use clap::Parser;
pub use http_body_util::BodyExt;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
pub use kube::runtime::watcher::Event;
pub use serde_json::{json, Value};
pub use tower::ServiceExt;

pub fn unreachable_client() -> kube::Client {
    kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap()
}

/// The Channels of the hand-filled cache, as the controller reports them (Ready, generation 1).
pub fn fixtures() -> Vec<Channel> {
    use super::build::channel;
    let plugin = channel(Source::ChatPlugin, "website-identifier-42")
        .display_name("website-identifier-42")
        .image_url("http://example.org/plugin_icon.jpeg")
        .reported();
    let mut fb = channel(Source::Facebook, "100000000001").reported();
    if let Some(s) = fb.status.as_mut() {
        s.page_name = Some("My Page".into());
        s.page_image_url = Some("https://fb.example/pic.png".into());
    }
    // Meant to be connected, but the provider refused it: not shown as connected.
    let mut failing = channel(Source::ChatPlugin, "failing-site").reported();
    if let Some(s) = failing.status.as_mut() {
        s.connected = false;
        s.conditions[0].status = "False".into();
        s.conditions[0].reason = "ProviderError".into();
    }
    vec![
        plugin,
        fb,
        channel(Source::Google, "gbm-id").reported(),
        channel(Source::TwilioSms, "+491234567")
            .display_name("sms")
            .connected(false)
            .reported(),
        channel(Source::TwilioWhatsapp, "whatsapp:+491234567")
            .display_name("wa")
            .reported(),
        failing,
    ]
}

pub fn app_with(args: &[&str], channels: Vec<Channel>) -> Router {
    let mut argv = vec!["api"];
    argv.extend_from_slice(args);
    let args = Args::parse_from(argv);
    let cache = AnswerCache::named(args.chatplugin_naming);
    cache.apply(&Event::Init);
    for ch in channels {
        cache.apply(&Event::InitApply(ch));
    }
    cache.apply(&Event::InitDone);
    let state = AppState::new(unreachable_client(), cache, &args).unwrap();
    api::router(state, &args.cors_origins).unwrap()
}

pub fn app() -> Router {
    app_with(&[], fixtures())
}

pub async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, headers, value)
}

pub fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, h, v) = call(app, post(path, body)).await;
    assert_eq!(h[header::CONTENT_TYPE], "application/json", "{path}");
    (s, v)
}

pub use super::api::message;

/// The body of `GET path` as text (e.g. `/metrics`).
pub async fn get_text(app: &Router, path: &str) -> String {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
