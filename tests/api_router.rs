//! The API router in process (tower `oneshot`), over a channel cache filled by hand and a
//! Kubernetes client that cannot connect: every answer here is decided before the cluster, and a
//! request that tried a write would answer 503.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use channel_operator::api::{self, cache::ChannelCache, AppState, Args};
use channel_operator::crd::{Channel, ChannelSpec, ChannelStatus, Source};
use clap::Parser;
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use tower::ServiceExt;

fn unreachable_client() -> kube::Client {
    kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap()
}

fn channel(source: Source, scid: &str, name: Option<&str>, connected: bool) -> Channel {
    let id = channel_operator::channel_id::channel_id_string(source.as_str(), scid);
    let mut ch = Channel::new(
        &id,
        ChannelSpec {
            source,
            source_channel_id: scid.into(),
            name: name.map(Into::into),
            image_url: None,
            connected,
            credentials_secret_ref: None,
            deletion_policy: Default::default(),
        },
    );
    ch.metadata.namespace = Some("default".into());
    ch.metadata.generation = Some(1);
    ch.status = Some(ChannelStatus {
        id: Some(id),
        connected,
        observed_generation: Some(1),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: if connected {
                "Connected"
            } else {
                "Disconnected"
            }
            .into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }],
        ..Default::default()
    });
    ch
}

fn fixtures() -> Vec<Channel> {
    let mut plugin = channel(
        Source::ChatPlugin,
        "website-identifier-42",
        Some("website-identifier-42"),
        true,
    );
    plugin.spec.image_url = Some("http://example.org/plugin_icon.jpeg".into());
    let mut fb = channel(Source::Facebook, "100000000001", None, true);
    if let Some(s) = fb.status.as_mut() {
        s.page_name = Some("My Page".into());
        s.page_image_url = Some("https://fb.example/pic.png".into());
    }
    // Meant to be connected, but the provider refused it: not shown as connected.
    let mut failing = channel(Source::ChatPlugin, "failing-site", None, true);
    if let Some(s) = failing.status.as_mut() {
        s.connected = false;
        s.conditions[0].status = "False".into();
        s.conditions[0].reason = "ProviderError".into();
    }
    vec![
        plugin,
        fb,
        channel(Source::Google, "gbm-id", None, true),
        channel(Source::TwilioSms, "+491234567", Some("sms"), false),
        channel(
            Source::TwilioWhatsapp,
            "whatsapp:+491234567",
            Some("wa"),
            true,
        ),
        failing,
    ]
}

fn app_with(args: &[&str], channels: Vec<Channel>) -> Router {
    let mut argv = vec!["api"];
    argv.extend_from_slice(args);
    let args = Args::parse_from(argv);
    let cache = ChannelCache::new();
    cache.apply(&Event::Init);
    for ch in channels {
        cache.apply(&Event::InitApply(ch));
    }
    cache.apply(&Event::InitDone);
    let state = AppState::new(unreachable_client(), cache, &args).unwrap();
    api::router(state, &args.cors_origins).unwrap()
}

fn app() -> Router {
    app_with(&[], fixtures())
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
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

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, h, v) = call(app, post(path, body)).await;
    assert_eq!(h[header::CONTENT_TYPE], "application/json", "{path}");
    (s, v)
}

fn message(v: &Value) -> &str {
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"))
}

#[tokio::test]
async fn list_returns_connected_channels_with_all_keys() {
    let app = app();
    let (status, v) = post_json(&app, "/channels.list", json!({})).await;
    assert_eq!(status, 200);
    let data = v["data"].as_array().unwrap();
    // twilio.sms is disconnected: not listed.
    assert_eq!(data.len(), 4, "{v}");
    for ch in data {
        let obj = ch.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["connected", "id", "metadata", "source", "source_channel_id"]
        );
        assert_eq!(ch["connected"], true);
        assert!(ch["metadata"]["name"].is_string());
    }
    let plugin = data.iter().find(|c| c["source"] == "chat_plugin").unwrap();
    assert_eq!(
        plugin,
        &json!({"id": "625c0084-1043-5727-bfd9-40366ef08a64", "source": "chat_plugin",
            "source_channel_id": "website-identifier-42", "connected": true,
            "metadata": {"name": "website-identifier-42", "image_url": "http://example.org/plugin_icon.jpeg"}})
    );
}

#[tokio::test]
async fn list_filters_by_exact_source_and_accepts_a_missing_body() {
    let app = app();
    let (_, v) = post_json(&app, "/channels.list", json!({"source": "facebook"})).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], "f405cad8-dd03-5275-be27-a660d4d64949");
    let (_, v) = post_json(&app, "/channels.list", json!({"source": "twilio.sms"})).await;
    assert_eq!(v, json!({"data": []}));
    let (_, v) = post_json(&app, "/channels.list", json!({"source": "FACEBOOK"})).await;
    assert_eq!(v, json!({"data": []}));
    // No body at all, and no content type: counts as {}.
    let (s, _, v) = call(
        &app,
        Request::post("/channels.list").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    // Unknown fields are ignored.
    let (s, v) = post_json(
        &app,
        "/channels.list",
        json!({"source": "google", "page": 3}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["id"], "bda330b6-7049-5190-93af-d5b16b03dd19");
}

#[tokio::test]
async fn info_shapes_and_name_fallbacks() {
    let app = app();
    // Facebook without a declared name: the page's name and picture.
    let (s, v) = post_json(
        &app,
        "/channels.info",
        json!({"channel_id": "F405CAD8-DD03-5275-BE27-A660D4D64949"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"id": "f405cad8-dd03-5275-be27-a660d4d64949", "source": "facebook",
            "source_channel_id": "100000000001", "connected": true,
            "metadata": {"name": "My Page", "image_url": "https://fb.example/pic.png"}})
    );
    // Google without a name: "<source> <last five of id>", and no image_url key.
    let (_, v) = post_json(
        &app,
        "/channels.info",
        json!({"channel_id": "bda330b6-7049-5190-93af-d5b16b03dd19"}),
    )
    .await;
    assert_eq!(v["metadata"], json!({"name": "google 3dd19"}));
    let (_, v) = post_json(
        &app,
        "/channels.info",
        json!({"channel_id": "7fd34ed2-88ae-5797-950d-9ff8a93e6ea2"}),
    )
    .await;
    assert_eq!(v["source_channel_id"], "whatsapp:+491234567");
    assert_eq!(v["source"], "twilio.whatsapp");
}

#[tokio::test]
async fn info_errors() {
    let app = app();
    // Disconnected: 404.
    let (s, v) = post_json(
        &app,
        "/channels.info",
        json!({"channel_id": "ed06ae7d-a352-5d78-bc47-7431a8ebab03"}),
    )
    .await;
    assert_eq!(s, 404);
    assert!(message(&v).contains("not found"));
    // Connected in the spec, refused by the provider: 404.
    let failing = channel_operator::channel_id::channel_id_string("chat_plugin", "failing-site");
    let (s, _) = post_json(&app, "/channels.info", json!({"channel_id": &failing})).await;
    assert_eq!(s, 404);
    let (s, _) = post_json(
        &app,
        "/channels.update",
        json!({"channel_id": &failing, "name": "x"}),
    )
    .await;
    assert_eq!(s, 404);
    // Unknown: 404.
    let (s, _) = post_json(
        &app,
        "/channels.info",
        json!({"channel_id": "51abb963-6078-5efb-b888-d8457a7c76f8"}),
    )
    .await;
    assert_eq!(s, 404);
    for (body, needle) in [
        (json!({"channel_id": "nope"}), "channel_id"),
        (json!({"channel_id": 42}), "channel_id"),
        (json!({}), "channel_id"),
        (json!([]), "invalid"),
    ] {
        let (s, v) = post_json(&app, "/channels.info", body.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert!(message(&v).contains(needle), "{body}: {v}");
    }
}

#[tokio::test]
async fn malformed_requests_get_json_4xx() {
    let app = app();
    let bad_json = Request::post("/channels.info")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"channel_id\": "))
        .unwrap();
    let (s, _, v) = call(&app, bad_json).await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("not valid JSON"), "{v}");

    let missing = Request::post("/channels.info")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .unwrap();
    let (s, _, v) = call(&app, missing).await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("missing"), "{v}");

    let text = Request::post("/channels.info")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{\"channel_id\":\"x\"}"))
        .unwrap();
    let (s, _, v) = call(&app, text).await;
    assert_eq!(s, 415);
    assert!(message(&v).contains("Content-Type"), "{v}");

    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let (s, _, v) = call(
        &app,
        post(
            "/channels.chatplugin.connect",
            serde_json::from_str(&big).unwrap(),
        ),
    )
    .await;
    assert_eq!(s, 413);
    assert!(message(&v).contains("64 KiB"), "{v}");

    let get = Request::get("/channels.list").body(Body::empty()).unwrap();
    let (s, h, v) = call(&app, get).await;
    assert_eq!(s, 405);
    assert_eq!(h[header::ALLOW], "POST");
    assert!(message(&v).contains("method"), "{v}");

    let (s, v) = post_json(&app, "/channels.nope", json!({})).await;
    assert_eq!(s, 404);
    assert!(message(&v).contains("endpoint"), "{v}");
}

#[tokio::test]
async fn connect_validation_rejects_before_the_cluster() {
    let app = app();
    let cases = [
        ("/channels.chatplugin.connect", json!({}), "name"),
        ("/channels.chatplugin.connect", json!({"name": ""}), "name"),
        (
            "/channels.chatplugin.connect",
            json!({"name": "   "}),
            "name",
        ),
        ("/channels.chatplugin.connect", json!({"name": 1}), "name"),
        (
            "/channels.chatplugin.connect",
            json!({"name": "a", "image_url": "example.org/x.png"}),
            "image_url",
        ),
        (
            "/channels.chatplugin.connect",
            json!({"name": "a", "image_url": "ftp://example.org/x"}),
            "image_url",
        ),
        (
            "/channels.facebook.connect",
            json!({"page_id": "1"}),
            "page_token",
        ),
        (
            "/channels.facebook.connect",
            json!({"page_token": "t"}),
            "page_id",
        ),
        (
            "/channels.facebook.connect",
            json!({"page_id": "1", "page_token": ""}),
            "page_token",
        ),
        (
            "/channels.facebook.connect",
            json!({"page_id": "1", "page_token": "t", "name": ""}),
            "name",
        ),
        ("/channels.google.connect", json!({"gbm_id": "g"}), "name"),
        ("/channels.google.connect", json!({"name": "g"}), "gbm_id"),
        (
            "/channels.twilio.sms.connect",
            json!({"phone_number": "+49 123 4567", "name": "n"}),
            "phone_number",
        ),
        (
            "/channels.twilio.sms.connect",
            json!({"phone_number": "491234567", "name": "n"}),
            "phone_number",
        ),
        (
            "/channels.twilio.sms.connect",
            json!({"phone_number": "+491234567"}),
            "name",
        ),
        (
            "/channels.twilio.whatsapp.connect",
            json!({"phone_number": "whatsapp:+491234567", "name": "n"}),
            "phone_number",
        ),
        (
            "/channels.update",
            json!({"channel_id": "625c0084-1043-5727-bfd9-40366ef08a64", "name": ""}),
            "name",
        ),
        (
            "/channels.update",
            json!({"channel_id": "625c0084-1043-5727-bfd9-40366ef08a64", "image_url": "x"}),
            "image_url",
        ),
        ("/channels.update", json!({"name": "x"}), "channel_id"),
        ("/channels.facebook.explore", json!({}), "auth_token"),
        (
            "/channels.google.disconnect",
            json!({"channel_id": "x"}),
            "channel_id",
        ),
    ];
    for (path, body, field) in cases {
        let (s, v) = post_json(&app, path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {v}");
        assert!(message(&v).contains(field), "{path} {body}: {v}");
    }
}

#[tokio::test]
async fn disconnect_and_update_answers_from_the_cache() {
    let app = app();
    // Unknown channel: 400.
    let (s, v) = post_json(
        &app,
        "/channels.google.disconnect",
        json!({"channel_id": "51abb963-6078-5efb-b888-d8457a7c76f8"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("not known"), "{v}");
    // Another source's channel: 400.
    let (s, v) = post_json(
        &app,
        "/channels.facebook.disconnect",
        json!({"channel_id": "bda330b6-7049-5190-93af-d5b16b03dd19"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("not a facebook channel"), "{v}");
    // Already disconnected: 202 {} without a write.
    let (s, v) = post_json(
        &app,
        "/channels.twilio.sms.disconnect",
        json!({"channel_id": "ED06AE7D-A352-5D78-BC47-7431A8EBAB03"}),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(v, json!({}));
    // Update of a disconnected or unknown channel: 404.
    let (s, _) = post_json(
        &app,
        "/channels.update",
        json!({"channel_id": "ed06ae7d-a352-5d78-bc47-7431a8ebab03", "name": "x"}),
    )
    .await;
    assert_eq!(s, 404);
    // Update with nothing to change answers the channel as it is.
    let (s, v) = post_json(
        &app,
        "/channels.update",
        json!({"channel_id": "bda330b6-7049-5190-93af-d5b16b03dd19"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["metadata"]["name"], "google 3dd19");
}

#[tokio::test]
async fn an_unreachable_cluster_is_503() {
    let app = app();
    let (s, v) = post_json(
        &app,
        "/channels.google.disconnect",
        json!({"channel_id": "bda330b6-7049-5190-93af-d5b16b03dd19"}),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert!(message(&v).contains("Kubernetes API"), "{v}");
    let (s, _) = post_json(
        &app,
        "/channels.chatplugin.connect",
        json!({"name": "new-site"}),
    )
    .await;
    assert_eq!(s, 503);
    let (s, _) = post_json(
        &app,
        "/channels.update",
        json!({"channel_id": "bda330b6-7049-5190-93af-d5b16b03dd19", "name": "G"}),
    )
    .await;
    assert_eq!(s, 503);
}

#[tokio::test]
async fn an_idempotent_reconnect_answers_without_a_write() {
    let app = app();
    // Same name, already connected and Ready: no write needed, so no 503 from the dead cluster.
    let (s, v) = post_json(
        &app,
        "/channels.chatplugin.connect",
        json!({"name": "website-identifier-42", "image_url": "http://example.org/plugin_icon.jpeg"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], "625c0084-1043-5727-bfd9-40366ef08a64");
}

fn jwt(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn auth_when_configured() {
    let app = app_with(
        &["--api-tokens", "t1,t2", "--jwt-secret", "s3cret"],
        fixtures(),
    );
    let with = |auth: Option<&str>| {
        let mut b =
            Request::post("/channels.list").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::from("{}")).unwrap()
    };
    let (s, _, v) = call(&app, with(None)).await;
    assert_eq!(s, 403);
    assert!(message(&v).contains("Bearer"));
    assert_eq!(call(&app, with(Some("Bearer t3"))).await.0, 403);
    assert_eq!(call(&app, with(Some("Bearer t2"))).await.0, 200);
    let good = jwt("s3cret", json!({"user_id": "u-1"}));
    assert_eq!(
        call(&app, with(Some(&format!("Bearer {good}")))).await.0,
        200
    );
    let bad = jwt("other", json!({"user_id": "u-1"}));
    assert_eq!(
        call(&app, with(Some(&format!("Bearer {bad}")))).await.0,
        403
    );
    // Probes and the document need no token; the metrics do (tests/api_security.rs).
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn auth_is_off_by_default() {
    let app = app();
    let (s, _) = post_json(&app, "/channels.list", json!({})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn readyz_waits_for_the_cache() {
    let args = Args::parse_from(["api"]);
    let cache = ChannelCache::new();
    let state = AppState::new(unreachable_client(), cache.clone(), &args).unwrap();
    let app = api::router(state, &[]).unwrap();
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    assert_eq!(call(&app, get("/healthz")).await.0, 200);
    let (s, _, v) = call(&app, get("/readyz")).await;
    assert_eq!(s, 503);
    assert!(message(&v).contains("synced"));
    // The API answers 503 rather than from an incomplete cache.
    let (s, v) = post_json(&app, "/channels.list", json!({})).await;
    assert_eq!(s, 503);
    assert!(message(&v).contains("synced"), "{v}");
    cache.apply(&Event::Init);
    cache.apply(&Event::InitDone);
    assert_eq!(call(&app, get("/readyz")).await.0, 200);
    assert_eq!(post_json(&app, "/channels.list", json!({})).await.0, 200);
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_status() {
    let app = app();
    post_json(&app, "/channels.list", json!({})).await;
    post_json(&app, "/channels.info", json!({"channel_id": "x"})).await;
    post_json(&app, "/no.such.endpoint", json!({})).await;
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(
            "channel_operator_api_requests_total{endpoint=\"channels.list\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "channel_operator_api_requests_total{endpoint=\"channels.info\",status=\"400\"} 1"
    ));
    assert!(text.contains("channel_operator_api_request_duration_seconds_bucket{"));
    assert!(text.contains("channel_operator_api_cached_channels 6"));
    assert!(
        text.contains(
            "channel_operator_api_requests_total{endpoint=\"unmatched\",status=\"404\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_lists_every_endpoint() {
    let app = app();
    let (s, _, v) = call(
        &app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for endpoint in api::ENDPOINTS {
        let op = &paths
            .get(endpoint)
            .unwrap_or_else(|| panic!("{endpoint} missing from the document"))["post"];
        assert!(op["responses"]["200"].is_object(), "{endpoint}");
        assert!(op["requestBody"].is_object(), "{endpoint}");
    }
    assert_eq!(paths.len(), api::ENDPOINTS.len());
    let channel = &v["components"]["schemas"]["ChannelResponse"];
    let mut required: Vec<_> = channel["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(
        required,
        ["connected", "id", "metadata", "source", "source_channel_id"]
    );
}

#[tokio::test]
async fn cors_for_configured_origins_only() {
    let app = app_with(&["--cors-origins", "https://ui.example"], fixtures());
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/channels.list")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,authorization",
            )
            .body(Body::empty())
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(preflight("https://ui.example"))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let h = resp.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://ui.example");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let resp = app
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(resp
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    // A simple request from the allowed origin carries the header too.
    let mut req = post("/channels.list", json!({}));
    req.headers_mut()
        .insert(header::ORIGIN, "https://ui.example".parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example"
    );
}
