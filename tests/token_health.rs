//! Token health of Channels (README, "Token health"), issue #27's done-when: at every re-check
//! of a Facebook, Instagram or WhatsApp channel the controller asks Graph's `debug_token` about
//! the token the channel uses, and says what it found in `status.credentials`, the condition
//! `CredentialsHealthy`, a Warning Event and the credentials metrics — before the channel goes
//! dark where it can, and without a subscribe call while the token does not work.

mod support;

use std::time::Duration;

use channel_operator::crd::Source;
use serde_json::Value;
use support::token_fake::FakeToken;
use support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A connected Facebook Channel `name` (page `name`, subscribed exactly once) re-checked every
/// second, and its token as Graph's `debug_token` tells of it.
async fn connected_page(name: &str) -> (Env, FakeToken) {
    let mut env = Env::new(&["--resync-seconds", "1"]).await;
    let tokens = env.fake_page_token(name, 1, 1, 0).await;
    let token = FakeToken::mount(&env.graph, &tokens.page_access, Source::Facebook, "app-1").await;
    env.start_controller().await;
    env.apply(&secret_yaml(
        &format!("{name}-tok"),
        "page_token",
        &tokens.page_token,
    ))
    .await;
    env.apply(&channel_yaml(
        name,
        "facebook",
        name,
        &fb_extra(&format!("{name}-tok")),
    ))
    .await;
    env.wait_ready(name).await;
    (env, token)
}

/// A condition of the Channel (JSON form), `Null` when absent.
fn condition<'a>(v: &'a Value, ty: &str) -> &'a Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

fn says(v: &Value, ty: &str, status: &str, reason: &str) -> bool {
    let c = condition(v, ty);
    c["status"] == status && c["reason"] == reason
}

/// The Warning Events about Channel `name` with `reason`.
async fn warnings(env: &Env, name: &str, reason: &str) -> Vec<Value> {
    let events: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "events", "-n", "default", "-o", "json"], None)
            .await,
    )
    .unwrap();
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            // kubectl reads core/v1 Events: what the controller published as events.k8s.io/v1
            // `regarding` is their `involvedObject`, as in kube-apiserver.
            e["type"] == "Warning" && e["reason"] == reason && e["involvedObject"]["name"] == name
        })
        .cloned()
        .collect()
}

fn series(name: &str, reason: &str) -> String {
    format!(
        r#"channel_operator_credentials_unhealthy{{kind="Channel",object_namespace="default",object_name="{name}",source="facebook",reason="{reason}"}} 1"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_in_three_days_warns_within_a_recheck_while_ready_stays_true() {
    let (env, token) = connected_page("expiring").await;
    token.expiring_in(3 * DAY);
    let ch = env
        .channel_until("expiring", "CredentialsHealthy=False ExpiringSoon", |v| {
            says(v, "CredentialsHealthy", "False", "ExpiringSoon")
        })
        .await;
    assert!(says(&ch, "Ready", "True", "Connected"), "{ch:#}");
    let credentials = &ch["status"]["credentials"];
    assert!(credentials["expiresAt"].is_string(), "{ch:#}");
    assert!(credentials["checkedAt"].is_string(), "{ch:#}");
    let message = condition(&ch, "CredentialsHealthy")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("in 2 days 23 hours") || message.contains("in 3 days"),
        "{message}"
    );
    assert!(message.contains("spec.credentialsSecretRef"), "{message}");
    eventually("a Warning Event ExpiringSoon", || async {
        !warnings(&env, "expiring", "ExpiringSoon").await.is_empty()
    })
    .await;
    eventually("the alerting series with its expiry", || async {
        let text = controller_metrics(&env).await;
        text.contains(&series("expiring", "ExpiringSoon"))
            && text.contains(r#"channel_operator_credentials_expiry_timestamp_seconds{kind="Channel",object_namespace="default",object_name="expiring",source="facebook"}"#)
    })
    .await;
    let table = env.kubectl_ok(&["get", "channels"], None).await;
    assert!(
        table.contains("CREDENTIALS") && table.contains("ExpiringSoon"),
        "{table}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_token_stops_the_channel_without_a_subscribe_and_its_repair_brings_it_back()
{
    let (env, token) = connected_page("revoked").await;
    // The user changed their password: Facebook invalidated every token they granted.
    token.invalidate(460);
    let ch = env
        .channel_until("revoked", "Ready=False InvalidCredentials", |v| {
            says(v, "Ready", "False", "InvalidCredentials")
        })
        .await;
    assert!(says(&ch, "Stalled", "True", "InvalidCredentials"), "{ch:#}");
    let ch = env
        .channel_until("revoked", "CredentialsHealthy=False Invalidated", |v| {
            says(v, "CredentialsHealthy", "False", "Invalidated")
        })
        .await;
    let message = condition(&ch, "CredentialsHealthy")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("password"), "{message}");
    eventually("a Warning Event Invalidated", || async {
        !warnings(&env, "revoked", "Invalidated").await.is_empty()
    })
    .await;
    eventually("the invalid series", || async {
        controller_metrics(&env)
            .await
            .contains(&series("revoked", "Invalidated"))
    })
    .await;
    // Several re-checks while invalid: still no subscribe (the page's mock expects exactly the
    // connect's one, checked at the end) and one debug_token per re-check at most.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Repaired at Facebook (the user logged in again): back by itself, no new Secret.
    token.repair();
    let ch = env
        .channel_until("revoked", "Ready=True again", |v| {
            says(v, "Ready", "True", "Connected") && says(v, "CredentialsHealthy", "True", "Valid")
        })
        .await;
    assert!(
        ch["status"]["credentials"]["expiresAt"].is_null(),
        "never expires: {ch:#}"
    );
    eventually("no series once healthy", || async {
        !controller_metrics(&env)
            .await
            .contains("credentials_unhealthy{")
    })
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named_in_the_status() {
    let (env, token) = connected_page("scoped").await;
    token.revoke_scope("pages_manage_metadata");
    let ch = env
        .channel_until(
            "scoped",
            "CredentialsHealthy=False MissingPermissions",
            |v| says(v, "CredentialsHealthy", "False", "MissingPermissions"),
        )
        .await;
    assert_eq!(
        ch["status"]["credentials"]["missingPermissions"],
        serde_json::json!(["pages_manage_metadata"]),
        "{ch:#}"
    );
    assert!(says(&ch, "Ready", "True", "Connected"), "{ch:#}");
    let message = condition(&ch, "CredentialsHealthy")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("pages_manage_metadata"), "{message}");
    env.finish().await;
}
