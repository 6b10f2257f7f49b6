//! What the operator did at a provider is undone where it was done: a Channel moved to another
//! provider configuration undoes its effect (a page's app subscription, a WhatsApp Business
//! Account's, a Twilio number's webhook) at the old account and makes it at the new one; a
//! configuration a Channel is connected with is not deleted out from under it, and the Channel is
//! disconnected and deleted with the account it was connected with. Every provider call is
//! counted per app id and account SID; a call at any other account fails the test.

mod support;

use channel_operator::crd::{Channel, DeletionPolicy, Source};
use channel_operator::provider_config::ProviderConfig;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;
use support::configs::*;
use support::*;

const APP_A: App = App {
    id: "app-a",
    secret: "app-secret-a-do-not-leak",
};
const APP_B: App = App {
    id: "app-b",
    secret: "app-secret-b-do-not-leak",
};
const TW_A: TwilioAccount = TwilioAccount {
    sid: "AC2",
    token: "twilio-token-ac2-do-not-leak",
    webhook: "https://hooks.example.org/ac2",
};
const TW_B: TwilioAccount = TwilioAccount {
    sid: "AC3",
    token: "twilio-token-ac3-do-not-leak",
    webhook: "https://hooks.example.org/ac3",
};
const NUMBER: &str = "+4915100000007";
const WA_NUMBER: &str = "106540352242922";
const WABA: &str = "102290129340398";
const WA_USER: &str = "EAAwa-user-token-moves-do-not-leak";

/// Patches Channel `ns/name` with a JSON merge patch.
async fn patch(env: &Env, ns: &str, name: &str, patch: serde_json::Value) {
    Api::<Channel>::namespaced(env.sb.client(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn delete(env: &Env, ns: &str, name: &str) {
    Api::<Channel>::namespaced(env.sb.client(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// Waits until Channel `ns/name` is Connected with the inputs of configuration `config`.
async fn connected_with(env: &Env, ns: &str, name: &str, config: &str) {
    let api: Api<Channel> = Api::namespaced(env.sb.client(), ns);
    let want = format!("ProviderConfig/{ns}/{config}");
    eventually_ok(
        TIMEOUT,
        format!("{ns}/{name} Connected through {config}"),
        || async {
            let ch = api.get(name).await.map_err(|e| e.to_string())?;
            let s = ch.status.clone().unwrap_or_default();
            let with = s.connected_with.clone().unwrap_or_default();
            match ready(&ch) {
                Some((st, r)) if st == "True" && r == "Connected" && with.contains(&want) => Ok(()),
                other => Err(format!("{other:?} {with}")),
            }
        },
    )
    .await
}

/// Reported from a real cluster: editing `spec.providerConfigRef` of a connected Channel
/// subscribed the page (and the WhatsApp Business Account, and the Twilio number's webhook)
/// again with the second configuration's account and never undid it at the first: 2 subscribes,
/// 0 undos each. Now: 1 undo at the old account, 1 effect at the new one, none elsewhere; the
/// deletion at the end undoes at the new account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_configuration_undoes_at_the_old_account_first() {
    let mut env = Env::builder().build().await;
    env.nothing_else().await;
    env.namespace("team-m").await;
    provider_config(&mut env, "team-m", "one", Some(APP_A), Some(TW_A)).await;
    provider_config(&mut env, "team-m", "two", Some(APP_B), Some(TW_B)).await;
    let page = env.fake_app_page(APP_A, "moved", 1, 1, 1).await;
    env.fake_app_page(APP_B, "moved", 1, 1, 1).await;
    env.tokens.push(WA_USER.into());
    for app in [APP_A, APP_B] {
        let long = fakes::whatsapp_number(&env.graph, app, WA_USER, WA_NUMBER, WABA, 1, 1).await;
        env.tokens.push(long);
    }
    env.fake_twilio_number_in(TW_A, NUMBER, "PN7", 1, 1).await;
    env.fake_twilio_number_in(TW_B, NUMBER, "PN7", 1, 1).await;
    create_secret(&env, "team-m", "page-tok", "page_token", &page.page_token).await;
    create_secret(&env, "team-m", "wa-tok", "token", WA_USER).await;
    let mut fb = channel(Source::Facebook, &page_id("moved"))
        .named("fb")
        .namespace("team-m")
        .credentials("page-tok", "page_token")
        .build();
    let mut wa = channel(Source::Whatsapp, WA_NUMBER)
        .named("wa")
        .namespace("team-m")
        .credentials("wa-tok", "token")
        .business_account(WABA)
        .build();
    let mut sms = channel(Source::TwilioSms, NUMBER)
        .named("sms")
        .namespace("team-m")
        .build();
    for ch in [&mut fb, &mut wa, &mut sms] {
        ch.spec.provider_config_ref = config_ref("one");
        create_channel(&env, ch.clone()).await;
    }
    for name in ["fb", "wa", "sms"] {
        connected_with(&env, "team-m", name, "one").await;
    }
    for name in ["fb", "wa", "sms"] {
        let to_two =
            json!({"spec": {"providerConfigRef": {"kind": "ProviderConfig", "name": "two"}}});
        patch(&env, "team-m", name, to_two).await;
    }
    for name in ["fb", "wa", "sms"] {
        connected_with(&env, "team-m", name, "two").await;
    }
    // The undo at the old account happened by now (before the connect with the new one).
    let graph_undos = [
        (
            "page",
            format!("/v24.0/{}/subscribed_apps", page_id("moved")),
            page.page_access.clone(),
        ),
        (
            "WABA",
            format!("/v24.0/{WABA}/subscribed_apps"),
            format!("{WA_USER}-app-a-long-lived"),
        ),
    ];
    for (what, path, token) in &graph_undos {
        let n = calls(&env.graph, "DELETE", path, &[("access_token", token)]).await;
        assert_eq!(n, 1, "{what}: undos at app-a after the move");
    }
    for name in ["fb", "wa", "sms"] {
        delete(&env, "team-m", name).await;
    }
    for name in ["fb", "wa", "sms"] {
        until_gone(&env, "team-m", name).await;
    }
    // finish(): each app and account saw exactly its one effect and one undo.
    env.finish().await;
}

/// The configuration's Ready condition and the Channels its status says still hold it.
async fn config_status(env: &Env, ns: &str, name: &str) -> Option<serde_json::Value> {
    let pc = Api::<ProviderConfig>::namespaced(env.sb.client(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    Some(serde_json::to_value(&pc).unwrap())
}

/// Deletes ProviderConfig `ns/name` (returns at once: a finalizer may keep it).
async fn delete_config(env: &Env, ns: &str, name: &str) {
    Api::<ProviderConfig>::namespaced(env.sb.client(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// Waits until ProviderConfig `ns/name` is gone.
async fn config_gone(env: &Env, ns: &str, name: &str) {
    eventually(format!("ProviderConfig {ns}/{name} to be gone"), || async {
        config_status(env, ns, name).await.is_none()
    })
    .await
}

/// A Facebook Channel `ns/fb` connected through ProviderConfig `ns/one` (app-a), with
/// `deletion_policy`; the page is subscribed once and unsubscribed `unsubscribes` times.
async fn connected_through_one(ns: &str, policy: DeletionPolicy, unsubscribes: u64) -> Env {
    let mut env = Env::builder()
        .controller_args(&["--sweep-seconds", "1"])
        .build()
        .await;
    env.nothing_else().await;
    env.namespace(ns).await;
    provider_config(&mut env, ns, "one", Some(APP_A), None).await;
    let page = env.fake_app_page(APP_A, ns, 1, 1, unsubscribes).await;
    create_secret(&env, ns, "tok", "page_token", &page.page_token).await;
    let mut fb = channel(Source::Facebook, &page_id(ns))
        .named("fb")
        .namespace(ns)
        .credentials("tok", "page_token")
        .build();
    fb.spec.provider_config_ref = config_ref("one");
    fb.spec.deletion_policy = policy;
    create_channel(&env, fb).await;
    connected_with(&env, ns, "fb", "one").await;
    env
}

/// Reported from a real cluster: deleting the configuration a Channel was connected with left
/// the Channel stuck on its finalizer (`ProviderConfigMissing`) when it was deleted. Now the
/// configuration waits while the Channel is connected through it, and the Channel's deletion
/// unsubscribes the page once, with the app it was subscribed with; then the configuration goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_configuration_was_deleted_is_disconnected_with_the_recorded_app() {
    let env = connected_through_one("team-d", DeletionPolicy::Disconnect, 1).await;
    delete_config(&env, "team-d", "one").await;
    delete(&env, "team-d", "fb").await;
    until_gone(&env, "team-d", "fb").await;
    config_gone(&env, "team-d", "one").await;
    env.finish().await;
}

/// With `deletionPolicy: Orphan` the Channel goes without a provider call, and the
/// configuration it is connected through waits for it, saying in its status which Channel
/// holds it (on the old code it was deleted at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_in_use_waits_for_its_channels_and_says_which() {
    let env = connected_through_one("team-o", DeletionPolicy::Orphan, 0).await;
    delete_config(&env, "team-o", "one").await;
    let why = eventually_some("the configuration to say who holds it", || async {
        let v = config_status(&env, "team-o", "one").await?;
        let ready = v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["reason"] == "InUse").then_some((v, ready))
    })
    .await;
    let (v, ready) = why;
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v:#}");
    assert_eq!(ready["status"], "False", "{ready:#}");
    assert!(
        ready["message"].as_str().unwrap().contains("team-o/fb"),
        "{ready:#}"
    );
    assert_eq!(v["status"]["holders"], json!(["team-o/fb"]), "{v:#}");
    assert_eq!(v["status"]["holderCount"], 1, "{v:#}");
    // Still there a moment later: the finalizer holds it.
    consistently(
        std::time::Duration::from_secs(2),
        "the configuration stays",
        || async { config_status(&env, "team-o", "one").await.is_some() },
    )
    .await;
    delete(&env, "team-o", "fb").await;
    until_gone(&env, "team-o", "fb").await;
    config_gone(&env, "team-o", "one").await;
    env.finish().await;
}

/// Reported from a real cluster: after `spec.providerConfigRef` was removed, the Twilio
/// number's webhook was cleared in another account than the one that had set it (the flags'
/// instead of the configuration's). Now the record decides: cleared once in AC2, where it was
/// set, and nothing at the flags' account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_configuration_reference_clears_the_webhook_where_it_was_set() {
    let mut env = Env::builder().build().await;
    env.nothing_else().await;
    // In `default`, the operator's namespace, the flags' account would serve the Channel.
    provider_config(&mut env, "default", "one", None, Some(TW_A)).await;
    env.fake_twilio_number_in(TW_A, NUMBER, "PN7", 1, 1).await;
    env.fake_twilio_number(NUMBER, "PN7", 0, 0).await;
    let mut sms = channel(Source::TwilioSms, NUMBER).named("sms").build();
    sms.spec.provider_config_ref = config_ref("one");
    create_channel(&env, sms).await;
    connected_with(&env, "default", "sms", "one").await;
    let off = json!({"spec": {"connected": false, "providerConfigRef": null}});
    patch(&env, "default", "sms", off).await;
    until_reason(&env, "default", "sms", "Disconnected").await;
    delete(&env, "default", "sms").await;
    until_gone(&env, "default", "sms").await;
    env.finish().await;
}
