//! The API router in process (tower `oneshot`), over a channel cache filled by hand and a
//! Kubernetes client that cannot connect: every answer here is decided before the cluster, and a
//! request that tried a write would answer 503.

mod support;

use support::router::*;

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
