//! What Airy's real clients send is accepted, and what they are told names no Secret: an empty
//! `image_url` means no image, and a failed connect's answer keeps Secret names (and with them a
//! digest of the token) in the cluster.

mod support;

use kube::api::PostParams;
use serde_json::json;
use support::*;

/// The `spec.imageUrl` of the one Channel.
async fn stored_image(env: &Env) -> Option<String> {
    let stored = env
        .channels()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(stored.len(), 1);
    stored[0].spec.image_url.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_image_url_means_no_image() {
    let env = Env::with_api().await;
    // Airy's connect forms send "" when no image is given.
    let (s, ch) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "website-identifier-42", "image_url": ""}),
        )
        .await;
    assert_eq!(s, 200, "{ch}");
    assert_eq!(ch["id"], PLUGIN_ID);
    assert_eq!(ch["metadata"], json!({"name": "website-identifier-42"}));
    assert_eq!(stored_image(&env).await, None);
    // Given, then removed again by an update with "".
    let (s, v) = env
        .post(
            "channels.update",
            json!({"channel_id": PLUGIN_ID, "image_url": "https://example.org/i.png"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"]["image_url"], "https://example.org/i.png");
    let (s, v) = env
        .post(
            "channels.update",
            json!({"channel_id": PLUGIN_ID, "image_url": ""}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"], json!({"name": "website-identifier-42"}));
    assert_eq!(stored_image(&env).await, None);
    // Anything else that is not an http(s) URL is still refused.
    let (s, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "other-site", "image_url": " "}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_names_no_secret() {
    let env = Env::with_api().await;
    let page = page_id("taken");
    let id = channel_operator::channel_id::channel_id_string("facebook", &page);
    // Someone else's Secret where the operator would keep the page access token.
    let in_the_way = channel_operator::ownership::token_secret_name(&id);
    env.secrets()
        .create(
            &PostParams::default(),
            &secret(&in_the_way, "page_access_token", "not-ours"),
        )
        .await
        .unwrap();
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": page, "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    let m = message(&v);
    assert!(m.starts_with("Connect failed:"), "{m}");
    let credentials = channel_operator::ownership::credentials_secret_name(&id, PAGE_TOKEN);
    let digest = credentials.rsplit('-').next().unwrap();
    for named in [in_the_way.as_str(), &credentials, digest, "default/"] {
        assert!(!m.contains(named), "{named} in {m}");
    }
    // The Secret in the way is untouched; nothing of the failed connect is left.
    eventually(
        "the failed connect's Channel and Secret to be gone",
        || async {
            env.secret_names().await == vec![in_the_way.clone()]
                && env
                    .channels()
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .is_empty()
        },
    )
    .await;
}
