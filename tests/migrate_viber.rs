//! A Viber channel moved from Airy Core keeps Airy Core's id, which is not the deterministic one
//! (Airy Core hashes the account id alone): migrate pins it, the Channel names the credentials
//! Secret its owner creates (Airy Core never lists the bot token), and the API's
//! `channels.viber.connect` afterwards finds that Channel instead of making a second one.

mod support;

use channel_operator::channel_id::channel_id_string;
use channel_operator::crd::Channel;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use support::airy::{fake_airy, migrate, named, Release, AIRY_TOKEN};
use support::*;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VIBER_TOKEN: &str = "viber-bot-token-do-not-leak-0005";
const VIBER_ID: &str = "pa:5469875432398472639";
const VIBER_HOOK: &str = "https://hooks.example.org/viber";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viber_channel_keeps_airy_cores_id_and_the_api_finds_it() {
    let viber = MockServer::start().await;
    let url = viber.uri();
    let hook = [
        "--viber-api-url",
        url.as_str(),
        "--viber-webhook-url",
        VIBER_HOOK,
    ];
    let mut env = Env::builder()
        .controller_args(&hook)
        .controller_later()
        .api(&["--viber-api-url", &url, "--viber-auth-token", VIBER_TOKEN])
        .build()
        .await;
    env.tokens
        .extend([VIBER_TOKEN.to_owned(), AIRY_TOKEN.to_owned()]);
    let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
    Mock::given(method("POST"))
        .and(path("/pa/get_account_info"))
        .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
        .respond_with(ok(json!({"status": 0, "id": VIBER_ID, "name": "Shop Bot"})))
        .mount(&viber)
        .await;
    // Set once, by the controller; the API's connect, naming its own Secret with the same bot's
    // token, connects the Channel again (the token read again) without setting it twice: the
    // Channel's record says it holds the webhook already.
    Mock::given(method("POST"))
        .and(path("/pa/set_webhook"))
        .and(body_json(
            json!({"url": VIBER_HOOK, "send_name": true, "send_photo": true}),
        ))
        .respond_with(ok(json!({"status": 0})))
        .expect(1)
        .mount(&viber)
        .await;

    let airy_id = channel_id_string("", VIBER_ID);
    assert_ne!(airy_id, channel_id_string("viber", VIBER_ID));
    let airy = fake_airy(vec![named(
        Release::Connected,
        &airy_id,
        "viber",
        VIBER_ID,
        "Shop Bot",
    )])
    .await;
    let args = [
        "--from",
        &airy.url,
        "--namespace",
        "default",
        "--token",
        AIRY_TOKEN,
        "--apply",
    ];
    let run = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert!(run.ok(), "{run:#?}");
    let name = format!("viber-pa-5469875432398472639-{}", &airy_id[..8]);
    let secret = format!("{name}-credentials");
    assert!(
        run.stderr.contains(&format!(
            "needs credentials: {name} names the Secret {secret}"
        )),
        "{}",
        run.stderr
    );
    assert!(
        viber.received_requests().await.unwrap().is_empty(),
        "migrate called Viber"
    );
    env.secrets()
        .create(
            &PostParams::default(),
            &support::secret(&secret, "page_token", VIBER_TOKEN),
        )
        .await
        .unwrap();
    // Once it is there, a run no longer asks for it.
    let again = migrate(Some(&env.kubeconfig), &args, &[]).await;
    assert!(
        again.ok() && again.stderr.contains("0 written, 1 unchanged"),
        "{again:#?}"
    );
    assert!(
        !again.stderr.contains("needs credentials"),
        "{}",
        again.stderr
    );
    env.start_controller().await;
    env.wait_ready(&name).await;
    let (status, v) = env.post("channels.list", json!({"source": "viber"})).await;
    assert_eq!(
        (status, v["data"][0]["id"].as_str()),
        (200, Some(airy_id.as_str())),
        "{v}"
    );

    let (status, v) = env.post("channels.viber.connect", json!({})).await;
    assert_eq!(
        (status, v["id"].as_str()),
        (200, Some(airy_id.as_str())),
        "{v}"
    );
    let channels: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let all = channels.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 1, "no second Channel of the bot");
    env.finish().await;
}
