//! Attacks on the API and the Facebook provider, over real HTTP against the sandbox: derived
//! tokens echoed by the Graph API, names that try to steer Graph URL paths, JWTs not valid yet,
//! and `/metrics` behind the API's auth.

mod support;

use channel_operator::crd::{Channel, Source};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const PAGE_TOKEN: &str = "EAAB-page-token-sec";
const LONG_TOKEN: &str = "long-lived-token-sec";
const PAGE_ACCESS: &str = "page-access-token-sec";

fn assert_no_token(what: &str, text: &str) {
    for t in [PAGE_TOKEN, LONG_TOKEN, PAGE_ACCESS, APP_SECRET] {
        assert!(!text.contains(t), "{t} leaked into {what}: {text}");
    }
}

/// A Graph API that exchanges and reads the page, then refuses the subscription with an error
/// echoing the request, page access token included (as Graph does for some errors).
async fn echoing_graph(env: &Env, page_id: &str) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": LONG_TOKEN})))
        .mount(&env.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{page_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": page_id, "name_with_location_descriptor": "Echo", "access_token": PAGE_ACCESS,
            "is_webhooks_subscribed": false
        })))
        .mount(&env.graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("Bad request: access_token={PAGE_ACCESS}&exchanged={LONG_TOKEN}"),
            "code": 100
        }})))
        .mount(&env.graph)
        .await;
}

#[tokio::test]
async fn echoed_derived_tokens_reach_no_answer_event_status_or_log() {
    let env = Env::with_api().await;
    echoing_graph(&env, "1111").await;
    echoing_graph(&env, "2222").await;

    // Through the API: a 500 whose message is Graph's, scrubbed.
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "1111", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("Bad request"), "{v}");
    assert_no_token("the 500 body", &v.to_string());

    // Declared directly: the status keeps the failure, scrubbed.
    let secret = support::secret("declared-token", "page_token", PAGE_TOKEN);
    env.secrets()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ch = channel(Source::Facebook, "2222")
        .named("declared")
        .credentials("declared-token", "page_token")
        .build();
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    channels.create(&PostParams::default(), &ch).await.unwrap();
    eventually("the declared channel reports the refusal", || async {
        channels
            .get("declared")
            .await
            .unwrap()
            .ready_condition()
            .is_some_and(|c| c.message.contains("Bad request"))
    })
    .await;
    let status = serde_json::to_string(&channels.get("declared").await.unwrap().status).unwrap();
    assert_no_token("the status", &status);

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.sb.client());
    let events = events.list(&ListParams::default()).await.unwrap().items;
    assert!(!events.is_empty(), "the controller published no Event");
    assert_no_token("an Event", &serde_json::to_string(&events).unwrap());

    let logged = log_text();
    assert!(logged.contains("Bad request"), "the failure was not logged");
    assert_no_token("a log line", &logged);
}

#[tokio::test]
async fn names_cannot_steer_graph_url_paths() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let spec = |scid: &str, secret: &str| {
        channel(Source::Facebook, scid)
            .credentials(secret, "page_token")
            .spec()
    };
    // The cluster refuses both, naming the field.
    for (scid, secret, field) in [
        ("../../other/path?x=1#", "token", "sourceChannelId"),
        ("1234", "../other", "credentialsSecretRef.name"),
    ] {
        let err = channels
            .create(
                &PostParams::default(),
                &Channel::new("bad", spec(scid, secret)),
            )
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains(field), "{}", s.message);
            }
            other => panic!("{other}"),
        }
    }
    // The API refuses such a page_id before anything else.
    let (s, v) = env
        .post(
            "channels.facebook.connect",
            json!({"page_id": "../../other/path?x=1#", "page_token": PAGE_TOKEN}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(message(&v).contains("page_id"), "{v}");

    // A page id that got past validation (a Channel stored before it existed, its effect then
    // recorded) still cannot leave its path when the recorded effect is undone.
    let args =
        <channel_operator::providers::ProviderArgs as clap::FromArgMatches>::from_arg_matches(
            &<channel_operator::providers::ProviderArgs as clap::Args>::augment_args(
                clap::Command::new("t"),
            )
            .get_matches_from([
                "t",
                "--facebook-graph-url",
                &format!("{}/v24.0", env.graph.uri()),
            ]),
        )
        .unwrap();
    let providers = channel_operator::providers::Providers::new(&args).unwrap();
    use channel_operator::effects::{EffectKey, EffectKind};
    let sneaky = EffectKey::new(EffectKind::PageSubscription, "../../other/path?x=1#", "app");
    let token = channel_operator::secret::SecretString::new(PAGE_ACCESS);
    let _ = providers
        .for_effect(EffectKind::PageSubscription)
        .undo(&sneaky, Some(&token))
        .await;
    let requests = env.graph.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let url = &requests[0].url;
    assert_eq!(
        url.path(),
        "/v24.0/..%2F..%2Fother%2Fpath%3Fx=1%23/subscribed_apps",
        "{url}"
    );
    assert!(!url.query().unwrap_or_default().contains("x=1"), "{url}");
}

fn jwt(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn jwts_not_valid_yet_are_refused_and_metrics_need_auth() {
    let env = Env::builder()
        .no_controller()
        .api(&["--jwt-secret", "jwt-secret-1"])
        .build()
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let list = |token: String| {
        let env = &env;
        async move {
            env.post_raw(
                "channels.list",
                Some("application/json"),
                b"{}".to_vec(),
                Some(&format!("Bearer {token}")),
            )
            .await
            .0
        }
    };
    let next_year = jwt(
        "jwt-secret-1",
        json!({"user_id": "u1", "nbf": now + 365 * 86_400}),
    );
    assert_eq!(list(next_year).await, 403);
    // Clocks differ a little: a token valid in a few seconds is accepted.
    let soon = jwt("jwt-secret-1", json!({"user_id": "u1", "nbf": now + 5}));
    assert_eq!(list(soon.clone()).await, 200);

    let metrics = |auth: Option<String>| {
        let env = &env;
        async move {
            let mut req = env.http.get(format!("{}/metrics", env.base));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, body) = metrics(None).await;
    assert_eq!(s, 403, "{body}");
    assert!(!body.contains("channel_operator_api"), "{body}");
    let (s, body) = metrics(Some(format!("Bearer {soon}"))).await;
    assert_eq!(s, 200);
    assert!(body.contains("channel_operator_api"), "{body}");
    for open in ["healthz", "readyz", "openapi.json"] {
        let r = env
            .http
            .get(format!("{}/{open}", env.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
}
