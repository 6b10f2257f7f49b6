//! The pinned scenarios of the later sources (instagram, whatsapp, viber): connect, re-check,
//! disconnect, connect again and delete, with the exact Kubernetes API and provider calls.

use std::sync::Arc;

use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const WA_USER_TOKEN: &str = "EAA-whatsapp-user-token";
const VIBER_TOKEN: &str = "viber-bot-auth-token-0123";

/// The Kubernetes calls of a connect again (the claim is still the Channel's; its record was
/// deleted at the disconnect).
const RECONNECT_API: [&str; 9] = [
    CLAIM_GET,
    RECORD_GET,
    CREDENTIALS,
    "POST records",
    ENTRY_GET,
    "POST entries",
    ENTRY_PATCH,
    "PATCH channel/status",
    "POST events",
];

/// The Kubernetes calls after `UNDO_API` of a disconnect (`connected: false`).
const DISCONNECT_REST: [&str; 3] = [
    "PATCH channel/status",
    "DELETE records/channel",
    "POST events",
];

/// The Kubernetes calls after `UNDO_API` of deleting a connected channel (deletionPolicy
/// Disconnect): the claim is released after the provider call.
const DELETE_REST: [&str; 6] = [
    "PATCH channel/status",
    "DELETE records/channel",
    "POST events",
    "GET secrets",
    CLAIM_DELETE,
    "PATCH channel",
];

/// A Scenario of Channel `ns/shop` with `spec` (its credentials in Secret `shop-tok`, key
/// `token`, holding `token`), providers from `flags` calling `provider`.
fn scenario(spec: Value, token: &str, provider: MockServer, flags: &[&str]) -> Scenario {
    let fake = Arc::new(Fake::default());
    *fake.channel.lock().unwrap() = json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": "shop", "namespace": "ns", "uid": "uid-shop", "generation": 1,
            "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec
    });
    fake.secrets.lock().unwrap().insert(
        "shop-tok".into(),
        secret("shop-tok", "token", token, consenting()),
    );
    *fake.rv.lock().unwrap() = 10;
    // Every reconcile of a connected channel is due for a re-check.
    Scenario::build(fake, provider, std::time::Duration::ZERO, flags)
}

fn graph_flags(server: &MockServer) -> Vec<String> {
    [
        "--facebook-app-id",
        "app",
        "--facebook-app-secret",
        "app-secret",
        "--facebook-graph-url",
        &format!("{}/v24.0", server.uri()),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Walks the channel through its life and pins each step's calls: the finalizer, the connect
/// (`connect`, its effect recorded and made, its token kept in the record), a re-check
/// (`recheck`; every reconcile is due for one), the disconnect (`undo`), a connect again, and
/// the deletion (`undo` once more). Returns the status the connect wrote.
async fn life(s: &mut Scenario, connect: &[&str], recheck: &[&str], undo: &[&str]) -> Value {
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    s.provider(&[]).await;
    s.reconcile().await.unwrap();
    let calls = s.api(&CONNECT_API);
    s.provider(connect).await;
    assert_eq!(summary(&calls[8].body), ("True/Connected".into(), vec![]));
    let status = calls[8].body["status"].clone();
    // Due for a re-check: re-checked with the record's token, not connected again.
    s.reconcile().await.unwrap();
    // The same names and numbers: no status write.
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(recheck).await;

    s.edit(|c| {
        c["spec"]["connected"] = false.into();
        c["metadata"]["generation"] = 2.into();
    });
    s.reconcile().await.unwrap();
    s.api(&undo_then(&DISCONNECT_REST));
    s.provider(undo).await;
    // At rest: nothing more at the provider.
    s.reconcile().await.unwrap();
    s.provider(&[]).await;
    s.fake.take();

    s.edit(|c| {
        c["spec"]["connected"] = true.into();
        c["metadata"]["generation"] = 3.into();
    });
    s.reconcile().await.unwrap();
    s.api(&RECONNECT_API);
    s.provider(connect).await;

    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&undo_then(&DELETE_REST));
    s.provider(undo).await;
    status
}

#[tokio::test]
async fn instagram_connects_through_its_linked_page() {
    // The page 1001 of the Facebook scenarios is the account's linked page.
    let graph = graph(200).await;
    let flags = graph_flags(&graph);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s = scenario(
        json!({"source": "instagram", "sourceChannelId": "17841400000000001",
            "instagram": {"pageId": "1001"},
            "credentialsSecretRef": {"name": "shop-tok", "key": "token"}}),
        USER_TOKEN,
        graph,
        &flags,
    );
    let status = life(
        &mut s,
        &CONNECT,
        &[DEBUG_TOKEN, "GET /v24.0/1001"],
        &["DELETE /v24.0/1001/subscribed_apps"],
    )
    .await;
    assert_eq!(status["pageName"], "Shop");
    assert_eq!(
        status["connectedWith"],
        "instagram/17841400000000001;secret=shop-tok/token@5"
    );
}

async fn whatsapp_graph() -> MockServer {
    let server = MockServer::start().await;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", WA_USER_TOKEN))
        .respond_with(ok(json!({"access_token": "EAA-long-lived"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/106540352242922"))
        .and(query_param("access_token", "EAA-long-lived"))
        .respond_with(ok(json!({"display_phone_number": "+49 30 1234567",
            "verified_name": "Shop GmbH", "quality_rating": "GREEN"})))
        .mount(&server)
        .await;
    for verb in ["POST", "DELETE"] {
        Mock::given(method(verb))
            .and(path("/v24.0/102290129340398/subscribed_apps"))
            .and(query_param("access_token", "EAA-long-lived"))
            .respond_with(ok(json!({"success": true})))
            .mount(&server)
            .await;
    }
    debug_token_valid(&server).await;
    server
}

fn whatsapp_spec() -> Value {
    json!({"source": "whatsapp", "sourceChannelId": "106540352242922",
        "whatsapp": {"businessAccountId": "102290129340398"},
        "credentialsSecretRef": {"name": "shop-tok", "key": "token"}})
}

#[tokio::test]
async fn whatsapp_reads_its_number_and_subscribes_its_business_account() {
    let graph = whatsapp_graph().await;
    let flags = graph_flags(&graph);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s = scenario(whatsapp_spec(), WA_USER_TOKEN, graph, &flags);
    let status = life(
        &mut s,
        &[
            "GET /v24.0/oauth/access_token",
            "GET /v24.0/106540352242922",
            DEBUG_TOKEN,
            "POST /v24.0/102290129340398/subscribed_apps",
        ],
        &[DEBUG_TOKEN, "GET /v24.0/106540352242922"],
        &["DELETE /v24.0/102290129340398/subscribed_apps"],
    )
    .await;
    assert_eq!(status["displayPhoneNumber"], "+49 30 1234567");
    assert_eq!(status["verifiedName"], "Shop GmbH");
    assert_eq!(status["qualityRating"], "GREEN");
    let all = serde_json::to_string(&status).unwrap();
    assert!(!all.contains(WA_USER_TOKEN) && !all.contains("EAA-long-lived"));
}

/// Edits the one effect entry of the fake API server.
fn edit_entry(s: &Scenario, f: impl FnOnce(&mut Vec<Value>)) {
    let mut leases = s.fake.claims.lock().unwrap();
    let entry = leases
        .iter_mut()
        .find(|(name, _)| name.starts_with("effect-"))
        .map(|(_, l)| l)
        .expect("the entry");
    let holders = &mut entry["metadata"]["annotations"]["airy.co/holders"];
    let mut list: Vec<Value> = serde_json::from_str(holders.as_str().unwrap()).unwrap();
    f(&mut list);
    *holders = serde_json::to_string(&list).unwrap().into();
}

#[tokio::test]
async fn whatsapp_keeps_the_business_account_subscribed_while_another_channel_holds_it() {
    let graph = whatsapp_graph().await;
    let flags = graph_flags(&graph);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s = scenario(whatsapp_spec(), WA_USER_TOKEN, graph, &flags);
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    s.fake.take();
    s.provider(&[
        "GET /v24.0/oauth/access_token",
        "GET /v24.0/106540352242922",
        DEBUG_TOKEN,
        "POST /v24.0/102290129340398/subscribed_apps",
    ])
    .await;
    // Another number of the same business account connected with the same app holds it too.
    let other = json!({"uid": "uid-other", "namespace": "team-b", "name": "other"});
    edit_entry(&s, |holders| holders.push(other.clone()));
    s.edit(|c| {
        c["spec"]["connected"] = false.into();
        c["metadata"]["generation"] = 2.into();
    });
    s.reconcile().await.unwrap();
    // Released: the other still holds it, so nothing at the provider.
    s.api(&[
        RECORD_GET,
        CLAIM_GET,
        ENTRY_GET,
        ENTRY_PATCH,
        "PATCH channel/status",
        "DELETE records/channel",
        "POST events",
    ]);
    s.provider(&[]).await;
    // Connected again: it joins the entry, made by the other, without a provider call but the
    // proof (the token exchanged, the number read).
    s.edit(|c| {
        c["spec"]["connected"] = true.into();
        c["metadata"]["generation"] = 3.into();
    });
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        "POST records",
        ENTRY_GET,
        ENTRY_PATCH,
        "PATCH channel/status",
        "POST events",
    ]);
    assert_eq!(calls[6].body["status"]["effects"][0]["origin"], "Made");
    s.provider(&[
        "GET /v24.0/oauth/access_token",
        "GET /v24.0/106540352242922",
        DEBUG_TOKEN,
    ])
    .await;
    // Once the other has left, the deletion of the last holder unsubscribes.
    edit_entry(&s, |holders| holders.retain(|h| *h != other));
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&undo_then(&DELETE_REST));
    s.provider(&["DELETE /v24.0/102290129340398/subscribed_apps"])
        .await;
}

#[tokio::test]
async fn viber_reads_its_account_and_points_then_clears_its_webhook() {
    let server = MockServer::start().await;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(method("POST"))
        .and(path("/pa/get_account_info"))
        .respond_with(ok(json!({"status": 0, "id": "pa:54698754",
            "name": "Shop Bot", "icon": "https://media.viber.example/i.jpg"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/pa/set_webhook"))
        .respond_with(ok(json!({"status": 0, "status_message": "ok"})))
        .mount(&server)
        .await;
    let url = server.uri();
    let flags = [
        "--viber-api-url",
        url.as_str(),
        "--viber-webhook-url",
        "https://airy.example/viber",
    ];
    let mut s = scenario(
        json!({"source": "viber", "sourceChannelId": "pa:54698754",
            "credentialsSecretRef": {"name": "shop-tok", "key": "token"}}),
        VIBER_TOKEN,
        server,
        &flags,
    );
    let status = life(
        &mut s,
        &["POST /pa/get_account_info", "POST /pa/set_webhook"],
        &["POST /pa/get_account_info"],
        &["POST /pa/set_webhook"],
    )
    .await;
    assert_eq!(status["pageName"], "Shop Bot");
    // The webhook bodies: pointed at connect, cleared at disconnect and deletion.
    let bodies: Vec<Value> = s
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/pa/set_webhook")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let pointed =
        json!({"url": "https://airy.example/viber", "send_name": true, "send_photo": true});
    let cleared = json!({"url": ""});
    assert_eq!(bodies, [pointed.clone(), cleared.clone(), pointed, cleared]);
}

/// A source whose connect calls no provider (the chat plugin, Google): the claim and one status
/// write — no connect-attempt record (nothing to undo) and no Event (nothing beyond the status).
#[tokio::test]
async fn a_connect_without_a_provider_call_writes_the_status_once_and_no_event() {
    for source in ["chat_plugin", "google"] {
        let provider = MockServer::start().await;
        let spec = json!({"source": source, "sourceChannelId": "site-1", "name": "Shop"});
        let mut s = scenario(spec, "unused", provider, &[]);
        s.reconcile().await.unwrap();
        s.api(&["PATCH channel"]);
        s.reconcile().await.unwrap();
        let calls = s.api(&[CLAIM_GET, CLAIM_POST, "PATCH channel/status"]);
        assert_eq!(
            summary(&calls[2].body),
            ("True/Connected".into(), vec![]),
            "{source}"
        );
        assert!(calls[2].body["status"].get("connectAttempted").is_none());
        s.provider(&[]).await;
        // Connected and at rest: the next reconcile writes nothing.
        s.reconcile().await.unwrap();
        s.api(&[CLAIM_GET]);
    }
}
