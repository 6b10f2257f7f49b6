//! Instagram, WhatsApp Cloud API and Viber through the HTTP API when something is wrong: invalid
//! requests are 400 before anything touches the cluster; a provider that refuses is 500 with its
//! message (never a token) and nothing of the request is kept; and the controller reports the
//! same reasons as for today's sources.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WA_USER: &str = "EAAwa-user-token-do-not-leak";
const WA_LONG: &str = "EAAwa-long-lived-do-not-leak";
const VIBER_TOKEN: &str = "viber-bot-token-do-not-leak-0003";

/// The end of a test that wrote no Channel (so no status to check): no token in the logs.
fn no_token_logged(tokens: &[&str]) {
    let logs = log_text();
    for t in tokens {
        assert!(!logs.contains(t), "a token appears in the logs: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_400_naming_the_field_and_write_nothing() {
    let writes = Arc::new(AtomicUsize::new(0));
    let viber = MockServer::start().await;
    let url = viber.uri();
    let env = Env::builder()
        .no_twilio()
        .api(&["--viber-api-url", &url, "--viber-auth-token", VIBER_TOKEN])
        .count_api_writes(writes.clone())
        .build()
        .await;
    let token = "EAAB-page-token-1";
    for (endpoint, body, field) in [
        (
            "channels.instagram.connect",
            json!({"page_id": "1", "account_id": "my.account", "page_token": token}),
            "account_id",
        ),
        (
            "channels.instagram.connect",
            json!({"page_id": "../me", "account_id": "1", "page_token": token}),
            "page_id",
        ),
        (
            "channels.instagram.connect",
            json!({"page_id": "1", "account_id": "1"}),
            "page_token",
        ),
        (
            "channels.whatsapp.connect",
            json!({"phone_number_id": "+491234567", "user_token": token, "name": "x"}),
            "phone_number_id",
        ),
        (
            "channels.whatsapp.connect",
            json!({"phone_number_id": "1", "user_token": "two words", "name": "x"}),
            "user_token",
        ),
        (
            "channels.whatsapp.connect",
            json!({"phone_number_id": "1", "user_token": token}),
            "name",
        ),
        (
            "channels.viber.connect",
            json!({"image_url": "ftp://example.org/x.png"}),
            "image_url",
        ),
        (
            "channels.viber.disconnect",
            json!({"channel_id": "not-a-uuid"}),
            "channel_id",
        ),
    ] {
        let (status, v) = env.post(endpoint, body.clone()).await;
        assert_eq!(status, 400, "{endpoint} {body}: {v}");
        assert!(message(&v).contains(field), "{endpoint} {body}: {v}");
    }
    // Viber was not asked either: the request was refused first.
    assert!(viber.received_requests().await.unwrap().is_empty());
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    no_token_logged(&[token, VIBER_TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_number_the_token_cannot_read_is_500_and_nothing_is_kept() {
    let mut env = Env::with_api().await;
    env.tokens.extend([WA_USER, WA_LONG].map(String::from));
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": WA_LONG})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/106540352242922"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Unsupported get request. Object with ID '106540352242922' does not exist",
            "type": "GraphMethodException", "code": 100}})))
        // The controller retries a failed connect on its backoff (100 ms here) until the API's
        // undo deletes the Channel: on a loaded machine that is a second read, never a write.
        .expect(1..)
        .mount(&env.graph)
        .await;
    let (status, v) = env
        .post(
            "channels.whatsapp.connect",
            json!({"phone_number_id": "106540352242922", "user_token": WA_USER, "name": "Support"}),
        )
        .await;
    assert_eq!(status, 500, "{v}");
    let m = message(&v);
    assert!(m.contains("reading the WhatsApp number: HTTP 400"), "{v}");
    assert!(m.contains("does not exist"), "{v}");
    eventually("the failed channel and its Secrets are gone", || async {
        let (_, _, channels, secrets) = env.write_marks().await;
        channels == 0 && secrets == 0
    })
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viber_connect_is_503_without_the_apis_token_and_500_when_viber_refuses_it() {
    let viber = MockServer::start().await;
    let url = viber.uri();
    // Without --viber-auth-token: nothing to connect, nothing asked, nothing written.
    let writes = Arc::new(AtomicUsize::new(0));
    let env = Env::builder()
        .no_twilio()
        .api(&["--viber-api-url", &url])
        .count_api_writes(writes.clone())
        .build()
        .await;
    // The installation has no Viber bot: the documented 503 that says so, not a 500.
    let (status, v) = env.post("channels.viber.connect", json!({})).await;
    assert_eq!(status, 503, "{v}");
    assert!(message(&v).contains("no Viber bot"), "{v}");
    assert!(message(&v).contains("--viber-auth-token"), "{v}");
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    let asked = viber.received_requests().await.unwrap();
    assert!(
        asked.is_empty(),
        "Viber was asked without a token: {:?}",
        asked.iter().map(|r| r.url.path()).collect::<Vec<_>>()
    );
    drop(env);

    // Viber refuses the token: its status and message, never the token; nothing written.
    Mock::given(method("POST"))
        .and(path("/pa/get_account_info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": 2, "status_message": format!("invalidAuthToken: {VIBER_TOKEN}")})))
        .expect(1)
        .mount(&viber)
        .await;
    let writes = Arc::new(AtomicUsize::new(0));
    let mut env = Env::builder()
        .no_twilio()
        .api(&["--viber-api-url", &url, "--viber-auth-token", VIBER_TOKEN])
        .count_api_writes(writes.clone())
        .build()
        .await;
    env.tokens.push(VIBER_TOKEN.into());
    let (status, v) = env.post("channels.viber.connect", json!({})).await;
    assert_eq!(status, 500, "{v}");
    assert!(message(&v).contains("status 2: invalidAuthToken"), "{v}");
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    viber.verify().await;
    no_token_logged(&[VIBER_TOKEN]);
}

/// A Viber Channel whose token belongs to another account is InvalidCredentials and Stalled,
/// with no webhook set; an Instagram page whose token Graph refuses is InvalidCredentials too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stall_the_channel_with_the_reason_of_todays_sources() {
    let viber = MockServer::start().await;
    let url = viber.uri();
    let mut env = Env::builder()
        .no_twilio()
        .controller_args(&[
            "--viber-api-url",
            &url,
            "--viber-webhook-url",
            "https://hooks.example.org/viber",
        ])
        .build()
        .await;
    env.tokens.push(VIBER_TOKEN.into());
    Mock::given(method("POST"))
        .and(path("/pa/get_account_info"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"status": 0, "id": "pa:other-account", "name": "Someone else"}),
            ),
        )
        .mount(&viber)
        .await;
    Mock::given(method("POST"))
        .and(path("/pa/set_webhook"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": 0})))
        .expect(0)
        .mount(&viber)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Error validating access token: Session has expired",
            "type": "OAuthException", "code": 190}})))
        .mount(&env.graph)
        .await;
    env.apply(&secret_yaml("creds", "token", VIBER_TOKEN)).await;
    let extra = "  credentialsSecretRef:\n    name: creds\n    key: token\n";
    env.apply(&channel_yaml(
        "bot",
        "viber",
        "pa:5469875432398472639",
        extra,
    ))
    .await;
    let ig_extra = format!("{extra}  instagram:\n    pageId: \"100000000001\"\n");
    env.apply(&channel_yaml(
        "ig",
        "instagram",
        "17841400000000001",
        &ig_extra,
    ))
    .await;
    for (name, naming) in [("bot", "pa:other-account"), ("ig", "Session has expired")] {
        let v = env
            .channel_until(name, "stalled on its credentials", |v| {
                cond(v, "reason") == "InvalidCredentials"
            })
            .await;
        assert!(
            cond(&v, "message").as_str().unwrap().contains(naming),
            "{v}"
        );
        let stalled = v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Stalled" && c["status"] == "True");
        assert!(stalled, "{v}");
        assert_eq!(v["status"]["connected"], false);
    }
    viber.verify().await;
    env.finish().await;
}

/// A connect for a source the installation has not configured for the API's channels namespace
/// (no provider configuration admits it) answers 503 saying so, not 500, and keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_the_installation_is_not_configured_for_is_503() {
    use channel_operator::provider_config::{ClusterProviderConfig, ClusterProviderConfigSpec};
    let env = Env::builder().no_twilio().api(&[]).build().await;
    // A ClusterProviderConfig named default replaces the flags' configuration; this one admits
    // another namespace only, so none admits the API's.
    let config = ClusterProviderConfig::new(
        "default",
        ClusterProviderConfigSpec {
            namespaces: vec!["elsewhere".into()],
            ..Default::default()
        },
    );
    kube::Api::<ClusterProviderConfig>::all(env.sb.client())
        .create(&Default::default(), &config)
        .await
        .unwrap();
    let (status, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "5555", "page_token": "EAAB-unconfigured"}),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert!(
        message(&v).contains("no provider configuration admits namespace default"),
        "{v}"
    );
    let channels: kube::Api<channel_operator::crd::Channel> =
        kube::Api::namespaced(env.sb.client(), "default");
    eventually("nothing of the refused connect stays", || async {
        channels
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
}
