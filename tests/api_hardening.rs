//! What the API must not do for a tenant: follow Graph's `paging.next` to another host with the
//! user's token, name a Channel of a namespace it does not serve, accept a name with invisible or
//! format characters, or pass such characters on from a provider's names.

mod support;

use serde_json::json;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn explore_never_follows_paging_off_the_graph_origin() {
    let env = Env::with_api().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .expect(0)
        .named("a host other than the Graph API")
        .mount(&elsewhere)
        .await;
    // Same scheme and host, another port: another origin.
    let next = format!(
        "{}/v24.0/me/accounts?access_token={AUTH_TOKEN}&after=2",
        elsewhere.uri()
    );
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "p1", "name": "First"}],
            "paging": {"next": next}
        })))
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.explore",
            json!({"auth_token": AUTH_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("paging.next"), "{v}");
    assert!(!message(&v).contains(&elsewhere.uri()), "{v}");
    elsewhere.verify().await;
}

/// Answers every generation of Channel `default/mine` the way a controller that names the owner
/// of a claimed id wherever it lives would (this operator's controller names only an owner in
/// the Channel's own namespace, but a status may have been written by an earlier version): Ready
/// False, Duplicate, "... belongs to the older Channel attacker/hidden-owner-15001 ...".
async fn answer_as_a_controller_naming_the_owner(
    channels: kube::Api<channel_operator::crd::Channel>,
) {
    use kube::api::{Patch, PatchParams};
    loop {
        if let Ok(ch) = channels.get("mine").await {
            let generation = ch.metadata.generation.unwrap_or(0);
            let observed = ch.status.as_ref().and_then(|s| s.observed_generation);
            if observed != Some(generation) {
                let status = json!({"status": {
                    "observedGeneration": generation,
                    "connected": false,
                    "conditions": [{
                        "type": "Ready", "status": "False", "reason": "Duplicate",
                        "message": "chat_plugin hidden-15001 belongs to the older Channel \
                                    attacker/hidden-owner-15001; this Channel is not connected",
                        "observedGeneration": generation,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }],
                }});
                let _ = channels
                    .patch_status("mine", &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The API relays the controller's failure messages (a connect, a disconnect), but a message
/// naming a Channel outside the API's namespaces loses that name (`confine::channel_refs`): the API
/// answers about its own namespaces only.
#[tokio::test]
async fn errors_name_no_channel_outside_the_apis_namespaces() {
    use channel_operator::crd::{Channel, Source};
    use kube::api::{Api, PostParams};
    // The test is the controller here.
    let env = Env::builder()
        .no_controller()
        .no_twilio()
        .api(&[])
        .build()
        .await;
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some("attacker".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::all(env.sb.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    // An older Channel in a namespace the API does not serve holds the id ...
    let hidden = channel(Source::ChatPlugin, "hidden-15001")
        .named("hidden-owner-15001")
        .namespace("attacker");
    let attacker: Api<Channel> = Api::namespaced(env.sb.client(), "attacker");
    attacker
        .create(&PostParams::default(), &hidden.build())
        .await
        .unwrap();
    // ... and the one in the API's namespace is a Duplicate whose message names it.
    let mine = channel(Source::ChatPlugin, "hidden-15001").named("mine");
    let default: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    default
        .create(&PostParams::default(), &mine.build())
        .await
        .unwrap();
    let controller = tokio::spawn(answer_as_a_controller_naming_the_owner(default));
    env.channel_until("mine", "Duplicate", |v| cond(v, "reason") == "Duplicate")
        .await;
    // A connect of the same id is refused as a conflict (409) that names no Channel at all.
    let (s, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "hidden-15001"}),
        )
        .await;
    assert_eq!(s, 409, "connect: {v}");
    assert!(
        !message(&v).contains("attacker") && !message(&v).contains("hidden-owner"),
        "the connect's answer names a Channel of another namespace: {v}"
    );
    // A disconnect relays the controller's verdict, with the foreign Channel's name confined.
    let (s, v) = env
        .post(
            "channels.chatplugin.disconnect",
            json!({"channel_id": mine.id()}),
        )
        .await;
    assert_eq!(s, 500, "disconnect: {v}");
    assert_eq!(
        message(&v),
        "chat_plugin hidden-15001 belongs to the older Channel outside the API's namespaces; \
         this Channel is not connected",
        "the disconnect names a Channel of another namespace, or relays nothing"
    );
    controller.abort();
}

/// Names that look like "Support" (or like nothing) and are not: every invisible or format
/// character of the name rule, among them the ones the issue found passing.
const HIDDEN_NAMES: &[&str] = &[
    "Support\u{202E}gpj.exe",
    "Sup\u{200B}port",
    "\u{2066}Support\u{2069}",
    "Support\u{FEFF}",
    "Sup\u{00AD}port",
    "Sup\u{034F}port",
    "Sup\u{2028}port",
    "Sup\u{2029}port",
    "\u{3164}",
    "Support\u{FE0F}",
    "\u{2800}",
    "\u{115F}Support",
    "Sup\u{1160}port",
    "Sup\u{FFA0}port",
    "Support\u{E0041}",
    "Support\u{E0100}",
    "Support\u{E000}",
    "Support\u{0378}",
    "Support\u{0007}",
];

#[tokio::test]
async fn names_refuse_invisible_and_format_characters() {
    use channel_operator::crd::{Channel, Source};
    use kube::api::{Api, PostParams};
    let env = Env::with_api().await;
    let default: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    for (i, name) in HIDDEN_NAMES.iter().enumerate() {
        // The cluster refuses it in spec.name, and in a chat plugin's id (its name) ...
        let ch = channel(Source::ChatPlugin, &format!("site-{i}"))
            .named(&format!("hidden-{i}"))
            .display_name(name);
        match default.create(&PostParams::default(), &ch.build()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name:?}: {s:?}");
                assert!(s.message.contains("spec.name"), "{name:?}: {}", s.message);
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
        let ch = channel(Source::ChatPlugin, name).named(&format!("hidden-id-{i}"));
        match default.create(&PostParams::default(), &ch.build()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name:?}: {s:?}");
                assert!(
                    s.message.contains("spec.sourceChannelId"),
                    "{name:?}: {}",
                    s.message
                );
            }
            other => panic!("{name:?} was not refused as a sourceChannelId: {other:?}"),
        }
        // ... and the API with 400 in a connect, an update and a Google agent id.
        let (s, v) = env
            .post("channels.chatplugin.connect", json!({"name": name}))
            .await;
        assert_eq!(s, 400, "{name:?}: {v}");
        assert!(message(&v).contains("name"), "{v}");
        let (s, v) = env
            .post(
                "channels.update",
                json!({"channel_id": PLUGIN_ID, "name": name}),
            )
            .await;
        assert_eq!(s, 400, "{name:?}: {v}");
        let (s, v) = env
            .post(
                "channels.google.connect",
                json!({"gbm_id": name, "name": "Agent"}),
            )
            .await;
        assert_eq!(s, 400, "{name:?}: {v}");
        assert!(message(&v).contains("gbm_id"), "{v}");
    }
    // Names in any script, with combining marks and spaces, stay welcome.
    for name in ["Поддержка 日本 שלום", "Cafe\u{0301} Zoë", "नमस्ते"] {
        let (s, v) = env
            .post("channels.chatplugin.connect", json!({"name": name}))
            .await;
        assert_eq!(s, 200, "{name:?}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invisible_characters_of_a_graph_page_name_are_stripped() {
    let env = Env::with_api().await;
    let reported = "Pay\u{202E}lapyap\u{200B} Shop";
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": LONG_TOKEN})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/100000000001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "100000000001",
            "name_with_location_descriptor": reported,
            "access_token": PAGE_ACCESS,
            "is_webhooks_subscribed": false
        })))
        .mount(&env.graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "100000000001", "name_with_location_descriptor": reported,
                      "access_token": PAGE_ACCESS}]
        })))
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "100000000001", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"]["name"], "Paylapyap Shop", "{v}");
    let ch = env.get(FB_ID).await;
    assert_eq!(ch["status"]["pageName"], "Paylapyap Shop", "{ch}");
    let (s, v) = env
        .post("channels.info", json!({"channel_id": FB_ID}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["metadata"]["name"], "Paylapyap Shop", "{v}");
    let (s, v) = env
        .post(
            "channels.facebook.explore",
            json!({"auth_token": AUTH_TOKEN}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["name"], "Paylapyap Shop", "{v}");
}

/// Every encoded form of `token` a provider might echo.
fn encoded_forms(token: &str) -> Vec<String> {
    use base64::Engine;
    let form: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    vec![
        form.clone(),
        form.replace('+', "%20"),
        serde_json::to_string(token)
            .unwrap()
            .trim_matches('"')
            .replace('/', "\\/"),
        base64::engine::general_purpose::STANDARD.encode(token),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_tokens_echoed_by_graph_reach_no_answer_event_status_or_log() {
    let mut env = Env::with_api().await;
    let page_token = "EAAB/page+token=1";
    let long = "long/lived+token=2";
    let access = "page/access+token=3";
    for t in [page_token, long, access] {
        env.tokens.push(t.to_owned());
        env.tokens.extend(encoded_forms(t));
    }
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": long})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/4444"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "4444", "name_with_location_descriptor": "Echo", "access_token": access,
            "is_webhooks_subscribed": false
        })))
        .mount(&env.graph)
        .await;
    let echoed: Vec<String> = [page_token, long, access]
        .iter()
        .flat_map(|t| encoded_forms(t))
        .collect();
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("Bad request: {}", echoed.join(" ")),
            "code": 100
        }})))
        .mount(&env.graph)
        .await;
    // env.post fails the test if any form appears in the answer.
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "4444", "page_token": page_token}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("Bad request"), "{v}");
    assert!(
        log_text().contains("Bad request"),
        "the failure was not logged"
    );
    env.assert_no_secret_leaked().await;
}
