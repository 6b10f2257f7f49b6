//! The API stays inside its namespaces (`--namespaces`): Channels of other tenants are never
//! read, changed or used to hand out tokens, and concurrent connects of one channel leave one
//! token Secret, the one in use.

mod support;

use std::collections::BTreeSet;

use channel_operator::crd::{Channel, ChannelSpec, Source};
use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const GOOGLE_B: &str = "e7c090e8-74c0-5617-9cd2-b25ce932c286";

fn spec(source: Source, scid: &str, secret: Option<&str>) -> ChannelSpec {
    let b = channel(source, scid).display_name("theirs");
    match secret {
        Some(s) => b.credentials(s, "page_token"),
        None => b,
    }
    .spec()
}

async fn declare(env: &Env, ns: &str, name: &str, spec: ChannelSpec) -> Channel {
    let api: Api<Channel> = Api::namespaced(env.sb.client(), ns);
    api.create(&PostParams::default(), &Channel::new(name, spec))
        .await
        .unwrap();
    eventually("the controller has seen the Channel", || async {
        api.get(name)
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.observed_generation.is_some())
    })
    .await;
    api.get(name).await.unwrap()
}

/// The controller (tenant-m may use the operator's accounts) and the API.
async fn squatters_env() -> Env {
    Env::builder()
        .no_twilio()
        .controller_args(&["--default-provider-namespaces", "tenant-m"])
        .api(&[])
        .build()
        .await
}

/// The Secret `squat-token` of tenant-m, holding a token of another tenant's that works for
/// `page` at the fake Graph API (with consent): its Channel proves it and holds the page (it
/// subscribes it once and never unsubscribes it).
async fn squat_secret(env: &mut Env, page: &str) {
    let token = env.fake_page(page, 1, 0).await;
    let mut s = secret("squat-token", "page_token", &token);
    s.metadata.namespace = Some("tenant-m".into());
    Api::<K8sSecret>::namespaced(env.sb.client(), "tenant-m")
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn secret_names(env: &Env, ns: &str) -> BTreeSet<String> {
    Api::<K8sSecret>::namespaced(env.sb.client(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect()
}

/// A Graph API knowing `page` ("Shared"), which every page token exchanges into a long-lived
/// token of its own, and whose app subscription always succeeds.
async fn graph_page(env: &Env, page: &str) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(|req: &wiremock::Request| {
            let token = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "fb_exchange_token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": format!("long-{token}")}))
        })
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{page}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": page, "name_with_location_descriptor": "Shared",
            "access_token": format!("page-access-{page}"), "is_webhooks_subscribed": false
        })))
        .mount(&env.graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&env.graph)
        .await;
}

#[tokio::test]
async fn connect_for_an_id_held_in_another_namespace_is_409_and_changes_nothing() {
    // The squatter's namespace may use the operator's accounts (else its Channel would claim
    // nothing: tests/provider_configs.rs), so its Channel holds page 8888.
    let mut env = squatters_env().await;
    env.namespace("tenant-b").await;
    env.namespace("tenant-m").await;
    // tenant-b's agent, and a squatter's Facebook Channel for page 8888 in tenant-m.
    let before_b = declare(
        &env,
        "tenant-b",
        "agent",
        spec(Source::Google, "gbm-b", None),
    )
    .await;
    squat_secret(&mut env, "8888").await;
    let before_m = declare(
        &env,
        "tenant-m",
        "squat",
        spec(Source::Facebook, "8888", Some("squat-token")),
    )
    .await;

    // Creation timestamps have second resolution and the oldest Channel owns an id: the other
    // tenants' Channels were there before this connect.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-b", "name": "Mine"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "8888", "page_token": "EAAB-victim-token"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    for hidden in ["tenant", "squat", "victim"] {
        assert!(!v.to_string().contains(hidden), "{v}");
    }

    let b: Api<Channel> = Api::namespaced(env.sb.client(), "tenant-b");
    assert_eq!(b.get("agent").await.unwrap().spec, before_b.spec);
    let m: Api<Channel> = Api::namespaced(env.sb.client(), "tenant-m");
    assert_eq!(m.get("squat").await.unwrap().spec, before_m.spec);
    assert_eq!(
        secret_names(&env, "tenant-m").await,
        BTreeSet::from(["squat-token".to_owned()])
    );
    eventually("nothing of the refused connects stays", || async {
        secret_names(&env, "default").await.is_empty()
            && Api::<Channel>::namespaced(env.sb.client(), "default")
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
}

#[tokio::test]
async fn update_and_disconnect_never_reach_another_namespace() {
    let env = Env::with_api().await;
    env.namespace("tenant-b").await;
    let b: Api<Channel> = Api::namespaced(env.sb.client(), "tenant-b");
    declare(
        &env,
        "tenant-b",
        "agent",
        spec(Source::Google, "gbm-b", None),
    )
    .await;
    eventually("tenant-b's agent is connected", || async {
        b.get("agent").await.unwrap().is_connected()
    })
    .await;
    let before = b.get("agent").await.unwrap();
    let (s, v) = env
        .post(
            "channels.update",
            json!({"channel_id": GOOGLE_B, "name": "renamed"}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = env
        .post(
            "channels.google.disconnect",
            json!({"channel_id": GOOGLE_B}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = env
        .post("channels.info", json!({"channel_id": GOOGLE_B}))
        .await;
    assert_eq!(s, 404, "{v}");
    let after = b.get("agent").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
}

#[tokio::test]
async fn a_namespace_listed_in_namespaces_shares_its_channels_with_the_api() {
    let env = Env::builder()
        .no_twilio()
        .api(&["--namespaces", "default,team-a"])
        .build()
        .await;
    env.namespace("team-a").await;
    let a: Api<Channel> = Api::namespaced(env.sb.client(), "team-a");
    let mut declared = spec(Source::Google, "gbm-b", None);
    declared.connected = false;
    declare(&env, "team-a", "our-agent", declared).await;
    let (s, v) = env
        .post(
            "channels.google.connect",
            json!({"gbm_id": "gbm-b", "name": "Agent"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], GOOGLE_B);
    let ch = a.get("our-agent").await.unwrap();
    assert!(ch.spec.connected);
    assert_eq!(ch.spec.name.as_deref(), Some("Agent"));
    let (s, _) = env
        .post(
            "channels.google.disconnect",
            json!({"channel_id": GOOGLE_B}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!a.get("our-agent").await.unwrap().spec.connected);
}

#[tokio::test]
async fn concurrent_connects_of_one_page_leave_the_token_in_use_only() {
    let env = Env::with_api().await;
    graph_page(&env, "4242").await;
    const CALLERS: usize = 6;
    let answers = futures::future::join_all((0..CALLERS).map(|i| {
        let env = &env;
        async move {
            env.post(
                "channels.facebook.connect",
                json!({"page_id": "4242", "page_token": format!("EAAB-caller-{i}")}),
            )
            .await
        }
    }))
    .await;
    for (s, v) in &answers {
        assert_eq!(*s, 200, "{v}");
    }
    // Every caller that got 200 had its own token exchanged.
    let exchanged: BTreeSet<String> = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v24.0/oauth/access_token")
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "fb_exchange_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(exchanged.len(), CALLERS, "{exchanged:?}");
    // One Channel, and one page-token Secret: the one it references.
    let channels = env
        .channels()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(channels.len(), 1);
    let in_use = channels[0]
        .spec
        .credentials_secret_ref
        .clone()
        .unwrap()
        .name;
    eventually("only the page-token Secret in use stays", || async {
        let page_tokens: BTreeSet<String> = secret_names(&env, "default")
            .await
            .into_iter()
            .filter(|n| n.contains("-page-token-"))
            .collect();
        page_tokens == BTreeSet::from([in_use.clone()])
    })
    .await;
}

#[tokio::test]
async fn connect_of_a_channel_whose_id_another_namespace_holds_is_409_and_leaves_it_as_it_was() {
    let mut env = squatters_env().await;
    env.namespace("tenant-m").await;
    // tenant-m's chat plugin holds the website id ...
    declare(
        &env,
        "tenant-m",
        "squat",
        spec(Source::ChatPlugin, "shared-site", None),
    )
    .await;
    // ... and a disconnected Channel for the same id is declared in the API's namespace, and
    // one for a Facebook page tenant-m holds too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut plugin = spec(Source::ChatPlugin, "shared-site", None);
    plugin.connected = false;
    let before_plugin = declare(&env, "default", "declared-plugin", plugin).await;
    squat_secret(&mut env, "7777").await;
    declare(
        &env,
        "tenant-m",
        "squat-page",
        spec(Source::Facebook, "7777", Some("squat-token")),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    Api::<K8sSecret>::namespaced(env.sb.client(), "default")
        .create(
            &PostParams::default(),
            &secret("declared-token", "page_token", "EAAB-declared"),
        )
        .await
        .unwrap();
    let mut page = spec(Source::Facebook, "7777", Some("declared-token"));
    page.connected = false;
    let before_page = declare(&env, "default", "declared-page", page).await;
    let secrets_before = secret_names(&env, "default").await;

    let (s, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "shared-site", "image_url": "https://example.org/a.png"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "7777", "page_token": "EAAB-new-token", "name": "Mine"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    for hidden in ["tenant", "squat"] {
        assert!(!v.to_string().contains(hidden), "{v}");
    }
    // Both Channels are as they were declared, and no token Secret of the refused connect stays.
    let default: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    eventually(
        "the refused connects left both Channels as declared",
        || async {
            default.get("declared-plugin").await.unwrap().spec == before_plugin.spec
                && default.get("declared-page").await.unwrap().spec == before_page.spec
                && secret_names(&env, "default").await == secrets_before
        },
    )
    .await;
}

/// A Secret someone created first under the name the API stores a page token in (the name
/// follows the token's digest) is never used. The API may create Secrets and read none, so its
/// create meets 409 and it cannot tell whose the Secret is: a new Channel is removed again and
/// the connect answers 409; an existing Channel's spec names it, and the controller refuses it
/// because it does not hold the token its name was derived from, even when it poses as the
/// operator's (labels and an ownerReference to the Channel). The squatter's token never reaches
/// Graph.
#[tokio::test]
async fn a_secret_squatting_the_name_of_a_page_token_is_never_used() {
    use channel_operator::ownership::{credentials_secret_name, owner_reference};
    let env = Env::with_api().await;
    graph_page(&env, "8888").await;
    let id = channel_operator::naming::ChatPluginNaming::default().id_of(Source::Facebook, "8888");
    let victim = "EAAB-victim-token";
    let squatted = credentials_secret_name(&id, victim);
    let secrets: Api<K8sSecret> = Api::namespaced(env.sb.client(), "default");
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let squat = |owner: Option<&Channel>| {
        let mut s = secret(&squatted, "page_token", "EAAB-squatter-token");
        let labels = s.metadata.labels.get_or_insert_with(Default::default);
        labels.extend(channel_operator::ownership::managed_labels());
        s.metadata.owner_references = owner.and_then(owner_reference).map(|r| vec![r]);
        s
    };
    secrets
        .create(&PostParams::default(), &squat(None))
        .await
        .unwrap();
    let connect = |token: &'static str| {
        let env = &env;
        async move {
            env.post(
                "channels.facebook.connect",
                json!({"page_id": "8888", "page_token": token}),
            )
            .await
        }
    };

    // A new Channel: 409, and nothing of it stays; the squatter's Secret is untouched.
    let (s, v) = connect(victim).await;
    assert_eq!(s, 409, "{v}");
    assert!(!v.to_string().contains("page-token"), "{v}");
    eventually("the refused Channel is gone", || async {
        env.channels()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    assert_eq!(
        secret_names(&env, "default").await,
        BTreeSet::from([squatted.clone()])
    );

    // An existing Channel, connected with another token; the squatter's Secret comes back
    // posing as the operator's, owned by that Channel.
    secrets
        .delete(&squatted, &Default::default())
        .await
        .unwrap();
    let (s, v) = connect("EAAB-first-token").await;
    assert_eq!(s, 200, "{v}");
    let ch = channels.get(&id).await.unwrap();
    secrets
        .create(&PostParams::default(), &squat(Some(&ch)))
        .await
        .unwrap();
    let (s, v) = connect(victim).await;
    assert_eq!(s, 503, "{v}");
    assert!(message(&v).starts_with("Connect failed"), "{v}");
    let ch = channels.get(&id).await.unwrap();
    assert_eq!(
        ch.spec.credentials_secret_ref.as_ref().unwrap().name,
        squatted
    );
    let ready = ch.ready_condition().unwrap();
    assert_eq!(
        (ready.reason.as_str(), ready.status.as_str()),
        ("CredentialsMissing", "False")
    );
    let asked: Vec<String> = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.to_string())
        .collect();
    assert!(
        asked.iter().all(|u| !u.contains("squatter")),
        "the squatter's token reached Graph: {asked:?}"
    );
    assert!(
        asked.iter().any(|u| u.contains("EAAB-first-token")),
        "{asked:?}"
    );
}
