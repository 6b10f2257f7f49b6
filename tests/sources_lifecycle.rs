//! Instagram, WhatsApp Cloud API and Viber channels end to end, against the sandbox, the real
//! controller and the HTTP API, with wiremock fakes of Graph and Viber pinning every call that
//! changes something at the provider (method, path, query, header, body) to its exact count:
//!
//! - through the API: connect, re-check, info and list, disconnect, connect again with the same
//!   inputs, disconnect, then `kubectl delete`;
//! - through kubectl: apply, re-check, `connected: false`, `connected: true`, delete;
//!
//! one connect per connect and one undo per disconnect or delete, and no token in any answer,
//! log line, Event or status.

mod support;

use channel_operator::channel_id::channel_id_string;
use channel_operator::providers::whatsapp::NUMBER_FIELDS;
use serde_json::{json, Value};
use support::*;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT: &str = "17841400000000001";
const NUMBER: &str = "106540352242922";
const WABA: &str = "102290129340398";
const WA_USER: &str = "EAAwa-user-token-do-not-leak";
const WA_LONG: &str = "EAAwa-long-lived-do-not-leak";
const VIBER_TOKEN: &str = "viber-bot-token-do-not-leak-0003";
const VIBER_ID: &str = "pa:5469875432398472639";
const VIBER_HOOK: &str = "https://hooks.example.org/viber";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    Instagram,
    Whatsapp,
    Viber,
}

impl Case {
    fn source(self) -> &'static str {
        match self {
            Case::Instagram => "instagram",
            Case::Whatsapp => "whatsapp",
            Case::Viber => "viber",
        }
    }

    fn scid(self) -> &'static str {
        match self {
            Case::Instagram => ACCOUNT,
            Case::Whatsapp => NUMBER,
            Case::Viber => VIBER_ID,
        }
    }

    fn id(self) -> String {
        channel_id_string(self.source(), self.scid())
    }
}

/// The environment: controller (re-checking every second) and API, Graph and Viber fakes.
async fn env(viber: &MockServer) -> Env {
    let url = viber.uri();
    let mut env = Env::builder()
        .no_twilio()
        .controller_args(&[
            "--resync-seconds",
            "1",
            "--viber-api-url",
            &url,
            "--viber-webhook-url",
            VIBER_HOOK,
        ])
        .api(&["--viber-api-url", &url, "--viber-auth-token", VIBER_TOKEN])
        .build()
        .await;
    env.tokens
        .extend([WA_USER, WA_LONG, VIBER_TOKEN].map(String::from));
    env
}

/// Mounts the provider fakes of `case`: exactly `connects` connects and `undos` undos (for
/// WhatsApp, of the business account subscription when `waba`, else none at all). Returns the
/// credentials token the user gives.
async fn mount(
    env: &mut Env,
    viber: &MockServer,
    case: Case,
    connects: u64,
    undos: u64,
    waba: bool,
) -> String {
    match case {
        Case::Instagram => {
            env.fake_page_token("ig", 1, connects, undos)
                .await
                .page_token
        }
        Case::Whatsapp => {
            let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
            Mock::given(method("GET"))
                .and(path("/v24.0/oauth/access_token"))
                .and(query_param("grant_type", "fb_exchange_token"))
                .and(query_param("client_secret", APP_SECRET))
                .and(query_param("fb_exchange_token", WA_USER))
                .respond_with(ok(json!({"access_token": WA_LONG})))
                .expect(connects)
                .named("whatsapp token exchange")
                .mount(&env.graph)
                .await;
            Mock::given(method("GET"))
                .and(path(format!("/v24.0/{NUMBER}")))
                .and(query_param("fields", NUMBER_FIELDS))
                .and(query_param("access_token", WA_LONG))
                .respond_with(ok(json!({"display_phone_number": "+49 30 1234567",
                    "verified_name": "Shop GmbH", "quality_rating": "GREEN", "id": NUMBER})))
                .mount(&env.graph)
                .await;
            let (subscribes, unsubscribes) = if waba { (connects, undos) } else { (0, 0) };
            for (verb, n) in [("POST", subscribes), ("DELETE", unsubscribes)] {
                Mock::given(method(verb))
                    .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
                    .and(query_param("access_token", WA_LONG))
                    .respond_with(ok(json!({"success": true})))
                    .expect(n)
                    .named(format!("{verb} whatsapp business account subscription"))
                    .mount(&env.graph)
                    .await;
            }
            WA_USER.to_owned()
        }
        Case::Viber => {
            let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
            Mock::given(method("POST"))
                .and(path("/pa/get_account_info"))
                .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
                .and(body_json(json!({})))
                .respond_with(ok(
                    json!({"status": 0, "status_message": "ok", "id": VIBER_ID,
                    "name": "Shop Bot", "icon": "https://media.example.org/bot.jpg"}),
                ))
                .mount(viber)
                .await;
            let pointed = json!({"url": VIBER_HOOK, "send_name": true, "send_photo": true});
            for (body, n) in [(pointed, connects), (json!({"url": ""}), undos)] {
                Mock::given(method("POST"))
                    .and(path("/pa/set_webhook"))
                    .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
                    .and(body_json(&body))
                    .respond_with(ok(json!({"status": 0, "status_message": "ok"})))
                    .expect(n)
                    .named(format!("viber set_webhook {body}"))
                    .mount(viber)
                    .await;
            }
            VIBER_TOKEN.to_owned()
        }
    }
}

/// How many re-checks the provider has seen: reads beyond the ones connects make.
async fn reads(env: &Env, viber: &MockServer, case: Case) -> usize {
    let (server, read_path) = match case {
        Case::Instagram => (&env.graph, format!("/v24.0/{}", page_id("ig"))),
        Case::Whatsapp => (&env.graph, format!("/v24.0/{NUMBER}")),
        Case::Viber => (viber, "/pa/get_account_info".to_owned()),
    };
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == read_path)
        .count()
}

/// Waits until the provider saw more than `before` reads: a re-check happened.
async fn rechecked(env: &Env, viber: &MockServer, case: Case, before: usize) {
    eventually(format!("{case:?} to be re-checked"), || async {
        reads(env, viber, case).await > before
    })
    .await
}

/// The connect request of `case` with the user's `token`.
fn connect_request(case: Case, token: &str) -> (String, Value) {
    let body = match case {
        Case::Instagram => json!({"page_id": page_id("ig"), "account_id": ACCOUNT,
            "page_token": token, "image_url": "https://img.example.org/ig.png"}),
        // The name in Airy's published docs.
        Case::Whatsapp => json!({"phone_number": NUMBER, "user_token": token, "name": "Support"}),
        Case::Viber => json!({}),
    };
    (format!("channels.{}.connect", case.source()), body)
}

/// The name the channel shows: given, or what the provider reports.
fn shown_name(case: Case) -> &'static str {
    match case {
        Case::Instagram => "Page ig",
        Case::Whatsapp => "Support",
        Case::Viber => "Shop Bot",
    }
}

async fn through_the_api(case: Case) {
    let viber = MockServer::start().await;
    let mut env = env(&viber).await;
    // The API's connect names no business account: nothing to subscribe. Two connects and two
    // undos: connect, disconnect, connect again with the same inputs, disconnect.
    let token = mount(&mut env, &viber, case, 2, 2, false).await;
    let (connect, body) = connect_request(case, &token);
    let (status, v) = env.post(&connect, body).await;
    assert_eq!(status, 200, "{v}");
    let id = case.id();
    assert_eq!(v["id"], id);
    assert_eq!(v["source"], case.source());
    assert_eq!(v["source_channel_id"], case.scid());
    assert_eq!(v["connected"], true);
    assert_eq!(v["metadata"]["name"], shown_name(case), "{v}");
    let ch = env.get(&id).await;
    assert_eq!(ch["spec"]["source"], case.source());
    if case == Case::Instagram {
        assert_eq!(ch["spec"]["instagram"]["pageId"], page_id("ig"));
    }
    if case == Case::Whatsapp {
        assert_eq!(ch["status"]["displayPhoneNumber"], "+49 30 1234567");
        assert_eq!(ch["status"]["verifiedName"], "Shop GmbH");
    }
    let before = reads(&env, &viber, case).await;
    rechecked(&env, &viber, case, before).await;
    let (status, info) = env.post("channels.info", json!({"channel_id": id})).await;
    assert_eq!((status, &info), (200, &v));
    let (_, list) = env
        .post("channels.list", json!({"source": case.source()}))
        .await;
    assert_eq!(list["data"], json!([v]));

    // A disconnect through the wrong source's path changes nothing.
    let other = if case == Case::Viber {
        "instagram"
    } else {
        "viber"
    };
    let (status, _) = env
        .post(
            &format!("channels.{other}.disconnect"),
            json!({"channel_id": id}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, v) = env
        .post(
            &format!("channels.{}.disconnect", case.source()),
            json!({"channel_id": id}),
        )
        .await;
    assert_eq!((status, v), (200, json!({})));
    let (status, v) = env
        .post(
            &format!("channels.{}.disconnect", case.source()),
            json!({"channel_id": id}),
        )
        .await;
    assert_eq!((status, v), (202, json!({})));
    let (status, _) = env.post("channels.info", json!({"channel_id": id})).await;
    assert_eq!(status, 404);
    // The record, and the token it kept, went with the disconnect.
    assert!(state_secrets(&env, "channel-").await.is_empty());

    // Connect again with the same inputs: the same channel, connected once more.
    let (connect, body) = connect_request(case, &token);
    let (status, again) = env.post(&connect, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["id"], &again["connected"]),
        (&json!(id), &json!(true))
    );
    let (status, info) = env.post("channels.info", json!({"channel_id": id})).await;
    assert_eq!((status, &info["connected"]), (200, &json!(true)));
    let (status, v) = env
        .post(
            &format!("channels.{}.disconnect", case.source()),
            json!({"channel_id": id}),
        )
        .await;
    assert_eq!((status, v), (200, json!({})));
    env.kubectl_ok(&["delete", "channel", &id, "--wait=true"], None)
        .await;
    env.channel_gone(&id).await;
    viber.verify().await;
    env.finish().await;
}

async fn through_kubectl(case: Case) {
    let viber = MockServer::start().await;
    let mut env = env(&viber).await;
    let token = mount(&mut env, &viber, case, 2, 2, true).await;
    env.apply(&secret_yaml("creds", "token", &token)).await;
    let extra = match case {
        Case::Instagram => format!("  instagram:\n    pageId: \"{}\"\n", page_id("ig")),
        Case::Whatsapp => format!("  whatsapp:\n    businessAccountId: \"{WABA}\"\n"),
        Case::Viber => String::new(),
    };
    let extra = format!("  credentialsSecretRef:\n    name: creds\n    key: token\n{extra}");
    env.apply(&channel_yaml("shop", case.source(), case.scid(), &extra))
        .await;
    env.wait_ready("shop").await;
    let ch = env.get("shop").await;
    assert_eq!(ch["status"]["id"], case.id());
    assert_eq!(ch["status"]["connected"], true);
    // kubectl get channels shows it, with the provider's names in the wide view.
    let table = env
        .kubectl_ok(&["get", "channels", "-o", "wide"], None)
        .await;
    let row = table.lines().find(|l| l.starts_with("shop ")).unwrap();
    assert!(
        row.contains(case.source()) && row.contains(case.scid()),
        "{table}"
    );
    match case {
        Case::Whatsapp => assert!(row.contains("+49 30 1234567"), "{table}"),
        _ => assert!(row.contains(shown_name(case)), "{table}"),
    }
    let before = reads(&env, &viber, case).await;
    rechecked(&env, &viber, case, before).await;

    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "shop",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    env.channel_until("shop", "disconnected", |v| {
        cond(v, "reason") == "Disconnected" && v["status"]["connected"] == false
    })
    .await;
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "shop",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":true}}"#,
        ],
        None,
    )
    .await;
    env.channel_until("shop", "connected again", |v| {
        cond(v, "reason") == "Connected" && v["status"]["connected"] == true
    })
    .await;
    env.kubectl_ok(&["delete", "channel", "shop", "--wait=true"], None)
        .await;
    env.channel_gone("shop").await;
    // The user's Secret stays; the operator's is gone with the Channel.
    assert_eq!(env.secret_names().await, ["creds"]);
    viber.verify().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_through_the_api() {
    through_the_api(Case::Instagram).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_through_the_api() {
    through_the_api(Case::Whatsapp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viber_through_the_api() {
    through_the_api(Case::Viber).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_through_kubectl() {
    through_kubectl(Case::Instagram).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_through_kubectl() {
    through_kubectl(Case::Whatsapp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viber_through_kubectl() {
    through_kubectl(Case::Viber).await;
}
