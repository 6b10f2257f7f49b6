//! Property test: random and malformed bodies, content types and ids to every endpoint of a
//! running API (sandbox + real controller). Never a 5xx, always a JSON answer, and a rejected
//! request never writes to the cluster (every write the API sends is counted).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use channel_operator::api::endpoints;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use support::*;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

const IDS: [&str; 4] = [
    "bda330b6-7049-5190-93af-d5b16b03dd19", // google gbm-id, connected below
    "625C0084-1043-5727-BFD9-40366EF08A64", // chat plugin, connected below
    "51abb963-6078-5efb-b888-d8457a7c76f8", // unknown
    "not-a-uuid",
];

const FIELDS: [&str; 10] = [
    "channel_id",
    "name",
    "image_url",
    "page_id",
    "page_token",
    "gbm_id",
    "phone_number",
    "source",
    "auth_token",
    "extra",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(IDS.to_vec()).prop_map(Value::from),
        prop::sample::select(vec![
            "",
            " ",
            "http://example.org/a.png",
            "example.org/a.png",
            "ftp://x/y",
            "+491234567",
            "+49 123 4567",
            "whatsapp:+491234567",
            "google",
            "facebook",
            "\u{0}",
            "http:///x",
        ])
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), inner, 0..5)
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
        ]
    })
}

/// Objects with the API's field names (more likely to get past the parser).
fn request_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => request_object().prop_map(Body::Json),
        1 => json_value().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        // Truncated JSON.
        1 => request_object().prop_flat_map(|v| {
            let s = v.to_string();
            let n = s.len();
            (Just(s), 0..n.max(1)).prop_map(|(s, cut)| Body::Bytes(s.as_bytes()[..cut].to_vec()))
        }),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ])
}

#[test]
fn random_bodies_never_5xx_and_rejections_never_write() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let (env, _viber) = rt.block_on(async {
        // A well-behaved Viber API, and the API's Viber bot, so that channels.viber.connect
        // (whose body may be {}) connects like the others.
        let viber = wiremock::MockServer::start().await;
        for (p, body) in [
            (
                "/pa/get_account_info",
                json!({"status": 0, "id": "pa:fuzz", "name": "Bot"}),
            ),
            ("/pa/set_webhook", json!({"status": 0})),
        ] {
            Mock::given(method("POST"))
                .and(path(p))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .mount(&viber)
                .await;
        }
        let url = viber.uri();
        let env = Env::builder()
            .no_twilio()
            .controller_args(&[
                "--viber-api-url",
                &url,
                "--viber-webhook-url",
                "https://hooks.example.org/viber",
            ])
            .api(&[
                "--viber-api-url",
                &url,
                "--viber-auth-token",
                "fuzz-viber-token",
            ])
            .count_api_writes(writes.clone())
            .build()
            .await;
        // A well-behaved Graph API: provider failures are 500 by the spec, and not what this
        // property is about.
        for (verb, p, body) in [
            (
                "GET",
                "/v24.0/me/accounts",
                json!({"data": [{"id": "p1", "name_with_location_descriptor": "P"}]}),
            ),
            (
                "GET",
                "/v24.0/oauth/access_token",
                json!({"access_token": "long"}),
            ),
            (
                "POST",
                "/v24.0/me/subscribed_apps",
                json!({"success": true}),
            ),
        ] {
            Mock::given(method(verb))
                .and(path(p))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .mount(&env.graph)
                .await;
        }
        Mock::given(method("GET"))
            .and(path_regex(r"^/v24\.0/[^/]+$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "x", "name_with_location_descriptor": "Page", "access_token": "pa"}),
            ))
            .with_priority(10)
            .mount(&env.graph)
            .await;
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
            .mount(&env.graph)
            .await;
        let (s, v) = env
            .post(
                "channels.google.connect",
                json!({"gbm_id": "gbm-id", "name": "G"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = env
            .post(
                "channels.chatplugin.connect",
                json!({"name": "website-identifier-42"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (env, viber)
    });
    // The counter sees the API's writes (the two connects), so the property below can fail.
    assert!(writes.load(Ordering::SeqCst) >= 2);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let endpoint = prop::sample::select(endpoints::paths().to_vec());
    let rejected = AtomicUsize::new(0);
    runner
        .run(
            &(endpoint, body(), content_type()),
            |(endpoint, body, ct)| {
                let bytes = match &body {
                    Body::Json(v) => v.to_string().into_bytes(),
                    Body::Bytes(b) => b.clone(),
                };
                let before = writes.load(Ordering::SeqCst);
                let (status, v) = rt.block_on(env.post_raw(
                    endpoint.trim_start_matches('/'),
                    ct,
                    bytes.clone(),
                    None,
                ));
                let shown = String::from_utf8_lossy(&bytes).into_owned();
                prop_assert!(status < 500, "{endpoint} {ct:?} {shown} -> {status} {v}");
                if status >= 400 {
                    rejected.fetch_add(1, Ordering::SeqCst);
                    prop_assert!(
                        v["message"].is_string(),
                        "{endpoint} {shown} -> {status} {v}"
                    );
                    prop_assert_eq!(
                        writes.load(Ordering::SeqCst),
                        before,
                        "a rejected request wrote to the cluster: {} {} -> {} {}",
                        endpoint,
                        shown,
                        status,
                        v
                    );
                }
                Ok(())
            },
        )
        .unwrap();
    // The generator mostly produces bad requests: the property was exercised.
    let rejected = rejected.load(Ordering::SeqCst);
    assert!(rejected > 200, "only {rejected} rejections");
    drop(env);
    rt.shutdown_background();
}
