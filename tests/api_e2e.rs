//! Black-box tests over real HTTP: the channels API against the sandbox, the real controller and
//! a wiremock Graph API. Every row of the endpoint table in docs/api.md.

mod support;

use std::time::Duration;

use kube::api::ListParams;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn chat_plugin_lifecycle() {
    let env = Env::with_api().await;
    let (s, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "website-identifier-42", "image_url": "http://example.org/plugin_icon.jpeg"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": PLUGIN_ID, "source": "chat_plugin", "source_channel_id": "website-identifier-42",
            "connected": true, "metadata": {"name": "website-identifier-42", "image_url": "http://example.org/plugin_icon.jpeg"}})
    );
    // The Channel is named by its id, in --channels-namespace, and the controller reported Ready.
    let ch = env.channels().list(&ListParams::default()).await.unwrap();
    assert_eq!(ch.items.len(), 1);
    let c = &ch.items[0];
    assert_eq!(c.metadata.name.as_deref(), Some(PLUGIN_ID));
    assert_eq!(c.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(c.ready_condition().unwrap().status, "True");

    let (s, info) = env
        .post(
            "channels.info",
            json!({"channel_id": PLUGIN_ID.to_uppercase()}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(info, v);
    let (s, list) = env.post("channels.list", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(list, json!({"data": [v.clone()]}));

    // Update: new name, image unchanged.
    let (s, u) = env
        .post(
            "channels.update",
            json!({"channel_id": PLUGIN_ID, "name": "Our website"}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        u["metadata"],
        json!({"name": "Our website", "image_url": "http://example.org/plugin_icon.jpeg"})
    );
    assert_eq!(u["source_channel_id"], "website-identifier-42");
    eventually("info shows the update", || async {
        env.post("channels.info", json!({"channel_id": PLUGIN_ID}))
            .await
            .1["metadata"]["name"]
            == "Our website"
    })
    .await;
    let (s, u) = env
        .post(
            "channels.update",
            json!({"channel_id": PLUGIN_ID, "image_url": "https://example.org/new.png"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        u["metadata"],
        json!({"name": "Our website", "image_url": "https://example.org/new.png"})
    );

    // Disconnect, then again: 202.
    let (s, d) = env
        .post(
            "channels.chatplugin.disconnect",
            json!({"channel_id": PLUGIN_ID}),
        )
        .await;
    assert_eq!((s, d), (200, json!({})));
    let (s, d) = env
        .post(
            "channels.chat_plugin.disconnect",
            json!({"channel_id": PLUGIN_ID}),
        )
        .await;
    assert_eq!((s, d), (202, json!({})));
    let (s, v404) = env
        .post("channels.info", json!({"channel_id": PLUGIN_ID}))
        .await;
    assert_eq!(s, 404);
    assert!(message(&v404).contains("not found"));
    let (s, _) = env
        .post(
            "channels.update",
            json!({"channel_id": PLUGIN_ID, "name": "x"}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        env.post("channels.list", json!({})).await.1,
        json!({"data": []})
    );
    // The disconnected Channel stays in the cluster.
    let c = env
        .channels()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(!c.spec.connected);

    // Re-connect: same channel, connected again, no second Channel.
    let (s, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "website-identifier-42"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], PLUGIN_ID);
    assert_eq!(v["connected"], true);
    assert_eq!(v["metadata"]["name"], "website-identifier-42");
    assert_eq!(
        env.channels()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn google_and_twilio_connect_with_the_spec_ids_and_list_filtering() {
    let env = Env::with_api().await;
    let (s, g) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent"}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(
        g,
        json!({"id": GOOGLE_ID, "source": "google", "source_channel_id": "gbm-id", "connected": true,
            "metadata": {"name": "Agent"}})
    );
    let (s, sms) = env
        .post(
            "channels.twilio.sms.connect",
            json!({"phone_number": "+491234567", "name": "SMS", "image_url": "https://example.org/s.png"}),
        )
        .await;
    assert_eq!(s, 200, "{sms}");
    assert_eq!(sms["id"], SMS_ID);
    assert_eq!(sms["source"], "twilio.sms");
    assert_eq!(sms["source_channel_id"], "+491234567");
    assert_eq!(sms["metadata"]["image_url"], "https://example.org/s.png");
    let (s, wa) = env
        .post(
            "channels.twilio.whatsapp.connect",
            json!({"phone_number": "+491234567", "name": "WA"}),
        )
        .await;
    assert_eq!(s, 200, "{wa}");
    assert_eq!(wa["id"], WA_ID);
    assert_eq!(wa["source"], "twilio.whatsapp");
    assert_eq!(wa["source_channel_id"], "whatsapp:+491234567");

    // Idempotent: connecting again answers the same channel and creates nothing.
    let before = env.write_marks().await;
    let (s, again) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent"}),
        )
        .await;
    assert_eq!((s, &again), (200, &g));
    assert_eq!(env.write_marks().await, before);
    // A changed name updates that channel, still one Channel.
    let (s, renamed) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent 2"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(renamed["metadata"]["name"], "Agent 2");
    assert_eq!(
        env.channels()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    let (_, all) = env.post("channels.list", json!({})).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    let (_, only) = env
        .post("channels.list", json!({"source": "twilio.sms"}))
        .await;
    assert_eq!(only, json!({"data": [sms]}));
    let (s, none) = env.post_raw("channels.list", None, vec![], None).await;
    assert_eq!(s, 200);
    assert_eq!(none["data"].as_array().unwrap().len(), 3);

    // Disconnect: another source's channel, an unknown one, a bad id: 400.
    let (s, v) = env
        .post(
            "channels.twilio.sms.disconnect",
            json!({"channel_id": WA_ID}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = env
        .post(
            "channels.google.disconnect",
            json!({"channel_id": PLUGIN_ID}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .post(
            "channels.google.disconnect",
            json!({"channel_id": "gbm-id"}),
        )
        .await;
    assert_eq!(s, 400);
    for (endpoint, id) in [
        ("channels.google.disconnect", GOOGLE_ID),
        ("channels.twilio.sms.disconnect", SMS_ID),
        ("channels.twilio.whatsapp.disconnect", WA_ID),
    ] {
        assert_eq!(
            env.post(endpoint, json!({"channel_id": id})).await,
            (200, json!({}))
        );
        assert_eq!(
            env.post(endpoint, json!({"channel_id": id})).await,
            (202, json!({}))
        );
    }
    assert_eq!(
        env.post("channels.list", json!({})).await.1,
        json!({"data": []})
    );
}

#[tokio::test]
async fn cluster_failures_are_retried_or_503() {
    let env = Env::with_api().await;
    let faults = env.sb.faults();
    // One failed create is retried.
    faults.fail_next("create", "channels", 1, 500);
    let (s, v) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // A cluster that keeps failing: 503 with a message, nothing written.
    faults.fail_next("create", "channels", 100, 500);
    let (s, v) = env
        .post("channels.chatplugin.connect", json!({"name": "site"}))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(message(&v).contains("Kubernetes API"), "{v}");
    faults.clear();
    // 503s (which kube's client retries too): still bounded.
    faults.fail_next("create", "channels", 1000, 503);
    let started = std::time::Instant::now();
    let (s, v) = env
        .post("channels.chatplugin.connect", json!({"name": "site"}))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(started.elapsed() < Duration::from_secs(12));
    faults.clear();
    faults.fail_next("patch", "channels", 100, 500);
    let (s, v) = env
        .post(
            "channels.google.disconnect",
            json!({"channel_id": GOOGLE_ID}),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    faults.clear();
    // Reads come from the cache: a failing cluster does not affect them.
    faults.fail_next("*", "*", 100, 500);
    let (s, v) = env
        .post("channels.info", json!({"channel_id": GOOGLE_ID}))
        .await;
    assert_eq!(s, 200, "{v}");
    faults.clear();
    // Watches dropped and history compacted: the cache recovers and sees new channels.
    faults.compact_history();
    faults.drop_watches();
    let (s, _) = env
        .post("channels.chatplugin.connect", json!({"name": "site-2"}))
        .await;
    assert_eq!(s, 200);
    let (_, list) = env.post("channels.list", json!({})).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn no_verdict_in_time_is_504_and_the_channel_stays() {
    // No controller: nobody reports a verdict.
    let env = Env::builder()
        .no_controller()
        .no_twilio()
        .api(&["--sync-timeout-seconds", "1"])
        .build()
        .await;
    let started = std::time::Instant::now();
    let (s, v) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent"}),
        )
        .await;
    assert_eq!(s, 504, "{v}");
    assert!(message(&v).contains("1 s"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let items = env
        .channels()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(items.len(), 1);
    assert!(items[0].spec.connected);
}

#[tokio::test]
async fn a_held_status_write_is_504_then_reconciled() {
    let env = Env::builder()
        .no_twilio()
        .api(&["--sync-timeout-seconds", "1"])
        .build()
        .await;
    // The controller's writes (finalizer, status) are held past the sync timeout.
    env.sb
        .faults()
        .hold_next("patch", "channels", 5, Duration::from_millis(1500));
    let (s, v) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-id", "name": "Agent"}),
        )
        .await;
    assert_eq!(s, 504, "{v}");
    // The channel stays and the controller finishes: it shows up connected.
    eventually("the channel is reconciled", || async {
        env.post("channels.info", json!({"channel_id": GOOGLE_ID}))
            .await
            .0
            == 200
    })
    .await;
}

#[tokio::test]
async fn auth_over_http() {
    let secret = "jwt-secret-1";
    let env = Env::builder()
        .no_controller()
        .api(&["--api-tokens", "static-1", "--jwt-secret", secret])
        .build()
        .await;
    let list = |auth: Option<String>| {
        let env = &env;
        async move {
            env.post_raw(
                "channels.list",
                Some("application/json"),
                b"{}".to_vec(),
                auth.as_deref(),
            )
            .await
        }
    };
    let (s, v) = list(None).await;
    assert_eq!(s, 403);
    assert!(message(&v).contains("Bearer"));
    assert_eq!(list(Some("Bearer wrong".into())).await.0, 403);
    assert_eq!(list(Some("Bearer static-1".into())).await.0, 200);
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"user_id": "user-1"}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(list(Some(format!("Bearer {jwt}"))).await.0, 200);
    // Writes are refused before they reach the cluster.
    let before = env.write_marks().await;
    let (s, _) = env
        .post_raw(
            "channels.chatplugin.connect",
            Some("application/json"),
            br#"{"name":"site"}"#.to_vec(),
            Some("Bearer nope"),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(env.write_marks().await, before);
    let r = env
        .http
        .get(format!("{}/healthz", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_requests_over_http_get_json_4xx_and_write_nothing() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    let before = env.write_marks().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(65 * 1024));
    // (endpoint, content type, body, expected status, word in the message)
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "channels.chatplugin.connect",
            Some("application/json"),
            big.into_bytes(),
            413,
            "64 KiB",
        ),
        (
            "channels.chatplugin.connect",
            Some("text/plain"),
            br#"{"name":"a"}"#.to_vec(),
            415,
            "Content-Type",
        ),
        (
            "channels.chatplugin.connect",
            None,
            br#"{"name":"a"}"#.to_vec(),
            415,
            "Content-Type",
        ),
        (
            "channels.chatplugin.connect",
            Some("application/json"),
            b"{\"name\":".to_vec(),
            400,
            "JSON",
        ),
        (
            "channels.chatplugin.connect",
            Some("application/json"),
            vec![],
            400,
            "missing",
        ),
        (
            "channels.google.connect",
            Some("application/json"),
            br#"{"gbm_id":7,"name":"a"}"#.to_vec(),
            400,
            "gbm_id",
        ),
        (
            "channels.twilio.sms.connect",
            Some("application/json"),
            br#"{"phone_number":"+49 1234","name":"a"}"#.to_vec(),
            400,
            "phone_number",
        ),
        (
            "channels.update",
            Some("application/json"),
            br#"{"channel_id":"x"}"#.to_vec(),
            400,
            "channel_id",
        ),
        (
            "channels.nope",
            Some("application/json"),
            b"{}".to_vec(),
            404,
            "endpoint",
        ),
    ];
    for (path, ct, body, want, needle) in cases {
        let (s, v) = env.post_raw(path, ct, body, None).await;
        assert_eq!(s, want, "{path}: {v}");
        assert!(message(&v).contains(needle), "{path}: {v}");
    }
    let resp = env
        .http
        .get(format!("{}/channels.info", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let v: Value = resp.json().await.unwrap();
    assert!(message(&v).contains("method"));
    assert_eq!(env.write_marks().await, before);
}
