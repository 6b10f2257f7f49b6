//! A provider configuration's own accounts (docs/providers.md, "Token health"): the Facebook app's
//! credentials and the Twilio account's status are checked when the configuration changes and
//! every `--sweep-seconds`, reported in its `CredentialsHealthy` condition and, while not
//! healthy, in the credentials metrics; no secret is shown anywhere.

mod support;

use channel_operator::crd::SecretKeyRef;
use channel_operator::provider_config::{
    FacebookApp, ProviderConfig, ProviderConfigSpec, TwilioAccount,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::Api;
use support::fakes::{TWILIO_SID, TWILIO_TOKEN, TWILIO_WEBHOOK};
use support::token_fake::{fake_app, FakeAccount};
use support::*;

const APP_SECRET_2: &str = "app-2-secret-do-not-leak-0003";

/// `(status, reason, message)` of the configuration's CredentialsHealthy condition.
async fn credentials_of(env: &Env) -> Option<(String, String, String)> {
    let pc = Api::<ProviderConfig>::namespaced(env.sb.client(), "team")
        .get_opt("default")
        .await
        .ok()??;
    let c = pc
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "CredentialsHealthy")?;
    Some((c.status, c.reason, c.message))
}

async fn until(env: &Env, status: &str, reason: &str) -> String {
    eventually_some(format!("CredentialsHealthy {status} {reason}"), || async {
        credentials_of(env)
            .await
            .filter(|(s, r, _)| s == status && r == reason)
            .map(|(_, _, m)| m)
    })
    .await
}

fn series(source: &str, reason: &str) -> String {
    format!(
        r#"channel_operator_credentials_unhealthy{{kind="ProviderConfig",object_namespace="team",object_name="default",source="{source}",reason="{reason}"}} 1"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configurations_app_and_twilio_account_are_checked_and_reported() {
    let mut env = Env::new(&["--sweep-seconds", "1", "--resync-seconds", "1"]).await;
    env.tokens.push(APP_SECRET_2.into());
    let app = fake_app(&env.graph, "app-2", APP_SECRET_2).await;
    let account = FakeAccount::mount(&env.twilio).await;
    env.start_controller().await;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team".into());
    Api::<Namespace>::all(env.sb.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.sb.client(), "team");
    for (name, key, value) in [
        ("fb-app", "secret", APP_SECRET_2),
        ("twilio", "token", TWILIO_TOKEN),
    ] {
        let mut s = secret(name, key, value);
        s.metadata.namespace = Some("team".into());
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let key = |name: &str, key: &str| SecretKeyRef {
        name: name.into(),
        key: key.into(),
    };
    let mut pc = ProviderConfig::new(
        "default",
        ProviderConfigSpec {
            facebook: Some(FacebookApp {
                app_id: "app-2".into(),
                app_secret_ref: key("fb-app", "secret"),
            }),
            twilio: Some(TwilioAccount {
                account_sid: TWILIO_SID.into(),
                auth_token_ref: key("twilio", "token"),
                webhook_url: TWILIO_WEBHOOK.into(),
            }),
        },
    );
    pc.metadata.namespace = Some("team".into());
    Api::<ProviderConfig>::namespaced(env.sb.client(), "team")
        .create(&PostParams::default(), &pc)
        .await
        .unwrap();

    // A number of the team connects with the configuration's account.
    env.fake_twilio_number("+4915100000007", "PN7", 1, 0).await;
    let sms = channel(channel_operator::crd::Source::TwilioSms, "+4915100000007")
        .named("sms")
        .namespace("team")
        .build();
    Api::<channel_operator::crd::Channel>::namespaced(env.sb.client(), "team")
        .create(&PostParams::default(), &sms)
        .await
        .unwrap();

    let message = until(&env, "True", "Valid").await;
    assert!(
        message.contains("app-2 accepts its credentials"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{TWILIO_SID} is active")),
        "{message}"
    );
    let table = env
        .kubectl_ok(&["get", "providerconfigs", "-n", "team"], None)
        .await;
    assert!(
        table.contains("CREDENTIALS") && table.contains("Valid"),
        "{table}"
    );
    assert!(!controller_metrics(&env)
        .await
        .contains("credentials_unhealthy{"));

    // Suspended at Twilio: said within a sweep, with what to do, and an alerting series.
    account.status("suspended");
    let message = until(&env, "False", "AccountSuspended").await;
    assert!(message.contains("resolve it with Twilio"), "{message}");
    eventually("the suspended account's series", || async {
        controller_metrics(&env)
            .await
            .contains(&series("twilio", "AccountSuspended"))
    })
    .await;

    // The app's secret refused as well: the worse of the two, both said, both in the metrics.
    app.set(false);
    let message = until(&env, "False", "Invalidated").await;
    assert!(message.contains("spec.facebook.appSecretRef"), "{message}");
    assert!(message.contains("suspended"), "{message}");
    eventually("both accounts' series", || async {
        let text = controller_metrics(&env).await;
        text.contains(&series("facebook", "Invalidated"))
            && text.contains(&series("twilio", "AccountSuspended"))
    })
    .await;

    // Repaired at the providers: healthy again by itself, and the series go.
    app.set(true);
    account.status("active");
    until(&env, "True", "Valid").await;
    eventually("no series once healthy", || async {
        !controller_metrics(&env)
            .await
            .contains("credentials_unhealthy{")
    })
    .await;
    env.finish().await;
}
