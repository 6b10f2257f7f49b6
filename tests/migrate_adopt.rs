//! Adoption needs an admin's word: migrate's label and annotation, which whoever may create a
//! Channel can write, adopt nothing — the Channel's credentials are proven and the page
//! subscribed as for any Channel — and neither does an adoption record saying Airy Core used
//! another Facebook app than the one the Channel's configuration uses.

mod support;

use std::collections::BTreeMap;

use channel_operator::crd::{Channel, Source};
use channel_operator::effects::Origin;
use kube::api::Api;
use kube::ResourceExt;
use serde_json::json;
use support::airy::{fake_airy, listed, migrate, Release, AIRY_TOKEN};
use support::*;

/// The status of the Channel `name` of `default` once Ready: the origin of each effect.
async fn origins(env: &Env, name: &str) -> Vec<Option<Origin>> {
    env.wait_ready(name).await;
    let ch = Api::<Channel>::namespaced(env.sb.client(), "default")
        .get(name)
        .await
        .unwrap();
    let status = ch.status.unwrap();
    status.effects.iter().map(|e| e.origin).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_label_and_annotation_written_by_a_tenant_adopt_nothing() {
    let mut env = Env::builder().no_twilio().build().await;
    env.nothing_else().await;
    // The page is not subscribed to the app: a connect with proof subscribes it, once.
    let tokens = env.fake_page_token("fb", 1, 1, 0).await;
    env.apply(&secret_yaml("fb-tok", "page_token", &tokens.page_token))
        .await;
    let mut ch = channel(Source::Facebook, &page_id("fb"))
        .named("facebook-fb")
        .credentials("fb-tok", "page_token")
        .build();
    ch.metadata.labels = Some(BTreeMap::from([(
        "airy.co/migrated".to_owned(),
        "true".to_owned(),
    )]));
    ch.metadata.annotations = Some(BTreeMap::from([(
        "airy.co/migrated-from".to_owned(),
        "https://airy.example.org".to_owned(),
    )]));
    env.apply(&serde_yaml::to_string(&ch).unwrap()).await;
    assert_eq!(origins(&env, "facebook-fb").await, [Some(Origin::Made)]);
    // Proven (the token exchanged, the page read) and subscribed: wiremock counts at finish.
    let calls = env.graph.received_requests().await.unwrap();
    assert!(calls.len() >= 3, "{calls:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adoption_record_of_another_facebook_app_is_not_used() {
    let mut env = Env::builder().no_twilio().controller_later().build().await;
    env.nothing_else().await;
    // Airy Core listed the page token the user gave; the operator's app (the flags') is not the
    // app migrate was told Airy Core used.
    let tokens = env.fake_page_token("fb", 1, 1, 0).await;
    let airy = fake_airy(vec![listed(
        Release::Connected,
        &channel_operator::channel_id::channel_id_string("facebook", &page_id("fb")),
        "facebook",
        &page_id("fb"),
        json!({"name": "Page fb", "page_token": tokens.page_token}),
    )])
    .await;
    env.tokens.push(AIRY_TOKEN.into());
    let args = [
        "--from",
        &airy.url,
        "--namespace",
        "default",
        "--token",
        AIRY_TOKEN,
        "--state-namespace",
        STATE_NS,
        "--facebook-app-id",
        "airy-core-app",
        "--apply",
    ];
    let applied = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert!(
        applied.ok() && applied.stderr.contains("adoption records: 1 written"),
        "{applied:#?}"
    );
    env.start_controller().await;
    let name = format!("facebook-{}", page_id("fb"));
    assert_eq!(origins(&env, &name).await, [Some(Origin::Made)]);
    // The record vouches for another app's subscription: left unused (it goes with the Channel).
    let uid = Api::<Channel>::namespaced(env.sb.client(), "default")
        .get(&name)
        .await
        .unwrap()
        .uid()
        .unwrap();
    assert_eq!(state_secrets(&env, &format!("adopt-{uid}")).await.len(), 1);
    env.finish().await;
}
