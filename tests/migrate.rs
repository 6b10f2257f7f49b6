//! `channel-operator migrate` against a fake Airy Core with five channels (issue #30's done-when):
//! the dry run prints five Channels and no token; `--apply` exits 0 and makes no provider call,
//! nor does the controller adopting them (Airy Core made their page subscriptions: the adoption
//! records migrate wrote in the state namespace say so), and our `channels.list` equals Airy
//! Core's; a second run changes nothing; a later disconnect undoes exactly what Airy Core made;
//! a wrong token exits non-zero saying so.

mod support;

use std::collections::BTreeMap;

use channel_operator::channel_id::channel_id_string;
use channel_operator::crd::Channel;
use channel_operator::effects::Origin;
use channel_operator::ownership::{credentials_secret_name, PAGE_TOKEN_KEY};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{json, Value};
use support::airy::{comparable, fake_airy, listed, migrate, Release, AIRY_TOKEN};
use support::fakes::PageTokens;
use support::*;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const IG_ACCOUNT: &str = "17841400000000001";
const SMS: &str = "+491234567";

/// The five channels of the issue, as Airy Core 0.37 or later lists them (chat plugin id drawn
/// at random), and the Facebook and Instagram tokens.
fn five(plugin_id: &str) -> (Vec<Value>, PageTokens, PageTokens) {
    let (fb, ig) = (PageTokens::of("fb", 1), PageTokens::of("ig", 1));
    let c = Release::Connected;
    let channels = vec![
        listed(
            c,
            &channel_id_string("facebook", &page_id("fb")),
            "facebook",
            &page_id("fb"),
            json!({"name": "Page fb", "image_url": "https://img.example.org/fb.png",
                   "page_id": page_id("fb"), "page_token": fb.page_token}),
        ),
        listed(
            c,
            &channel_id_string("instagram", IG_ACCOUNT),
            "instagram",
            IG_ACCOUNT,
            json!({"name": "Page ig Instagram account", "image_url": "https://img.example.org/ig.png",
                   "page_id": page_id("ig"), "page_token": ig.page_token, "account_id": IG_ACCOUNT}),
        ),
        listed(
            c,
            plugin_id,
            "chatplugin",
            "website-identifier-42",
            json!({"name": "website-identifier-42"}),
        ),
        listed(
            c,
            GOOGLE_ID,
            "google",
            "gbm-id",
            json!({"name": "Agent", "image_url": "https://img.example.org/agent.png"}),
        ),
        listed(
            c,
            SMS_ID,
            "twilio.sms",
            SMS,
            json!({"name": "twilio.sms bab03"}),
        ),
    ];
    (channels, fb, ig)
}

/// The Channels of a `-o yaml` output.
fn channels_of(yaml: &str) -> Vec<Channel> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(Value::deserialize)
        .map(Result::unwrap)
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

/// resourceVersion of every Channel and Secret of `default`.
async fn versions(env: &Env) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    for c in channels.list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("channel/{}", c.name_any()),
            c.resource_version().unwrap(),
        );
    }
    for s in env.secrets().list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("secret/{}", s.name_any()),
            s.resource_version().unwrap(),
        );
    }
    out
}

/// resourceVersion of every adoption record of the state namespace.
async fn adoption_versions(env: &Env) -> BTreeMap<String, String> {
    state_secrets(env, "adopt-")
        .await
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap()))
        .collect()
}

/// metadata.generation of every Channel of `channels`' namespace.
async fn generations(channels: &Api<Channel>) -> Vec<Option<i64>> {
    let list = channels.list(&ListParams::default()).await.unwrap();
    list.iter().map(|c| c.metadata.generation).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_airy_channels_move_with_their_ids_and_tokens() {
    let naming = ["--chatplugin-naming", "chatplugin"];
    let mut env = Env::builder()
        .no_twilio()
        .controller_args(&naming)
        .controller_later()
        .api(&naming)
        .build()
        .await;
    let plugin_id = uuid::Uuid::new_v4().to_string();
    let (channels, fb, ig) = five(&plugin_id);
    let airy = fake_airy(channels).await;
    env.tokens.push(AIRY_TOKEN.into());
    let tokens: Vec<String> = [
        AIRY_TOKEN.to_owned(),
        fb.page_token.clone(),
        ig.page_token.clone(),
    ]
    .into();
    env.tokens
        .extend([fb.page_token.clone(), ig.page_token.clone()]);
    let base = [
        "--from",
        &airy.url,
        "--namespace",
        "default",
        "--chatplugin-naming",
        "chatplugin",
        "--state-namespace",
        STATE_NS,
        "--facebook-app-id",
        FLAGS_APP.id,
    ];

    // The dry run: five Channels for Git, no token, no cluster (the kubeconfig does not exist).
    let mut args = base.to_vec();
    args.extend(["--token", AIRY_TOKEN, "--dry-run", "-o", "yaml"]);
    let dry = migrate(None, &args, &[]).await;
    assert!(dry.ok(), "{dry:#?}");
    for t in &tokens {
        assert!(
            !dry.stdout.contains(t.as_str()) && !dry.stderr.contains(t.as_str()),
            "a token was printed: {dry:#?}"
        );
    }
    let printed = channels_of(&dry.stdout);
    let names: Vec<String> = printed.iter().map(|c| c.name_any()).collect();
    let fb_name = format!("facebook-{}", page_id("fb"));
    let ig_name = format!("instagram-{IG_ACCOUNT}");
    let plugin_name = format!("chatplugin-website-identifier-42-{}", &plugin_id[..8]);
    assert_eq!(
        names,
        [
            fb_name.as_str(),
            &ig_name,
            &plugin_name,
            "google-gbm-id",
            "twilio-sms-491234567"
        ],
        "{}",
        dry.stdout
    );
    let pinned: Vec<Option<&str>> = printed
        .iter()
        .map(|c| c.spec.channel_id.as_deref())
        .collect();
    assert_eq!(pinned, [None, None, Some(plugin_id.as_str()), None, None]);
    let fb_secret = credentials_secret_name(&fb_name, &fb.page_token);
    let ig_secret = credentials_secret_name(&ig_name, &ig.page_token);
    for secret in [&fb_secret, &ig_secret] {
        assert!(
            dry.stdout
                .contains(&format!("Secret {secret} (key page_token)")),
            "{}",
            dry.stdout
        );
    }
    assert!(
        dry.stderr
            .contains("adoption records: --apply would write 2"),
        "{}",
        dry.stderr
    );
    assert_eq!(airy.requests.load(std::sync::atomic::Ordering::SeqCst), 1);

    // --apply, the token from the environment: five Channels, two Secrets, no provider call.
    let mut args = base.to_vec();
    args.push("--apply");
    let applied = migrate(Some(&env.kubeconfig), &args, &[("AIRY_TOKEN", AIRY_TOKEN)]).await;
    assert!(applied.ok(), "{applied:#?}");
    assert!(
        applied
            .stderr
            .contains("5 Channels in namespace default: 5 written, 0 unchanged (1 pinning"),
        "{}",
        applied.stderr
    );
    assert!(
        applied.stderr.contains("credentials Secrets: 2 written"),
        "{}",
        applied.stderr
    );
    // The admin's word for what Airy Core made: the Facebook and Instagram page subscriptions.
    assert!(
        applied
            .stderr
            .contains("adoption records: 2 written, 0 unchanged"),
        "{}",
        applied.stderr
    );
    let adoptions = adoption_versions(&env).await;
    assert_eq!(adoptions.len(), 2, "{adoptions:?}");
    assert!(
        env.graph.received_requests().await.unwrap().is_empty(),
        "migrate called the Graph API"
    );
    assert!(
        env.twilio.received_requests().await.unwrap().is_empty(),
        "migrate called Twilio"
    );
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    for (secret, channel, tokens) in [(&fb_secret, &fb_name, &fb), (&ig_secret, &ig_name, &ig)] {
        let s = env.secrets().get(secret).await.unwrap();
        let ch = channels.get(channel).await.unwrap();
        let labels = s.labels();
        assert_eq!(
            labels.get("airy.co/credentials").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            labels.get("airy.co/migrated").map(String::as_str),
            Some("true")
        );
        let data = s.data.as_ref().unwrap().get(PAGE_TOKEN_KEY).unwrap();
        assert_eq!(data.0, tokens.page_token.as_bytes());
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (ch.uid().unwrap().as_str(), Some(true))
        );
        assert_eq!(
            ch.spec.credentials_secret_ref.as_ref().unwrap().name,
            *secret
        );
    }
    let ig_channel = channels.get(&ig_name).await.unwrap();
    assert_eq!(ig_channel.spec.instagram.unwrap().page_id, page_id("ig"));

    // A second run, the token from a file: nothing moves.
    let before = versions(&env).await;
    let file = env.dir.path().join("airy-token");
    std::fs::write(&file, format!("{AIRY_TOKEN}\n")).unwrap();
    let mut args = base.to_vec();
    args.extend(["--token-file", file.to_str().unwrap(), "--apply"]);
    let again = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert!(again.ok(), "{again:#?}");
    assert!(
        again.stderr.contains("0 written, 5 unchanged"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains("credentials Secrets: 0 written, 2 unchanged"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains("adoption records: 0 written, 2 unchanged"),
        "{}",
        again.stderr
    );
    assert_eq!(versions(&env).await, before, "a second run wrote something");
    assert_eq!(adoption_versions(&env).await, adoptions);

    // The controller adopts them, without any provider call; then our channels.list is Airy
    // Core's.
    env.nothing_else().await;
    env.start_controller().await;
    let want = comparable(&airy.list.lock().unwrap().clone());
    eventually_ok(
        TIMEOUT,
        "our channels.list to equal Airy Core's",
        || async {
            let (status, v) = env.post("channels.list", json!({})).await;
            let ours = json!(comparable(&v));
            if status == 200 && ours == json!(want) {
                Ok(())
            } else {
                Err(format!("\nours: {ours:#}\nAiry Core's: {:#}", json!(want)))
            }
        },
    )
    .await;
    let (status, v) = env
        .post("channels.info", json!({"channel_id": plugin_id}))
        .await;
    assert_eq!(
        (status, v["source"].as_str()),
        (200, Some("chatplugin")),
        "{v}"
    );
    no_secret(&v);
    for name in [&fb_name, &ig_name] {
        env.wait_ready(name).await;
    }
    assert!(
        env.graph.received_requests().await.unwrap().is_empty()
            && env.twilio.received_requests().await.unwrap().is_empty(),
        "the controller called a provider to adopt what Airy Core made"
    );
    for (name, page) in [(&fb_name, page_id("fb")), (&ig_name, page_id("ig"))] {
        let ch = channels.get(name).await.unwrap();
        let effects = &ch.status.as_ref().unwrap().effects;
        assert_eq!(effects.len(), 1, "{effects:?}");
        let e = &effects[0];
        assert_eq!(
            (e.resource.as_str(), e.account.as_str(), e.origin),
            (page.as_str(), FLAGS_APP.id, Some(Origin::Adopted))
        );
        assert!(record(&env, &ch.uid().unwrap()).await.is_some());
    }
    // Used up: the adoption records are gone, the Channels' records hold what they said.
    assert!(adoption_versions(&env).await.is_empty());
    let leases: Api<Lease> = Api::namespaced(env.sb.client(), STATE_NS);
    assert!(leases
        .get_opt(&format!("claim-{plugin_id}"))
        .await
        .unwrap()
        .is_some());

    // Once connected, a third run still writes nothing of migrate's.
    let before_generations = generations(&channels).await;
    let secrets = [&fb_secret, &ig_secret].map(|s| s.to_string());
    let mut secret_versions = Vec::new();
    for s in &secrets {
        secret_versions.push(env.secrets().get(s).await.unwrap().resource_version());
    }
    let third = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert!(
        third.ok() && third.stderr.contains("0 written, 5 unchanged"),
        "{third:#?}"
    );
    assert_eq!(generations(&channels).await, before_generations);
    for (s, v) in secrets.iter().zip(secret_versions) {
        assert_eq!(
            env.secrets().get(s).await.unwrap().resource_version(),
            v,
            "{s}"
        );
    }
    // Adopted: no adoption record is written again.
    assert!(
        third
            .stderr
            .contains("adoption records: 0 written, 0 unchanged"),
        "{}",
        third.stderr
    );
    assert!(adoption_versions(&env).await.is_empty());

    // Disconnected: the subscriptions Airy Core's app made are removed, once each, with the
    // tokens Airy Core listed; nothing else is called.
    for (page, tokens) in [("fb", &fb), ("ig", &ig)] {
        Mock::given(method("DELETE"))
            .and(path(format!("/v24.0/{}/subscribed_apps", page_id(page))))
            .and(query_param("access_token", tokens.page_token.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
            .expect(1)
            .named(format!(
                "unsubscribe {page} with the token Airy Core listed"
            ))
            .mount(&env.graph)
            .await;
    }
    let fb_id = channel_id_string("facebook", &page_id("fb"));
    let ig_id = channel_id_string("instagram", IG_ACCOUNT);
    for (source, id) in [("facebook", &fb_id), ("instagram", &ig_id)] {
        let (status, v) = env
            .post(
                &format!("channels.{source}.disconnect"),
                json!({ "channel_id": id }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    for name in [&fb_name, &ig_name] {
        let uid = channels.get(name).await.unwrap().uid().unwrap();
        no_record(&env, &uid).await;
    }
    let calls: Vec<String> = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");

    // A wrong token: non-zero, saying so, and nothing printed of either token.
    let mut args = base.to_vec();
    args.extend(["--token", "not-the-airy-token-0004", "--apply"]);
    let wrong = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert_ne!(wrong.code, Some(0), "{wrong:#?}");
    assert!(
        wrong.stderr.contains("refused the token (HTTP 403)"),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("not-the-airy-token-0004") && !wrong.stderr.contains(AIRY_TOKEN)
    );
    env.finish().await;
}
