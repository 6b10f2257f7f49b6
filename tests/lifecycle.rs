//! Channels walked through several steps across both halves, the HTTP API and the controller
//! (and kubectl), for every source: every answer, the Channel, exactly the Secrets left, and the
//! provider calls (each fake expects its exact count: one undo per disconnect, one connect per
//! reconnect; checked by `Env::finish`).

mod support;

use channel_operator::crd::{Channel, Source};
use channel_operator::ownership::credentials_secret_name;
use kube::Api;
use serde_json::{json, Value};
use support::*;

/// One source's inputs: the connect endpoint, a body (the first inputs) and other inputs for
/// the same channel (another token for Facebook, another name or image for the others).
struct Case {
    source: Source,
    endpoint: &'static str,
    scid: String,
    first: Value,
    other: Value,
}

const NUMBER: &str = "+4915550042";

fn case(source: Source, tokens: &[&str]) -> Case {
    let named = |name: &str, mut v: Value| {
        v["name"] = json!(name);
        v
    };
    let (endpoint, scid, base) = match source {
        Source::Facebook => {
            let page = page_id("life");
            let first = json!({"page_id": page, "page_token": tokens[0]});
            let other = json!({"page_id": page, "page_token": tokens[1]});
            return Case {
                source,
                endpoint: "channels.facebook.connect",
                scid: page,
                first,
                other,
            };
        }
        Source::ChatPlugin => {
            // The name is the website id: the other inputs are an image.
            let first = json!({"name": "site-life"});
            let other = json!({"name": "site-life", "image_url": "https://example.org/b.png"});
            return Case {
                source,
                endpoint: "channels.chatplugin.connect",
                scid: "site-life".into(),
                first,
                other,
            };
        }
        Source::Google => (
            "channels.google.connect",
            "gbm-life".to_owned(),
            json!({"gbm_id": "gbm-life"}),
        ),
        Source::TwilioSms => (
            "channels.twilio.sms.connect",
            NUMBER.to_owned(),
            json!({"phone_number": NUMBER}),
        ),
        Source::TwilioWhatsapp => (
            "channels.twilio.whatsapp.connect",
            format!("whatsapp:{NUMBER}"),
            json!({"phone_number": NUMBER}),
        ),
        Source::Instagram | Source::Whatsapp | Source::Viber => {
            unreachable!("{source}: walked through in tests/sources_lifecycle.rs")
        }
    };
    Case {
        source,
        endpoint,
        scid,
        first: named("First", base.clone()),
        other: named("Other", base),
    }
}

impl Case {
    fn id(&self) -> String {
        channel_operator::channel_id::channel_id_string(self.source.as_str(), &self.scid)
    }
    fn disconnect_endpoint(&self) -> String {
        self.endpoint.replace(".connect", ".disconnect")
    }
}

/// An environment with the source's provider fake expecting `connects` connects and
/// `disconnects` disconnects with the first inputs (Facebook: none with the second token);
/// returns the case.
async fn env_for(source: Source, connects: u64, disconnects: u64) -> (Env, Case) {
    let mut env = Env::builder().controller_later().api(&[]).build().await;
    let mut tokens = vec![];
    match source {
        Source::Facebook => {
            tokens.push(
                env.fake_page_token("life", 1, connects, disconnects)
                    .await
                    .page_token,
            );
            tokens.push(env.fake_page_token("life", 2, 0, 0).await.page_token);
        }
        Source::TwilioSms | Source::TwilioWhatsapp => {
            env.fake_twilio_number(NUMBER, "PN42", connects, disconnects)
                .await;
        }
        Source::Google | Source::ChatPlugin => {}
        Source::Instagram | Source::Whatsapp | Source::Viber => {
            unreachable!("{source}: walked through in tests/sources_lifecycle.rs")
        }
    }
    env.start_controller().await;
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    (env, case(source, &refs))
}

/// The Channel (by object name): its uid after checking its spec and Ready reason.
async fn channel_is(env: &Env, name: &str, connected: bool) -> String {
    let api: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let ch = api.get(name).await.unwrap();
    assert_eq!(ch.spec.connected, connected, "{name}: spec.connected");
    let want = if connected {
        "Connected"
    } else {
        "Disconnected"
    };
    assert_eq!(ready(&ch), Some(("True".into(), want.into())), "{name}");
    ch.metadata.uid.unwrap()
}

/// The Secrets of the Channel's namespace with a Facebook Channel `name` connected with `token`
/// (or disconnected since), besides `others`: its credentials only, connected or not (what the
/// operator derives is in the Channel's record in its state namespace); none for the other
/// sources.
fn secrets_of(case: &Case, name: &str, token: &str, others: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    if case.source == Source::Facebook {
        v.push(credentials_secret_name(name, token));
    }
    v.sort();
    v
}

/// Checks that the sources without a provider call made none, then finishes (which checks the
/// exact counts of the others).
async fn finish(env: Env, source: Source) {
    if matches!(source, Source::Google | Source::ChatPlugin) {
        for fake in [&env.graph, &env.twilio] {
            let calls = fake.received_requests().await.unwrap();
            assert!(calls.is_empty(), "{source} called a provider: {calls:?}");
        }
    }
    env.finish().await;
}

fn token_of(body: &Value) -> &str {
    body["page_token"].as_str().unwrap_or_default()
}

/// Through the API: connect → disconnect → connect again with the same inputs → with other
/// inputs → back to the first. One Channel throughout.
async fn api_lifecycle(source: Source) {
    let (env, c) = env_for(source, 2, 1).await;
    let id = c.id();
    let (s, first) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["connected"], true);
    let uid = channel_is(&env, &id, true).await;
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, &id, token_of(&c.first), &[])
    );

    let gone = json!({"channel_id": id});
    assert_eq!(
        env.post(&c.disconnect_endpoint(), gone.clone()).await,
        (200, json!({}))
    );
    assert_eq!(channel_is(&env, &id, false).await, uid);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, &id, token_of(&c.first), &[])
    );
    let (s, v) = env.post("channels.info", gone.clone()).await;
    assert_eq!(s, 404, "{v}");

    let (s, again) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(
        (s, &again),
        (200, &first),
        "the reconnect with the same inputs"
    );
    assert_eq!(channel_is(&env, &id, true).await, uid);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, &id, token_of(&c.first), &[])
    );

    let (s, other) = env.post(c.endpoint, c.other.clone()).await;
    assert_eq!(s, 200, "{other}");
    assert_eq!(other["id"], id.as_str());
    assert_eq!(channel_is(&env, &id, true).await, uid);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, &id, token_of(&c.other), &[])
    );

    let (s, back) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["id"], id.as_str());
    assert_eq!(back["metadata"]["name"], first["metadata"]["name"]);
    assert_eq!(channel_is(&env, &id, true).await, uid);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, &id, token_of(&c.first), &[])
    );
    let (_, listed) = env.post("channels.list", json!({})).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    finish(env, source).await;
}

/// Through kubectl and the API: a Channel declared with kubectl (disconnected) is connected,
/// updated and disconnected through the API (one object throughout), connected again, deleted
/// with kubectl (the finalizer disconnects it), then connected again through the API.
async fn kubectl_lifecycle(source: Source) {
    let (env, c) = env_for(source, 3, 2).await;
    let id = c.id();
    let mut declared = channel(source, &c.scid).named("declared").connected(false);
    let mut users = vec![];
    if source == Source::Facebook {
        env.apply(&secret_yaml(
            "declared-token",
            "page_token",
            token_of(&c.first),
        ))
        .await;
        declared = declared.credentials("declared-token", "page_token");
        users.push("declared-token");
    }
    env.apply(&declared.yaml()).await;
    env.channel_until("declared", "Disconnected", |v| {
        cond(v, "reason") == "Disconnected"
    })
    .await;
    let uid = channel_is(&env, "declared", false).await;

    let (s, connected) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(s, 200, "{connected}");
    assert_eq!(connected["id"], id.as_str());
    assert_eq!(channel_is(&env, "declared", true).await, uid);
    let token = token_of(&c.first);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, "declared", token, &users)
    );
    let (s, updated) = env
        .post(
            "channels.update",
            json!({"channel_id": id, "name": "Renamed"}),
        )
        .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["metadata"]["name"], "Renamed");
    let gone = json!({"channel_id": id});
    assert_eq!(
        env.post(&c.disconnect_endpoint(), gone.clone()).await,
        (200, json!({}))
    );
    assert_eq!(channel_is(&env, "declared", false).await, uid);
    assert_eq!(
        env.secret_names().await,
        secrets_of(&c, "declared", token, &users)
    );
    let (s, again) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(channel_is(&env, "declared", true).await, uid);

    env.kubectl_ok(&["delete", "channel", "declared", KUBECTL_TIMEOUT], None)
        .await;
    env.channel_gone("declared").await;
    let mut left: Vec<String> = users.iter().map(|s| s.to_string()).collect();
    left.sort();
    eventually("the deleted Channel's Secrets to be gone", || async {
        env.secret_names().await == left
    })
    .await;

    let (s, fresh) = env.post(c.endpoint, c.first.clone()).await;
    assert_eq!(s, 200, "{fresh}");
    assert_eq!(fresh["id"], id.as_str());
    assert_ne!(channel_is(&env, &id, true).await, uid, "a new Channel");
    assert_eq!(env.secret_names().await, secrets_of(&c, &id, token, &users));
    finish(env, source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_through_the_api() {
    api_lifecycle(Source::Facebook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_through_the_api() {
    api_lifecycle(Source::Google).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sms_through_the_api() {
    api_lifecycle(Source::TwilioSms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_whatsapp_through_the_api() {
    api_lifecycle(Source::TwilioWhatsapp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_plugin_through_the_api() {
    api_lifecycle(Source::ChatPlugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_through_kubectl_and_the_api() {
    kubectl_lifecycle(Source::Facebook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_through_kubectl_and_the_api() {
    kubectl_lifecycle(Source::Google).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sms_through_kubectl_and_the_api() {
    kubectl_lifecycle(Source::TwilioSms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_whatsapp_through_kubectl_and_the_api() {
    kubectl_lifecycle(Source::TwilioWhatsapp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_plugin_through_kubectl_and_the_api() {
    kubectl_lifecycle(Source::ChatPlugin).await;
}
