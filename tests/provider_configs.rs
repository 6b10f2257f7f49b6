//! Provider configurations: whose provider accounts a Channel's provider calls use. A tenant
//! without a configuration admitting its namespace drives no account of the operator's; each
//! namespace's ProviderConfig connects with its own app; a ClusterProviderConfig serves only the
//! namespaces it admits.

mod support;

use std::collections::BTreeMap;

use channel_operator::crd::Source;
use channel_operator::provider_config::{
    ClusterProviderConfig, ClusterProviderConfigSpec, FacebookApp, ProviderConfig,
    ProviderConfigKind, ProviderConfigRef, ProviderConfigSpec, TwilioAccount,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;
use support::configs::*;
use support::fakes::PageTokens;
use support::*;
use wiremock::matchers::{any, basic_auth, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

async fn namespace(env: &Env, name: &str) {
    labelled_namespace(env, name, &[]).await
}

async fn labelled_namespace(env: &Env, name: &str, labels: &[(&str, &str)]) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    ns.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    Api::<Namespace>::all(env.sb.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// A Channel of `ns` that no configuration admits (not the operator's namespace, no
/// ProviderConfig, no ClusterProviderConfig) is Stalled with ProviderConfigMissing and calls no
/// provider: the operator's Twilio account and Facebook app stay out of a tenant's reach. On the
/// old code the twilio.sms Channel had its number's webhook set with the operator's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_a_configuration_is_stalled_and_calls_no_provider() {
    let env = Env::builder().build().await;
    for server in [&env.graph, &env.twilio] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named("any provider call")
            .mount(server)
            .await;
    }
    namespace(&env, "attacker").await;
    let tokens = PageTokens::of("victim", 1);
    create_secret(&env, "attacker", "tok", "page_token", &tokens.page_token).await;
    create_channel(
        &env,
        channel(Source::TwilioSms, "+4915100000001")
            .named("sms")
            .namespace("attacker")
            .build(),
    )
    .await;
    create_channel(
        &env,
        channel(Source::Facebook, &page_id("victim"))
            .named("fb")
            .namespace("attacker")
            .credentials("tok", "page_token")
            .build(),
    )
    .await;
    // A chat plugin needs no configuration: it still connects there.
    create_channel(
        &env,
        channel(Source::ChatPlugin, "site-1")
            .named("site")
            .namespace("attacker")
            .build(),
    )
    .await;
    eventually(
        "both provider Channels Stalled, the chat plugin Connected",
        || async {
            let sms = reason_of(&env, "attacker", "sms").await;
            let fb = reason_of(&env, "attacker", "fb").await;
            let site = reason_of(&env, "attacker", "site").await;
            [sms, fb].iter().all(|r| {
                r.as_ref().is_some_and(|(reason, stalled, message)| {
                    reason == "ProviderConfigMissing"
                        && stalled == "True"
                        && message.contains("no provider configuration admits namespace attacker")
                })
            }) && site.is_some_and(|(reason, _, _)| reason == "Connected")
        },
    )
    .await;
    assert!(env.graph.received_requests().await.unwrap().is_empty());
    assert!(env.twilio.received_requests().await.unwrap().is_empty());
    env.finish().await;
}

/// The Facebook app of a namespace's ProviderConfig: its id and the secret its Secret holds.
async fn facebook_app(env: &mut Env, ns: &str, config: &str, app_id: &str, app_secret: &str) {
    namespace(env, ns).await;
    env.tokens.push(app_secret.into());
    create_secret(env, ns, "fb-app", "app-secret", app_secret).await;
    let mut pc = ProviderConfig::new(
        config,
        ProviderConfigSpec {
            facebook: Some(FacebookApp {
                app_id: app_id.into(),
                app_secret_ref: key_ref("fb-app", "app-secret"),
            }),
            twilio: None,
        },
    );
    pc.metadata.namespace = Some(ns.into());
    Api::<ProviderConfig>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &pc)
        .await
        .unwrap();
}

/// The token exchange of `page`'s user token with app `app_id`/`app_secret`, exactly once.
async fn exchange_with(env: &Env, page: &str, app_id: &str, app_secret: &str) {
    let tokens = PageTokens::of(page, 1);
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("client_id", app_id))
        .and(query_param("client_secret", app_secret))
        .and(query_param("fb_exchange_token", tokens.page_token.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": tokens.long_lived})),
        )
        .expect(1)
        .named(format!("exchange of {page} with {app_id}"))
        .mount(&env.graph)
        .await;
}

/// Two namespaces, each with a ProviderConfig naming its own Facebook app (one the namespace's
/// `default`, one named by `spec.providerConfigRef`): each page is connected with its own
/// namespace's app, once, and never with the operator's (flags') app. On the old code both were
/// exchanged with the flags' app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_connect_with_their_own_facebook_apps() {
    let mut env = Env::builder().build().await;
    facebook_app(
        &mut env,
        "team-a",
        "default",
        "app-a",
        "app-secret-a-do-not-leak",
    )
    .await;
    facebook_app(
        &mut env,
        "team-b",
        "meta",
        "app-b",
        "app-secret-b-do-not-leak",
    )
    .await;
    // The page reads and the subscription (exactly once each); the fake's own exchange is the
    // flags' app's, which must not be used.
    let page_a = env.fake_page("pa", 1, 0).await;
    let page_b = env.fake_page("pb", 1, 0).await;
    exchange_with(&env, "pa", "app-a", "app-secret-a-do-not-leak").await;
    exchange_with(&env, "pb", "app-b", "app-secret-b-do-not-leak").await;
    create_secret(&env, "team-a", "tok", "page_token", &page_a).await;
    create_secret(&env, "team-b", "tok", "page_token", &page_b).await;
    create_channel(
        &env,
        channel(Source::Facebook, &page_id("pa"))
            .named("fb")
            .namespace("team-a")
            .credentials("tok", "page_token")
            .build(),
    )
    .await;
    let mut b = channel(Source::Facebook, &page_id("pb"))
        .named("fb")
        .namespace("team-b")
        .credentials("tok", "page_token")
        .build();
    b.spec.provider_config_ref = Some(ProviderConfigRef {
        kind: ProviderConfigKind::ProviderConfig,
        name: "meta".into(),
    });
    create_channel(&env, b).await;
    eventually("both pages Connected", || async {
        let a = reason_of(&env, "team-a", "fb").await;
        let b = reason_of(&env, "team-b", "fb").await;
        [a, b].iter().all(|r| {
            r.as_ref()
                .is_some_and(|(reason, _, _)| reason == "Connected")
        })
    })
    .await;
    let apps: BTreeMap<String, Vec<String>> = env
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v24.0/oauth/access_token")
        .fold(BTreeMap::new(), |mut m, r| {
            let q: BTreeMap<String, String> = r.url.query_pairs().into_owned().collect();
            m.entry(q["client_id"].clone())
                .or_default()
                .push(q["fb_exchange_token"].clone());
            m
        });
    assert_eq!(
        apps,
        BTreeMap::from([
            ("app-a".to_string(), vec![page_a]),
            ("app-b".to_string(), vec![page_b]),
        ]),
        "each page's token exchanged once, with its own namespace's app"
    );
    env.finish().await;
}

/// A Twilio number of account AC2 (auth token `token`) whose sid is `PN` + its last digit,
/// looked up and pointed at `webhook` exactly `connects` times.
async fn twilio_number_of(env: &Env, number: &str, token: &str, webhook: &str, connects: u64) {
    let pn = format!("PN{}", &number[number.len() - 1..]);
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC2/IncomingPhoneNumbers.json"))
        .and(query_param("PhoneNumber", number))
        .and(basic_auth("AC2", token))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"incoming_phone_numbers": [{"sid": pn, "phone_number": number}]}),
        ))
        .expect(connects)
        .named(format!("AC2 lookup {number}"))
        .mount(&env.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/AC2/IncomingPhoneNumbers/{pn}.json"
        )))
        .and(basic_auth("AC2", token))
        .and(wiremock::matchers::body_string(format!(
            "SmsUrl={}",
            webhook.replace(':', "%3A").replace('/', "%2F")
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
        .expect(connects)
        .named(format!("AC2 connect {number}"))
        .mount(&env.twilio)
        .await;
}

/// A ClusterProviderConfig (its Secret in the operator's namespace) serves the namespace it
/// lists and the one its namespaceSelector selects with its own Twilio account, and not another
/// one, which stalls without a call. The flags' default serves the operator's namespace and the
/// namespaces of `--default-provider-namespaces`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_configuration_serves_only_the_namespaces_it_admits() {
    let mut env = Env::builder()
        .controller_args(&["--default-provider-namespaces", "team-f"])
        .build()
        .await;
    for ns in ["team-c", "team-d", "team-f"] {
        namespace(&env, ns).await;
    }
    labelled_namespace(&env, "team-e", &[("tier", "paid")]).await;
    const TOKEN2: &str = "twilio-token-ac2-do-not-leak";
    const HOOK2: &str = "https://hooks.example.org/ac2";
    env.tokens.push(TOKEN2.into());
    // The operator's namespace is `default` in the tests (POD_NAMESPACE's default).
    create_secret(&env, "default", "twilio-ac2", "auth-token", TOKEN2).await;
    // A Secret of the same name in the tenant namespace is never read for a cluster config
    // (the sandbox's audit log tells: below).
    create_secret(&env, "team-c", "twilio-ac2", "auth-token", "tenant-value").await;
    env.sb.faults().start_audit();
    let cpc = ClusterProviderConfig::new(
        "shared",
        ClusterProviderConfigSpec {
            twilio: Some(TwilioAccount {
                account_sid: "AC2".into(),
                auth_token_ref: key_ref("twilio-ac2", "auth-token"),
                webhook_url: HOOK2.into(),
            }),
            namespaces: vec!["team-c".into()],
            namespace_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("tier".to_string(), "paid".to_string())].into()),
                    ..Default::default()
                },
            ),
            ..Default::default()
        },
    );
    Api::<ClusterProviderConfig>::all(env.sb.client())
        .create(&PostParams::default(), &cpc)
        .await
        .unwrap();
    twilio_number_of(&env, "+4915100000003", TOKEN2, HOOK2, 1).await;
    twilio_number_of(&env, "+4915100000004", TOKEN2, HOOK2, 0).await;
    twilio_number_of(&env, "+4915100000005", TOKEN2, HOOK2, 1).await;
    // The flags' account, for the namespace the flag admits.
    env.fake_twilio_number("+4915100000006", "PN6", 1, 0).await;
    let shared = ProviderConfigRef {
        kind: ProviderConfigKind::ClusterProviderConfig,
        name: "shared".into(),
    };
    for (ns, number) in [
        ("team-c", "+4915100000003"),
        ("team-d", "+4915100000004"),
        ("team-e", "+4915100000005"),
    ] {
        let mut ch = channel(Source::TwilioSms, number)
            .named("sms")
            .namespace(ns)
            .build();
        ch.spec.provider_config_ref = Some(shared.clone());
        create_channel(&env, ch).await;
    }
    create_channel(
        &env,
        channel(Source::TwilioSms, "+4915100000006")
            .named("sms")
            .namespace("team-f")
            .build(),
    )
    .await;
    eventually(
        "team-c, team-e and team-f Connected, team-d Stalled by admission",
        || async {
            let c = reason_of(&env, "team-c", "sms").await;
            let e = reason_of(&env, "team-e", "sms").await;
            let d = reason_of(&env, "team-d", "sms").await;
            let f = reason_of(&env, "team-f", "sms").await;
            c.is_some_and(|(r, _, _)| r == "Connected")
                && e.is_some_and(|(r, _, _)| r == "Connected")
                && f.is_some_and(|(r, _, _)| r == "Connected")
                && d.is_some_and(|(r, s, m)| {
                    r == "ProviderConfigMissing"
                        && s == "True"
                        && m.contains(
                            "no ClusterProviderConfig named shared admits namespace team-d",
                        )
                })
        },
    )
    .await;
    let secret_reads: Vec<String> = env
        .sb
        .faults()
        .audit()
        .into_iter()
        .filter(|e| e.resource == "secrets" && e.verb == "get")
        .map(|e| format!("{}/{}", e.namespace, e.name))
        .collect();
    // The audit log sees the reads: the configuration's own Secret was read.
    assert!(
        secret_reads.iter().any(|r| r == "default/twilio-ac2"),
        "{secret_reads:?}"
    );
    assert!(
        secret_reads
            .iter()
            .all(|r| r == "default/twilio-ac2" || !r.ends_with("/twilio-ac2")),
        "a tenant's Secret was read for the cluster configuration: {secret_reads:?}"
    );
    env.finish().await;
}

/// The Ready condition of ProviderConfig `ns/name`: (status, reason, message).
async fn config_ready(env: &Env, ns: &str, name: &str) -> Option<(String, String, String)> {
    let pc = Api::<ProviderConfig>::namespaced(env.sb.client(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let c = pc
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// A configuration reports in its own status whether it is usable: Ready=False naming the
/// missing Secret (never a value), then Ready=True once the Secret is there; `kubectl get
/// providerconfigs` shows it. Channels using it connect once it is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_reports_its_readiness_in_its_status() {
    let mut env = Env::builder()
        .controller_args(&["--sweep-seconds", "1"])
        .build()
        .await;
    namespace(&env, "team-s").await;
    let mut pc = ProviderConfig::new(
        "default",
        ProviderConfigSpec {
            facebook: Some(FacebookApp {
                app_id: "app-s".into(),
                app_secret_ref: key_ref("fb-app", "app-secret"),
            }),
            twilio: None,
        },
    );
    pc.metadata.namespace = Some("team-s".into());
    Api::<ProviderConfig>::namespaced(env.sb.client(), "team-s")
        .create(&PostParams::default(), &pc)
        .await
        .unwrap();
    let page = env.fake_page("ps", 1, 0).await;
    exchange_with(&env, "ps", "app-s", "app-secret-s-do-not-leak").await;
    create_secret(&env, "team-s", "tok", "page_token", &page).await;
    create_channel(
        &env,
        channel(Source::Facebook, &page_id("ps"))
            .named("fb")
            .namespace("team-s")
            .credentials("tok", "page_token")
            .build(),
    )
    .await;
    eventually("the configuration and its Channel report the missing Secret", || async {
        let pc = config_ready(&env, "team-s", "default").await;
        let ch = reason_of(&env, "team-s", "fb").await;
        pc.is_some_and(|(s, r, m)| {
            s == "False"
                && r == "SecretsMissing"
                && m.contains("the Secret team-s/fb-app named by spec.facebook.appSecretRef does not exist")
        }) && ch.is_some_and(|(r, s, m)| {
            r == "ProviderConfigMissing" && s == "True" && m.contains("ProviderConfig team-s/default")
        })
    })
    .await;
    env.tokens.push("app-secret-s-do-not-leak".into());
    create_secret(
        &env,
        "team-s",
        "fb-app",
        "app-secret",
        "app-secret-s-do-not-leak",
    )
    .await;
    eventually(
        "the configuration Ready and its Channel Connected",
        || async {
            let pc = config_ready(&env, "team-s", "default").await;
            let ch = reason_of(&env, "team-s", "fb").await;
            pc.is_some_and(|(s, r, m)| {
                s == "True" && r == "SecretsFound" && !m.contains("app-secret-s-do-not-leak")
            }) && ch.is_some_and(|(r, _, _)| r == "Connected")
        },
    )
    .await;
    let table = env
        .kubectl_ok(&["get", "providerconfigs", "-n", "team-s"], None)
        .await;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["default", "True", "SecretsFound"], "{table}");
    env.finish().await;
}

/// A tenant's Channel status says the same whether the ClusterProviderConfig it names is
/// missing or exists and does not admit its namespace (and the same for the default one), so a
/// tenant cannot learn which cluster configurations exist. On the old code the messages were
/// "... does not admit namespace ..." and "... does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_does_not_tell_a_tenant_whether_a_cluster_configuration_exists() {
    let env = Env::builder().build().await;
    for ns in ["team-g", "team-h"] {
        namespace(&env, ns).await;
    }
    let admits_nobody = |name: &str| {
        ClusterProviderConfig::new(
            name,
            ClusterProviderConfigSpec {
                namespaces: vec!["team-x".into()],
                ..Default::default()
            },
        )
    };
    Api::<ClusterProviderConfig>::all(env.sb.client())
        .create(&PostParams::default(), &admits_nobody("hidden"))
        .await
        .unwrap();
    for (name, config) in [("named-existing", "hidden"), ("named-missing", "absent")] {
        let mut ch = channel(Source::TwilioSms, "+4915100000007")
            .named(name)
            .namespace("team-g")
            .build();
        ch.spec.provider_config_ref = Some(ProviderConfigRef {
            kind: ProviderConfigKind::ClusterProviderConfig,
            name: config.into(),
        });
        create_channel(&env, ch).await;
    }
    // Without a reference: team-g has no default configuration at all, team-h's is a
    // ClusterProviderConfig named default that does not admit it.
    create_channel(
        &env,
        channel(Source::TwilioSms, "+4915100000008")
            .named("default-missing")
            .namespace("team-g")
            .build(),
    )
    .await;
    let existing = stalled_message(&env, "team-g", "named-existing").await;
    let missing = stalled_message(&env, "team-g", "named-missing").await;
    assert_eq!(
        existing.replace("hidden", "X"),
        missing.replace("absent", "X"),
        "the messages tell the two apart"
    );
    Api::<ClusterProviderConfig>::all(env.sb.client())
        .create(&PostParams::default(), &admits_nobody("default"))
        .await
        .unwrap();
    create_channel(
        &env,
        channel(Source::TwilioSms, "+4915100000009")
            .named("default-existing")
            .namespace("team-h")
            .build(),
    )
    .await;
    let default_missing = stalled_message(&env, "team-g", "default-missing").await;
    let default_existing = stalled_message(&env, "team-h", "default-existing").await;
    assert_eq!(
        default_missing.replace("team-g", "X"),
        default_existing.replace("team-h", "X"),
        "the messages tell the two apart"
    );
}

/// The message of Channel `ns/name` once it is Stalled with ProviderConfigMissing.
async fn stalled_message(env: &Env, ns: &str, name: &str) -> String {
    eventually_some(
        format!("{ns}/{name} Stalled with ProviderConfigMissing"),
        || async {
            reason_of(env, ns, name)
                .await
                .filter(|(r, s, _)| r == "ProviderConfigMissing" && s == "True")
                .map(|(_, _, m)| m)
        },
    )
    .await
}
