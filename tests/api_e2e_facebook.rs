//! Black-box tests over real HTTP of the Facebook endpoints: connect (the page token kept in a
//! Secret the Channel owns), a provider failure, explore's paging, and a reconnect with a new
//! token — against the sandbox, the real controller and a wiremock Graph API (docs/api.md).

mod support;

use kube::api::ListParams;
use serde_json::json;
use support::*;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

async fn mount_facebook(env: &Env, page_id: &str) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", PAGE_TOKEN))
        .and(query_param("client_id", APP_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": LONG_TOKEN})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{page_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": page_id,
            "name_with_location_descriptor": "My Page (Berlin)",
            "access_token": PAGE_ACCESS,
            "picture": {"data": {"url": "https://example.org/p.png"}},
            "is_webhooks_subscribed": false
        })))
        .mount(&env.graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .and(query_param("access_token", PAGE_ACCESS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&env.graph)
        .await;
}

#[tokio::test]
async fn facebook_connect_stores_the_token_in_an_owned_secret_and_disconnects() {
    let env = Env::with_api().await;
    mount_facebook(&env, "100000000001").await;
    Mock::given(method("DELETE"))
        .and(path("/v24.0/100000000001/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Name and image default to the page's.
    assert_eq!(
        v,
        json!({"id": FB_ID, "source": "facebook", "source_channel_id": "100000000001", "connected": true,
            "metadata": {"name": "My Page (Berlin)", "image_url": "https://example.org/p.png"}})
    );
    no_secret(&v);
    let ch = env
        .channels()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let r = ch.spec.credentials_secret_ref.clone().unwrap();
    assert!(
        r.name.starts_with(&format!("{FB_ID}-page-token-")),
        "{}",
        r.name
    );
    assert_eq!(r.key, "page_token");
    let secret = env.secrets().get(&r.name).await.unwrap();
    assert_eq!(
        secret.data.as_ref().unwrap()["page_token"].0,
        PAGE_TOKEN.as_bytes()
    );
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "Channel");
    assert_eq!(Some(&owner.uid), ch.metadata.uid.as_ref());
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "channel-operator"
    );
    // Declared name and image win over the page's.
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN, "name": "Shop", "image_url": "https://example.org/shop.png"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["metadata"],
        json!({"name": "Shop", "image_url": "https://example.org/shop.png"})
    );

    let (s, v) = env
        .post("channels.facebook.disconnect", json!({"channel_id": FB_ID}))
        .await;
    assert_eq!((s, v), (200, json!({})));
    let (s, _) = env
        .post("channels.facebook.disconnect", json!({"channel_id": FB_ID}))
        .await;
    assert_eq!(s, 202);
}

#[tokio::test]
async fn facebook_provider_failure_is_500_and_nothing_is_kept() {
    let env = Env::with_api().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
        })))
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("Invalid OAuth access token."), "{v}");
    assert!(message(&v).contains("400"), "{v}");
    no_secret(&v);
    eventually("the failed channel and its Secret are gone", || async {
        let (_, _, channels, secrets) = env.write_marks().await;
        channels == 0 && secrets == 0
    })
    .await;
    let (s, _) = env
        .post("channels.info", json!({"channel_id": FB_ID}))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn facebook_explore_follows_paging_and_marks_connected_pages() {
    let env = Env::with_api().await;
    mount_facebook(&env, "100000000001").await;
    let next = format!("{}/v24.0/me/accounts-page-2", env.graph.uri());
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .and(query_param("access_token", AUTH_TOKEN))
        .and(query_param(
            "fields",
            "id,name_with_location_descriptor,access_token,picture,is_webhooks_subscribed",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                {"id": "100000000001", "name_with_location_descriptor": "My Page (Berlin)",
                 "access_token": "pa1", "picture": {"data": {"url": "https://example.org/p.png"}}},
                {"id": "p2", "name_with_location_descriptor": "Second", "access_token": "pa2"}
            ],
            "paging": {"next": next}
        })))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts-page-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "p3", "name_with_location_descriptor": "Third", "access_token": "pa3",
                      "picture": {"data": {"url": "https://example.org/3.png"}}}]
        })))
        .mount(&env.graph)
        .await;
    let (s, _) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .post(
            "channels.facebook.explore",
            json!({"auth_token": AUTH_TOKEN}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"data": [
            {"page_id": "100000000001", "name": "My Page (Berlin)", "image_url": "https://example.org/p.png", "connected": true},
            {"page_id": "p2", "name": "Second", "connected": false},
            {"page_id": "p3", "name": "Third", "image_url": "https://example.org/3.png", "connected": false}
        ]})
    );
    no_secret(&v);
    // A provider failure: 500 with Facebook's status and message, never the token.
    env.graph.reset().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Error validating access token {AUTH_TOKEN}"), "code": 190}
        })))
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.explore",
            json!({"auth_token": AUTH_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("401"), "{v}");
    assert!(message(&v).contains("Error validating access token"), "{v}");
    no_secret(&v);
}

#[tokio::test]
async fn facebook_reconnect_with_a_new_token_replaces_the_secret() {
    let env = Env::with_api().await;
    // Any page token exchanges, except "bad-token".
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", "bad-token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Token expired", "code": 190}
        })))
        .with_priority(1)
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": LONG_TOKEN})))
        .with_priority(5)
        .mount(&env.graph)
        .await;
    mount_facebook(&env, "100000000001").await;
    let connect = |token: &'static str| {
        let env = &env;
        async move {
            env.post(
                "channels.facebook.connect",
                json!({"page_id": "100000000001", "page_token": token}),
            )
            .await
        }
    };
    let (s, v) = connect(PAGE_TOKEN).await;
    assert_eq!(s, 200, "{v}");
    let ref_of = || async {
        env.channels()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .remove(0)
            .spec
            .credentials_secret_ref
            .unwrap()
            .name
    };
    let first = ref_of().await;
    let (s, v) = connect("EAAB-page-token-2").await;
    assert_eq!(s, 200, "{v}");
    let second = ref_of().await;
    assert_ne!(first, second);
    assert_eq!(
        env.secrets().get(&second).await.unwrap().data.unwrap()["page_token"].0,
        b"EAAB-page-token-2"
    );
    eventually("the old page-token Secret is deleted", || async {
        env.secrets().get_opt(&first).await.unwrap().is_none()
    })
    .await;
    // A failing re-connect of an existing channel: 500, the channel stays.
    let (s, v) = connect("bad-token").await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("Token expired"), "{v}");
    assert!(!v.to_string().contains("bad-token"), "{v}");
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

/// Seen in CI when the API adopted the page-token Secret after creating the Channel: the new
/// resourceVersion made the controller connect a second time. The API now creates the Channel
/// disconnected, writes the Secret already owned by it (the API may create Secrets and nothing
/// else), then connects it: the controller sees the Channel connected only with its Secret as
/// written, and connects the page once.
#[tokio::test]
async fn the_page_is_connected_once_with_its_secret_as_written() {
    let env = Env::with_api().await;
    mount_facebook(&env, "100000000001").await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let ch = env
        .channels()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let name = ch.spec.credentials_secret_ref.unwrap().name;
    let secret = env.secrets().get(&name).await.unwrap();
    let labels = secret.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["airy.co/channel-uid"],
        ch.metadata.uid.clone().unwrap()
    );
    assert_eq!(
        secret.metadata.annotations.as_ref().unwrap()["airy.co/written-at-generation"],
        "1",
        "written while the Channel was created disconnected"
    );
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.block_owner_deletion, None);
    // The controller has seen everything (watch, reconcile) well within this.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let subscribes = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v24.0/me/subscribed_apps")
        .count();
    assert_eq!(subscribes, 1, "the page is subscribed once");
    // A second connect with the same token answers at once.
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN, "name": "Shop"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Its create found the Secret (409) and changed nothing.
    let again = env.secrets().get(&name).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        secret.metadata.resource_version
    );
}
