//! The one table of endpoints (src/api/endpoints.rs): every endpoint it lists is routed, POST
//! only and has its metrics series, and nothing outside it is routed.

mod support;

use support::router::*;

/// Every table endpoint answers a POST with its handler (not the unknown-path 404), a GET
/// with 405 naming POST, and the metrics have its latency series before anyone called it.
#[tokio::test]
async fn every_table_endpoint_is_routed_post_only_and_measured() {
    let app = app();
    let text = get_text(&app, "/metrics").await;
    let paths = channel_operator::api::endpoints::paths();
    assert!(paths.len() >= 15, "{paths:?}");
    for path in paths {
        let label = path.trim_start_matches('/');
        assert!(
            text.contains(&format!(
                "channel_operator_api_request_duration_seconds_count{{endpoint=\"{label}\"}} 0"
            )),
            "no latency series for {label}:\n{text}"
        );
        let (status, v) = post_json(&app, path, json!({"channel_id": "not-a-uuid"})).await;
        assert_ne!(
            v["message"], "no such endpoint",
            "{path} is in the table but not routed ({status})"
        );
        let (status, headers, v) = call(
            &app,
            Request::get(path.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, 405, "{path}: {v}");
        assert_eq!(headers[header::ALLOW], "POST", "{path}");
        assert!(message(&v).contains("method not allowed"), "{path}: {v}");
    }
    let (status, v) = post_json(&app, "/channels.instagram.unknown", json!({})).await;
    assert_eq!((status.as_u16(), message(&v)), (404, "no such endpoint"));
}
