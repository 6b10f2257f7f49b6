//! The status a Channel reports, end to end: a duplicate and missing credentials, kstatus
//! conformance (what Flux and Argo CD read in each state), a Secret the operator does not own, and
//! a connect whose provider outcome is unknown. Same harness as `controller_e2e`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_claimant_keeps_the_channel_and_hands_over_when_deleted() {
    let mut env = Env::new(&[]).await;
    env.fake_twilio_number("+4915550001", "PN7", 2, 1).await;
    env.start_controller().await;
    env.apply(&channel_yaml("first", "twilio.sms", "+4915550001", ""))
        .await;
    env.wait_ready("first").await;
    // "first" holds the claim of the number: "second", whenever it is created, is a duplicate.
    env.apply(&channel_yaml("second", "twilio.sms", "+4915550001", ""))
        .await;
    let v = env
        .channel_until("second", "Duplicate", |v| cond(v, "reason") == "Duplicate")
        .await;
    assert_eq!(cond(&v, "status"), "False");
    assert_eq!(v["status"]["connected"], false);
    assert!(
        cond(&v, "message")
            .as_str()
            .unwrap()
            .contains("default/first"),
        "{v:#}"
    );
    // Deleting the owner disconnects it and releases the claim; the duplicate claims the number
    // and connects (connect call number 2).
    env.kubectl_ok(&["delete", "channel", "first", KUBECTL_TIMEOUT], None)
        .await;
    env.gone("channel", "first").await;
    env.wait_ready("second").await;
    let v = env.get("second").await;
    assert_eq!(cond(&v, "reason"), "Connected");
    assert_eq!(v["status"]["connected"], true);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_reported_until_the_secret_appears() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("late", 1, 0).await;
    env.start_controller().await;
    env.apply(&channel_yaml(
        "late",
        "facebook",
        "late",
        &fb_extra("late-tok"),
    ))
    .await;
    let v = env
        .channel_until("late", "CredentialsMissing", |v| {
            cond(v, "reason") == "CredentialsMissing"
        })
        .await;
    assert!(cond(&v, "message")
        .as_str()
        .unwrap()
        .contains("default/late-tok"));
    env.apply(&secret_yaml("late-tok", "page_token", &token))
        .await;
    env.wait_ready("late").await;
    env.finish().await;
}

/// kstatus's verdict on a Channel, by the rules of its documentation: deletion first, then a
/// status that describes an older generation, then `Reconciling`, then `Stalled`; otherwise the
/// resource is current. Absent and `False` conditions count alike.
fn kstatus(v: &serde_json::Value) -> &'static str {
    let is_true = |ty: &str| {
        v["status"]["conditions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["type"] == ty && c["status"] == "True"))
    };
    if v["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if v["status"]["observedGeneration"] != v["metadata"]["generation"]
        || is_true("Reconciling")
    {
        "InProgress"
    } else if is_true("Stalled") {
        "Failed"
    } else {
        "Current"
    }
}

/// The value of condition `ty`'s `field`.
fn condition<'a>(v: &'a serde_json::Value, ty: &str, field: &str) -> &'a serde_json::Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == ty))
        .map(|c| &c[field])
        .unwrap_or(&serde_json::Value::Null)
}

/// A Secret in the Channel's namespace with the name an earlier version kept its token under
/// (`<channel>-facebook-token`) is no one's business of the operator's any more: the Channel
/// connects (its token is kept in its record in the state namespace), and the Secret is never
/// read as a token, modified or deleted — not at connect, disconnect or deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_operator_does_not_own_is_never_taken_over() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("billing-page", 1, 1).await;
    env.start_controller().await;
    // An unrelated Secret with the name the token Secret had.
    env.apply(&secret_yaml(
        "billing-facebook-token",
        "page_access_token",
        "unrelated-value",
    ))
    .await;
    let before = env
        .kubectl_ok(
            &["get", "secret", "billing-facebook-token", "-o", "json"],
            None,
        )
        .await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    env.apply(&secret_yaml("billing-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "billing",
        "facebook",
        "billing-page",
        &fb_extra("billing-tok"),
    ))
    .await;
    let v = env
        .channel_until("billing", "Connected", |v| cond(v, "reason") == "Connected")
        .await;
    assert_eq!(kstatus(&v), "Current", "{v:#}");
    let unchanged = |after: &str| {
        let after: serde_json::Value = serde_json::from_str(after).unwrap();
        assert_eq!(after["data"], before["data"]);
        assert_eq!(
            after["metadata"]["resourceVersion"],
            before["metadata"]["resourceVersion"]
        );
        assert!(after["metadata"]["ownerReferences"].is_null(), "{after:#}");
    };
    let get = || async {
        env.kubectl_ok(
            &["get", "secret", "billing-facebook-token", "-o", "json"],
            None,
        )
        .await
    };
    unchanged(&get().await);
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "billing",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    env.channel_until("billing", "Disconnected", |v| {
        cond(v, "reason") == "Disconnected" && cond(v, "status") == "True"
    })
    .await;
    unchanged(&get().await);
    env.kubectl_ok(&["delete", "channel", "billing", KUBECTL_TIMEOUT], None)
        .await;
    env.gone("channel", "billing").await;
    unchanged(&get().await);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_with_an_unknown_outcome_is_undone_when_the_channel_is_deleted() {
    let mut env = Env::new(&[]).await;
    // Graph applies the subscription but answers 500, every time.
    let subscribed = Arc::new(AtomicBool::new(false));
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(SubscribeThen500(subscribed.clone()))
        .with_priority(1)
        .named("subscribe answering 500")
        .mount(&env.graph)
        .await;
    // The unsubscribe (with the page access token) must come exactly once, at deletion.
    let token = env.fake_page("unsure", 0, 1).await;
    env.start_controller().await;
    env.apply(&secret_yaml("unsure-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "unsure",
        "facebook",
        "unsure",
        &fb_extra("unsure-tok"),
    ))
    .await;
    let v = env
        .channel_until("unsure", "the failed connect in the status", |v| {
            cond(v, "reason") == "ProviderError"
        })
        .await;
    assert!(subscribed.load(Ordering::SeqCst));
    assert_eq!(v["status"]["connected"], false);
    // Retried: in progress for kstatus, not failed.
    assert_eq!(condition(&v, "Reconciling", "status"), "True", "{v:#}");
    assert_eq!(kstatus(&v), "InProgress", "{v:#}");
    // As the HTTP API does after a failed connect: delete the Channel.
    env.kubectl_ok(&["delete", "channel", "unsure", KUBECTL_TIMEOUT], None)
        .await;
    env.gone("channel", "unsure").await;
    env.finish().await;
}

/// A subscribe that takes effect at the provider, answered with a 500.
struct SubscribeThen500(Arc<AtomicBool>);

impl wiremock::Respond for SubscribeThen500 {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.store(true, Ordering::SeqCst);
        ResponseTemplate::new(500).set_body_json(serde_json::json!({"error": {"message": "An unexpected error has occurred", "type": "OAuthException", "code": 2}}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_every_channel_state_as_flux_would() {
    let mut env = Env::new(&[]).await;
    // Every exchange of this page's token fails: retried forever.
    let flaky_token = "EAAtok-flaky-user-page-token";
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", flaky_token))
        .respond_with(ResponseTemplate::new(503))
        .mount(&env.graph)
        .await;
    env.start_controller().await;
    env.apply(&channel_yaml("live", "google", "agent-1", ""))
        .await;
    env.apply(&channel_yaml(
        "parked",
        "chat_plugin",
        "site-1",
        "  connected: false\n",
    ))
    .await;
    env.apply(&channel_yaml(
        "nocreds",
        "facebook",
        "p-none",
        &fb_extra("absent"),
    ))
    .await;
    env.apply(&secret_yaml("flaky-tok", "page_token", flaky_token))
        .await;
    env.apply(&channel_yaml(
        "flaky",
        "facebook",
        "flaky",
        &fb_extra("flaky-tok"),
    ))
    .await;
    env.wait_ready("live").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.apply(&channel_yaml("dup", "google", "agent-1", ""))
        .await;

    let live = env
        .channel_until("live", "Connected", |v| cond(v, "reason") == "Connected")
        .await;
    assert_eq!(kstatus(&live), "Current", "{live:#}");
    let parked = env
        .channel_until("parked", "Disconnected", |v| {
            cond(v, "reason") == "Disconnected"
        })
        .await;
    assert_eq!(cond(&parked, "status"), "True");
    assert_eq!(kstatus(&parked), "Current", "{parked:#}");
    for (name, reason) in [("nocreds", "CredentialsMissing"), ("dup", "Duplicate")] {
        let v = env
            .channel_until(name, reason, |v| cond(v, "reason") == reason)
            .await;
        assert_eq!(kstatus(&v), "Failed", "{v:#}");
        assert_eq!(condition(&v, "Stalled", "reason"), reason, "{v:#}");
        assert_eq!(
            condition(&v, "Stalled", "observedGeneration"),
            &v["metadata"]["generation"]
        );
        assert!(condition(&v, "Reconciling", "status") != "True", "{v:#}");
    }
    let flaky = env
        .channel_until("flaky", "ProviderError", |v| {
            cond(v, "reason") == "ProviderError"
        })
        .await;
    assert_eq!(kstatus(&flaky), "InProgress", "{flaky:#}");
    assert_eq!(condition(&flaky, "Reconciling", "reason"), "ProviderError");

    // A fixed failure clears Stalled: the Secret appears and the channel connects.
    env.kubectl_ok(&["patch", "channel", "nocreds", "--type=merge", "-p", r#"{"spec":{"source":"facebook","credentialsSecretRef":{"name":"flaky-tok","key":"page_token"}}}"#], None).await;
    // A spec change is InProgress until the controller has observed it, then settles again.
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "live",
            "--type=merge",
            "-p",
            r#"{"spec":{"name":"Renamed"}}"#,
        ],
        None,
    )
    .await;
    let live = env
        .channel_until("live", "the new generation observed", |v| {
            v["status"]["observedGeneration"] == v["metadata"]["generation"]
        })
        .await;
    assert_eq!(kstatus(&live), "Current", "{live:#}");
    let v = env
        .channel_until("nocreds", "the retried connect", |v| {
            cond(v, "reason") == "ProviderError"
        })
        .await;
    assert_eq!(kstatus(&v), "InProgress", "{v:#}");
    assert!(condition(&v, "Stalled", "status") != "True", "{v:#}");
    // Deleting a channel whose disconnect cannot finish: Terminating, and the conditions say
    // why — the disconnect before deletion failed and is retried (Reconciling, not Stalled), so
    // a tool waiting on kstatus keeps waiting instead of reporting a failure. (The flaky token
    // never worked, so that Channel holds nothing: it goes at once.)
    env.kubectl_ok(&["delete", "channel", "flaky", KUBECTL_TIMEOUT], None)
        .await;
    env.gone("channel", "flaky").await;
    let stuck = env.fake_page("stuck", 1, 0).await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{}/subscribed_apps", page_id("stuck"))))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&env.graph)
        .await;
    env.apply(&secret_yaml("stuck-tok", "page_token", &stuck))
        .await;
    env.apply(&channel_yaml(
        "flaky",
        "facebook",
        "stuck",
        &fb_extra("stuck-tok"),
    ))
    .await;
    env.wait_ready("flaky").await;
    env.kubectl_ok(&["delete", "channel", "flaky", "--wait=false"], None)
        .await;
    let failed_disconnect = |v: &serde_json::Value| {
        condition(v, "Reconciling", "message")
            .as_str()
            .is_some_and(|m| m.starts_with("DisconnectBeforeDelete failed: facebook:"))
    };
    let v = env
        .channel_until("flaky", "the failed disconnect before deletion", |v| {
            v["metadata"]["deletionTimestamp"].is_string() && failed_disconnect(v)
        })
        .await;
    assert_eq!(kstatus(&v), "Terminating", "{v:#}");
    assert_eq!(condition(&v, "Reconciling", "status"), "True", "{v:#}");
    assert_eq!(
        condition(&v, "Reconciling", "reason"),
        "ProviderError",
        "{v:#}"
    );
    assert!(condition(&v, "Stalled", "status") != "True", "{v:#}");
    // Held by the finalizer, not by chance: a second later the Channel is still there, with
    // the operator's finalizer, still retrying the disconnect.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = env.get("flaky").await;
    assert_eq!(
        v["metadata"]["finalizers"],
        serde_json::json!([channel_operator::crd::FINALIZER]),
        "{v:#}"
    );
    assert!(failed_disconnect(&v), "{v:#}");
    assert_eq!(cond(&v, "status"), "False", "{v:#}");
    env.finish().await;
}
