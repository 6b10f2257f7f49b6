//! Credentials by consent: a Channel uses the Secret its `credentialsSecretRef` names only when
//! the Secret carries the label `airy.co/credentials: "true"`. Rights to create Channels in a
//! namespace are no rights to its Secrets: a Channel pointing at another user's token is Stalled
//! without a provider call, reads like one pointing at nothing, cannot disconnect with that token,
//! and connects once someone who may write the Secret labels it. Same harness as
//! `controller_e2e`.

mod support;

use std::time::Duration;

use channel_operator::ownership::{CREDENTIALS_CONSENT, CREDENTIALS_LABEL};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use support::*;

/// Every request the fake Graph API received, as `METHOD path?query`.
async fn graph_requests(env: &Env) -> Vec<String> {
    env.graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect()
}

/// Channel `name`'s conditions and the notes of its Events, with `secret` (the name its spec
/// gives, which the user wrote) replaced: what the user who created it can learn.
async fn what_the_user_sees(env: &Env, name: &str, secret: &str) -> (Value, Vec<String>) {
    let v = env.get(name).await;
    let conditions: Vec<Value> = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["type"], c["status"], c["reason"], c["message"]]))
        .collect();
    let events: Api<Event> = Api::namespaced(env.sb.client(), "default");
    let mut notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            format!(
                "{} {} {}",
                e.reason.unwrap_or_default(),
                e.action.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect();
    notes.sort();
    let seen = serde_json::to_string(&conditions)
        .unwrap()
        .replace(secret, "SECRET");
    let notes = notes.iter().map(|n| n.replace(secret, "SECRET")).collect();
    (serde_json::from_str(&seen).unwrap(), notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_without_consent_is_never_used_and_reads_like_a_missing_one() {
    let mut env = Env::new(&[]).await;
    // Another user's valid page token: never exchanged, never subscribed.
    let victim = env.fake_page("victim", 0, 0).await;
    env.start_controller().await;
    env.apply(&unconsented_secret_yaml(
        "victim-tok",
        "page_token",
        &victim,
    ))
    .await;
    // A Secret that consents but lacks the key the Channel names.
    env.apply(&secret_yaml("keyless-tok", "other_key", "unrelated"))
        .await;
    for (name, secret, page) in [
        ("stolen", "victim-tok", "victim"),
        ("absent", "nothing-tok", "page-2"),
        ("keyless", "keyless-tok", "page-3"),
    ] {
        env.apply(&channel_yaml(name, "facebook", page, &fb_extra(secret)))
            .await;
    }
    let mut seen = vec![];
    for (name, secret) in [
        ("stolen", "victim-tok"),
        ("absent", "nothing-tok"),
        ("keyless", "keyless-tok"),
    ] {
        let v = env
            .channel_until(name, "Stalled", |v| {
                v["status"]["conditions"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|c| c["type"] == "Stalled" && c["status"] == "True")
                })
            })
            .await;
        assert_eq!(cond(&v, "reason"), "CredentialsMissing", "{v:#}");
        assert_eq!(v["status"]["connected"], false);
        eventually(format!("{name}'s Warning Event"), || async {
            !what_the_user_sees(&env, name, secret).await.1.is_empty()
        })
        .await;
        seen.push(what_the_user_sees(&env, name, secret).await);
    }
    // The condition and the Events say the same whether the Secret is absent, lacks the key, or
    // holds a valid token without consent.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let message = seen[0].0.to_string();
    assert!(
        message.contains(&format!(
            "{CREDENTIALS_LABEL}=\\\"{CREDENTIALS_CONSENT}\\\""
        )),
        "the message names the label to set: {message}"
    );
    // Retried with backoff meanwhile: still no call with anyone's token.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(graph_requests(&env).await, Vec::<String>::new());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelling_the_secret_lets_the_channel_connect() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("consented", 1, 1).await;
    env.start_controller().await;
    env.apply(&unconsented_secret_yaml("later-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "later",
        "facebook",
        "consented",
        &fb_extra("later-tok"),
    ))
    .await;
    env.channel_until("later", "CredentialsMissing", |v| {
        cond(v, "reason") == "CredentialsMissing"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(graph_requests(&env).await, Vec::<String>::new());
    // Whoever may write Secrets in the namespace gives consent.
    let label = format!("{CREDENTIALS_LABEL}={CREDENTIALS_CONSENT}");
    env.kubectl_ok(&["label", "secret", "later-tok", &label], None)
        .await;
    env.wait_ready("later").await;
    let v = env.get("later").await;
    assert_eq!(cond(&v, "reason"), "Connected", "{v:#}");
    assert_eq!(v["status"]["connected"], true);
    // And the rest of the lifecycle as usual: a disconnect undoes the subscription.
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    env.channel_until("later", "Disconnected", |v| {
        cond(v, "reason") == "Disconnected"
    })
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_never_uses_credentials_without_consent() {
    let mut env = Env::new(&[]).await;
    // The victim's page and token: no unsubscribe may happen with it.
    let victim = env.fake_page("target", 0, 0).await;
    // The attacker's own token for that page, which Graph fails to exchange (500): the connect
    // was attempted, its outcome unknown, and no token was kept.
    let junk = "EAA-attacker-own-token";
    env.tokens.push(junk.into());
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", junk))
        .respond_with(ResponseTemplate::new(500))
        .mount(&env.graph)
        .await;
    env.start_controller().await;
    env.apply(&unconsented_secret_yaml(
        "victim-tok",
        "page_token",
        &victim,
    ))
    .await;
    env.apply(&secret_yaml("own-tok", "page_token", junk)).await;
    env.apply(&channel_yaml(
        "flip",
        "facebook",
        "target",
        &fb_extra("own-tok"),
    ))
    .await;
    // Its own token failed at the proof: it holds nothing.
    env.channel_until("flip", "the proof failed", |v| {
        cond(v, "reason") == "ProviderError"
    })
    .await;
    // As an earlier version left a Channel whose connect had an unknown outcome, without a
    // record: the status says a connect was attempted.
    let api: kube::Api<channel_operator::crd::Channel> =
        kube::Api::namespaced(env.sb.client(), "default");
    let attempted = serde_json::json!({"status": {"connectAttempted": "facebook/attempted"}});
    api.patch_status(
        "flip",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&attempted),
    )
    .await
    .unwrap();
    // The attacker points the Channel at the victim's Secret and disconnects: undoing the
    // attempt would need a page token, and the only one named is not the attacker's to use.
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "flip",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false,"credentialsSecretRef":{"name":"victim-tok","key":"page_token"}}}"#,
        ],
        None,
    )
    .await;
    let v = env
        .channel_until("flip", "the disconnect refused", |v| {
            cond(v, "reason") == "CredentialsMissing"
                && cond(v, "message")
                    .as_str()
                    .is_some_and(|m| m.starts_with("Disconnect"))
        })
        .await;
    assert!(
        cond(&v, "message")
            .as_str()
            .unwrap()
            .contains("default/victim-tok"),
        "{v:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = graph_requests(&env).await;
    assert!(
        !calls.is_empty(),
        "the attacker's own connect was attempted"
    );
    for call in &calls {
        assert!(
            !call.contains(&victim),
            "the victim's token reached Graph: {call}"
        );
        assert!(!call.contains("subscribed_apps"), "{call}");
    }
    // The unsubscribe with the victim's token is expected 0 times (checked by finish).
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_connects_with_its_own_secret_and_no_other_channel_may_use_it() {
    let mut env = Env::builder().no_twilio().controller_later().build().await;
    let token = env.fake_page("api-page", 1, 0).await;
    env.start_controller().await;
    env.start_api(vec![], None).await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": page_id("api-page"), "page_token": token}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let ch = env.get(&id).await;
    let stored = ch["spec"]["credentialsSecretRef"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = env.secrets().get(&stored).await.unwrap();
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()[CREDENTIALS_LABEL],
        CREDENTIALS_CONSENT,
        "the API gives its credentials Secret consent"
    );
    let before = graph_requests(&env).await.len();
    // Someone with Channel rights in the API's namespace points at that Secret: it consents to be
    // its own Channel's credentials, not anyone's.
    env.apply(&channel_yaml(
        "copycat",
        "facebook",
        "other-page",
        &fb_extra(&stored),
    ))
    .await;
    env.channel_until("copycat", "CredentialsMissing", |v| {
        cond(v, "reason") == "CredentialsMissing"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(graph_requests(&env).await.len(), before);
    // The API's Channel stays connected.
    let ch = env.get(&id).await;
    assert_eq!(cond(&ch, "reason"), "Connected", "{ch:#}");
    env.finish().await;
}
