//! One owner per channel id, decided by the API server: whoever first creates the claim (a
//! Lease named by the channel id in the operator's namespace) owns the channel. Attacked as on a
//! real cluster: a Channel another tenant declares for a page the API connected a moment before,
//! in the same second, does not take the page over; the owner stays connected, the newcomer is
//! `Duplicate` without a provider call, and deleting the owner undoes its subscription, releases
//! the claim and hands the page to the newcomer.

mod support;

use std::time::Duration;

use channel_operator::crd::{Channel, Source};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::*;

/// A namespace whose name sorts before `default`: the old namespace/name tie-break chose it.
const TENANT: &str = "aaa-tenant";

/// The page both claim tests contend for, and its claim: a Lease named `claim-<channel id>`
/// (docs/security.md), with the channel id of docs/channel-ids.md's vector for `facebook` `100000000001`,
/// written out rather than computed by the code under test.
const PAGE: &str = "100000000001";
const CLAIM: &str = "claim-f405cad8-dd03-5275-be27-a660d4d64949";

/// Waits until the wall clock is just past a full second: what follows soon after happens within
/// that second (creation timestamps have one-second resolution).
async fn start_of_a_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    tokio::time::sleep(Duration::from_secs(1) - into + Duration::from_millis(10)).await;
}

/// Declares, in namespace `ns`, a Facebook Channel `name` for `page` with the user token `token`
/// in a Secret of that namespace.
async fn declare(env: &Env, ns: &str, name: &str, page: &str, token: &str) -> Channel {
    let mut s = secret(&format!("{name}-token"), "page_token", token);
    s.metadata.namespace = Some(ns.into());
    Api::<K8sSecret>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let ch = channel(Source::Facebook, &page_id(page))
        .named(name)
        .namespace(ns)
        .credentials(&format!("{name}-token"), "page_token")
        .build();
    Api::<Channel>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &ch)
        .await
        .unwrap()
}

async fn ready_in(env: &Env, ns: &str, name: &str, want: (&str, &str)) -> Channel {
    let api: Api<Channel> = Api::namespaced(env.sb.client(), ns);
    let want = (want.0.to_owned(), want.1.to_owned());
    eventually_some(format!("{ns}/{name} is {want:?}"), || async {
        let ch = api.get(name).await.unwrap();
        (ready(&ch).as_ref() == Some(&want)).then_some(ch)
    })
    .await
}

/// The Graph calls made with any of `tokens`.
async fn calls_with(env: &Env, tokens: &[String; 3]) -> usize {
    env.graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            let q = r.url.query().unwrap_or_default();
            tokens.iter().any(|t| q.contains(t.as_str()))
        })
        .count()
}

/// The owner the claim of [`PAGE`] names.
async fn claim_owner(env: &Env) -> Option<String> {
    Api::<Lease>::namespaced(env.sb.client(), STATE_NS)
        .get_opt(CLAIM)
        .await
        .unwrap()
        .and_then(|l| l.annotations().get("airy.co/owner").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_of_another_tenant_in_the_same_second_does_not_take_over_a_connected_page() {
    // The tenant may use the provider accounts (a tenant no configuration admits claims no id).
    let mut env = Env::builder()
        .no_twilio()
        .controller_args(&["--default-provider-namespaces", TENANT])
        .api(&[])
        .build()
        .await;
    env.namespace(TENANT).await;
    // The victim's token subscribes once and unsubscribes once (its Channel's deletion); the
    // tenant's subscribes once, after the victim's Channel is gone.
    let victim = env.fake_page_token(PAGE, 1, 1, 1).await;
    let theirs = env.fake_page_token(PAGE, 2, 1, 0).await;

    start_of_a_second().await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": PAGE, "page_token": victim.page_token}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let b = declare(&env, TENANT, "hijack", PAGE, &theirs.page_token).await;
    let a = Api::<Channel>::namespaced(env.sb.client(), "default")
        .get(&id)
        .await
        .unwrap();
    assert_eq!(
        a.creation_timestamp(),
        b.creation_timestamp(),
        "the race needs both Channels created in one second"
    );

    // The newcomer is a duplicate, told nothing of the owner's namespace, and calls no provider.
    let b = ready_in(&env, TENANT, "hijack", ("False", "Duplicate")).await;
    let message = b.ready_condition().unwrap().message.clone();
    assert!(!message.contains("default"), "{message}");
    assert_eq!(claim_owner(&env).await, Some(format!("default/{id}")));
    assert_eq!(calls_with(&env, &theirs.all()).await, 0);
    // The victim's channel stays connected, and the API still answers for it.
    ready_in(&env, "default", &id, ("True", "Connected")).await;
    let (s, v) = env.post("channels.info", json!({"channel_id": id})).await;
    assert_eq!(s, 200, "{v}");

    // Deleted: the subscription made with the victim's token is undone (once, checked by the
    // fake at finish), the claim released, and the page handed to the tenant's Channel.
    Api::<Channel>::namespaced(env.sb.client(), "default")
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    env.channel_gone(&id).await;
    ready_in(&env, TENANT, "hijack", ("True", "Connected")).await;
    assert_eq!(claim_owner(&env).await, Some(format!("{TENANT}/hijack")));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_owner_undoes_its_subscription_then_the_duplicate_takes_over() {
    let mut env = Env::new(&["--default-provider-namespaces", TENANT]).await;
    env.start_controller().await;
    env.namespace(TENANT).await;
    let first = env.fake_page_token(PAGE, 1, 1, 1).await;
    let second = env.fake_page_token(PAGE, 2, 1, 0).await;
    declare(&env, "default", "owner", PAGE, &first.page_token).await;
    ready_in(&env, "default", "owner", ("True", "Connected")).await;
    declare(&env, TENANT, "second", PAGE, &second.page_token).await;
    let b = ready_in(&env, TENANT, "second", ("False", "Duplicate")).await;
    assert!(!b.ready_condition().unwrap().message.contains("default"));
    assert_eq!(calls_with(&env, &second.all()).await, 0);
    assert_eq!(claim_owner(&env).await.as_deref(), Some("default/owner"));

    // The owner is deleted: it unsubscribes with its own token, the claim is released, and the
    // duplicate claims the page and connects with its own token.
    Api::<Channel>::namespaced(env.sb.client(), "default")
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    env.channel_gone("owner").await;
    ready_in(&env, TENANT, "second", ("True", "Connected")).await;
    assert_eq!(claim_owner(&env).await, Some(format!("{TENANT}/second")));
    env.finish().await;
}

/// Reported from a real cluster: a Channel naming a Secret that does not exist took the claim of
/// a page id, and the page's owner, with working credentials, became `Duplicate` and made no
/// call. Page ids are public: any tenant could block any page. Now a Channel takes a claim only
/// once its credentials worked at the provider (token exchanged, page read): one naming a missing
/// Secret, and one whose token Facebook refuses, hold nothing and say why; the owner connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_without_working_credentials_holds_no_claim_and_the_owner_connects() {
    let mut env = Env::new(&["--default-provider-namespaces", TENANT]).await;
    env.start_controller().await;
    env.namespace(TENANT).await;
    let owner = env.fake_page_token(PAGE, 1, 1, 0).await;
    // Facebook refuses the second squatter's token.
    const REFUSED: &str = "EAA-refused-token";
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v24.0/oauth/access_token"))
        .and(wiremock::matchers::query_param(
            "fb_exchange_token",
            REFUSED,
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}})),
        )
        .mount(&env.graph)
        .await;
    let missing = channel(Source::Facebook, &page_id(PAGE))
        .named("squat")
        .namespace(TENANT)
        .credentials("no-such-secret", "page_token")
        .build();
    Api::<Channel>::namespaced(env.sb.client(), TENANT)
        .create(&PostParams::default(), &missing)
        .await
        .unwrap();
    ready_in(&env, TENANT, "squat", ("False", "CredentialsMissing")).await;
    assert_eq!(claim_owner(&env).await, None, "a claim without credentials");
    declare(&env, TENANT, "refused", PAGE, REFUSED).await;
    ready_in(&env, TENANT, "refused", ("False", "InvalidCredentials")).await;
    assert_eq!(
        claim_owner(&env).await,
        None,
        "a claim with refused credentials"
    );
    declare(&env, "default", "owner", PAGE, &owner.page_token).await;
    ready_in(&env, "default", "owner", ("True", "Connected")).await;
    assert_eq!(claim_owner(&env).await.as_deref(), Some("default/owner"));
    env.finish().await;
}

/// POSTs `body` to `endpoint` of the API at `base`.
async fn post_to(env: &Env, base: &str, endpoint: &str, body: serde_json::Value) -> (u16, String) {
    let resp = env
        .http
        .post(format!("{base}/{endpoint}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Reported from a real cluster: connects of one channel through two API replicas were not
/// serialized; both answered 200, and the first's token was never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_replicas_connecting_one_page_at_once_subscribe_it_once() {
    let mut env = Env::with_api().await;
    let replica_a = env.api.take();
    let base_a = env.base.clone();
    env.start_api(vec![], None).await;
    let base_b = env.base.clone();
    // Two users' tokens of one page: either may win; together, exactly one subscribe (below).
    let a = env.fake_page_token("replicas", 1, 0..=1, 0).await;
    let b = env.fake_page_token("replicas", 2, 0..=1, 0).await;
    let page = page_id("replicas");
    let connect = |base: String, token: String| {
        let (env, page) = (&env, &page);
        async move {
            post_to(
                env,
                &base,
                "channels.facebook.connect",
                json!({"page_id": page, "page_token": token}),
            )
            .await
        }
    };
    let (ra, rb) = tokio::join!(
        connect(base_a, a.page_token.clone()),
        connect(base_b, b.page_token.clone())
    );
    // One connect wins; the other is told the channel is being connected, and changes nothing.
    let mut codes = [ra.0, rb.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "A: {ra:?}\nB: {rb:?}");
    let winner = if ra.0 == 200 { &a } else { &b };
    let loser = if ra.0 == 200 { &b } else { &a };
    let id = channel(Source::Facebook, &page).id();
    let ch = ready_in(&env, "default", &id, ("True", "Connected")).await;
    // The answer is true: the channel is connected with the winner's token, subscribed once.
    let subscribes: Vec<String> = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/me/subscribed_apps"))
        .map(|r| r.url.query().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(subscribes.len(), 1, "{subscribes:?}");
    assert!(subscribes[0].contains(&winner.page_access));
    assert_eq!(calls_with(&env, &loser.all()).await, 0);
    let secret = ch.spec.credentials_secret_ref.unwrap().name;
    let stored = env.secrets().get(&secret).await.unwrap();
    assert_eq!(
        stored.data.unwrap()["page_token"].0,
        winner.page_token.as_bytes()
    );
    drop(replica_a);
    env.finish().await;
}
