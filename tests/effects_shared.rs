//! Provider resources several Channels share are counted from what each Channel's record holds,
//! across sources, namespaces and tenants: a WhatsApp Business Account stays subscribed while a
//! Channel connected with the app holds it, not while a Channel that never connected names it; a
//! page stays subscribed while a Facebook or an Instagram Channel holds it; each is undone once,
//! by the last holder, and an undo cut off by a restart is finished from the record.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use channel_operator::crd::{Channel, Source};
use kube::api::DeleteParams;
use kube::Api;
use support::configs::*;
use support::*;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const WABA: &str = "102290129340398";
const WA_USER: &str = "EAAwa-user-token-shared-do-not-leak";

async fn delete(env: &Env, ns: &str, name: &str) {
    Api::<Channel>::namespaced(env.sb.client(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// Reported from a real cluster: deleting a tenant's WhatsApp Channel skipped the unsubscribe of
/// its business account because a Channel of another namespace, without a provider
/// configuration and never connected, named the same `businessAccountId` with `connected: true`.
/// That Channel holds nothing: the business account is unsubscribed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_never_connected_does_not_keep_a_business_account_subscribed() {
    let mut env = Env::builder().build().await;
    env.nothing_else().await;
    env.tokens.push(WA_USER.into());
    let long = fakes::whatsapp_number(
        &env.graph,
        FLAGS_APP,
        WA_USER,
        "106540352242922",
        WABA,
        1,
        1,
    )
    .await;
    env.tokens.push(long);
    create_secret(&env, "default", "wa-tok", "token", WA_USER).await;
    let wa = channel(Source::Whatsapp, "106540352242922")
        .named("wa")
        .credentials("wa-tok", "token")
        .business_account(WABA)
        .build();
    create_channel(&env, wa).await;
    until_reason(&env, "default", "wa", "Connected").await;
    // Another tenant, whom no configuration admits, names the same business account.
    env.namespace("team-x").await;
    create_secret(&env, "team-x", "wa-tok", "token", "EAAwa-someone-else").await;
    let theirs = channel(Source::Whatsapp, "106540352242999")
        .named("wa")
        .namespace("team-x")
        .credentials("wa-tok", "token")
        .business_account(WABA)
        .build();
    create_channel(&env, theirs).await;
    until_reason(&env, "team-x", "wa", "ProviderConfigMissing").await;
    delete(&env, "default", "wa").await;
    until_gone(&env, "default", "wa").await;
    // finish(): exactly one unsubscribe of the business account.
    env.finish().await;
}

/// Reported from a real cluster: deleting an Instagram Channel unsubscribed the page it is
/// linked to while a Facebook Channel of that page (same app) stayed `Connected`. Both hold the
/// page's subscription: deleting the Instagram Channel makes no call; deleting the Facebook one
/// then unsubscribes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_stays_subscribed_while_a_facebook_or_an_instagram_channel_holds_it() {
    let mut env = Env::builder().build().await;
    env.nothing_else().await;
    let page = "shared-page";
    // The Facebook Channel's token subscribes the page and, last, unsubscribes it; the
    // Instagram Channel's (another token of the same page) neither.
    let fb_tokens = env.fake_page_token(page, 1, 1, 1).await;
    let ig_tokens = env.fake_page_token(page, 2, 0, 0).await;
    create_secret(
        &env,
        "default",
        "fb-tok",
        "page_token",
        &fb_tokens.page_token,
    )
    .await;
    create_secret(
        &env,
        "default",
        "ig-tok",
        "page_token",
        &ig_tokens.page_token,
    )
    .await;
    let fb = channel(Source::Facebook, &page_id(page))
        .named("fb")
        .credentials("fb-tok", "page_token")
        .build();
    create_channel(&env, fb).await;
    until_reason(&env, "default", "fb", "Connected").await;
    let ig = channel(Source::Instagram, "17841400000000009")
        .named("ig")
        .credentials("ig-tok", "page_token")
        .instagram_page(&page_id(page))
        .build();
    create_channel(&env, ig).await;
    until_reason(&env, "default", "ig", "Connected").await;
    let unsubscribes = || async {
        let path = format!("/v24.0/{}/subscribed_apps", page_id(page));
        calls(&env.graph, "DELETE", &path, &[]).await
    };
    delete(&env, "default", "ig").await;
    until_gone(&env, "default", "ig").await;
    assert_eq!(
        unsubscribes().await,
        0,
        "the Facebook Channel still holds the page"
    );
    until_reason(&env, "default", "fb", "Connected").await;
    delete(&env, "default", "fb").await;
    until_gone(&env, "default", "fb").await;
    assert_eq!(unsubscribes().await, 1);
    env.finish().await;
}

/// The controller dies while the page's unsubscribe keeps failing at the provider: the record
/// and the effect entry (marked as being undone by the Channel) survive in the state namespace,
/// and the next process finishes the undo from them — one successful unsubscribe in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_cut_off_by_a_restart_is_finished_from_the_record() {
    let mut env = Env::builder().build().await;
    let page = "restarted";
    // The unsubscribes are answered below: 503 until `failing` is cleared, then success.
    let tokens = env.fake_page_token(page, 1, 1, 0).await;
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{}/subscribed_apps", page_id(page))))
        .and(query_param("access_token", tokens.page_access.as_str()))
        .respond_with(move |_: &wiremock::Request| {
            if flag.load(Ordering::SeqCst) {
                ResponseTemplate::new(503).set_body_json(serde_json::json!({"error":
                    {"message": "Service temporarily unavailable", "code": 2}}))
            } else {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true}))
            }
        })
        .with_priority(1)
        .named("unsubscribe, failing until the restart")
        .mount(&env.graph)
        .await;
    create_secret(&env, "default", "tok", "page_token", &tokens.page_token).await;
    let ch = channel(Source::Facebook, &page_id(page))
        .named("fb")
        .credentials("tok", "page_token")
        .build();
    create_channel(&env, ch).await;
    until_reason(&env, "default", "fb", "Connected").await;
    let uid = Api::<Channel>::namespaced(env.sb.client(), "default")
        .get("fb")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    delete(&env, "default", "fb").await;
    let path = format!("/v24.0/{}/subscribed_apps", page_id(page));
    eventually("the unsubscribe to fail once", || async {
        calls(&env.graph, "DELETE", &path, &[]).await >= 1
    })
    .await;
    env.kill().await;
    // The record of the Channel and the entry of the page's subscription, being undone by it.
    let record = state_secret(&env, &format!("channel-{uid}")).await;
    let effects = record
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("airy.co/effects"))
        .cloned()
        .unwrap_or_default();
    assert!(effects.contains(&page_id(page)), "{effects}");
    let entries = state_leases(&env, "effect-").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let undoing = entries[0]
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("airy.co/undoing"))
        .cloned()
        .unwrap_or_default();
    assert!(undoing.contains(&uid), "{undoing}");
    let failed = calls(&env.graph, "DELETE", &path, &[]).await;
    failing.store(false, Ordering::SeqCst);
    env.start_controller().await;
    until_gone(&env, "default", "fb").await;
    assert_eq!(calls(&env.graph, "DELETE", &path, &[]).await, failed + 1);
    assert!(state_leases(&env, "effect-").await.is_empty());
    assert!(!env.exists("secret", &format!("channel-{uid}")).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&env.graph, "DELETE", &path, &[]).await, failed + 1);
    env.finish().await;
}
