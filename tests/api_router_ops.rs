//! The API router's operations in process (tower `oneshot`): authentication, readiness,
//! request metrics, the OpenAPI document and CORS.

mod support;

use support::router::*;

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
    let cache = AnswerCache::new();
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
    let text = get_text(&app, "/metrics").await;
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
    for endpoint in api::endpoints::paths() {
        let op = &paths
            .get(endpoint)
            .unwrap_or_else(|| panic!("{endpoint} missing from the document"))["post"];
        assert!(op["responses"]["200"].is_object(), "{endpoint}");
        assert!(op["requestBody"].is_object(), "{endpoint}");
    }
    assert_eq!(paths.len(), api::endpoints::paths().len());
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
            // What Airy's newest client sends.
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,authorization,x-requested-with",
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
    // A browser sends the request only if every header it asked for is allowed.
    let allowed: Vec<String> = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for asked in ["content-type", "authorization", "x-requested-with"] {
        assert!(
            allowed.iter().any(|a| a == asked),
            "{asked} not in {allowed:?}"
        );
    }
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
