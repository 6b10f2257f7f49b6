//! Tenants and their provider configurations: Secrets and Channels created in a namespace, a
//! `ProviderConfig` naming a Facebook app and a Twilio account of the fakes, and what a Channel
//! or a configuration reports.

use channel_operator::crd::{Channel, SecretKeyRef};
use channel_operator::provider_config::{
    FacebookApp, ProviderConfig, ProviderConfigKind, ProviderConfigRef, ProviderConfigSpec,
    TwilioAccount as TwilioSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::Api;

use super::build::secret;
use super::env::Env;
use super::fakes::{App, TwilioAccount};

/// Creates the consenting Secret `ns/name` holding `value` under `key`.
pub async fn create_secret(env: &Env, ns: &str, name: &str, key: &str, value: &str) {
    let mut s = secret(name, key, value);
    s.metadata.namespace = Some(ns.into());
    Api::<Secret>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// Creates the Channel in its namespace.
pub async fn create_channel(env: &Env, ch: Channel) {
    let ns = ch.metadata.namespace.clone().unwrap();
    Api::<Channel>::namespaced(env.sb.client(), &ns)
        .create(&PostParams::default(), &ch)
        .await
        .unwrap();
}

pub fn key_ref(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// `spec.providerConfigRef` naming the ProviderConfig `name` of the Channel's namespace.
pub fn config_ref(name: &str) -> Option<ProviderConfigRef> {
    Some(ProviderConfigRef {
        kind: ProviderConfigKind::ProviderConfig,
        name: name.into(),
    })
}

/// Creates the ProviderConfig `ns/name` with `app` and `twilio` (their secrets in the Secret
/// `<name>-accounts` of `ns`, which must exist as a namespace), and marks the secrets as ones
/// that must never leak.
pub async fn provider_config(
    env: &mut Env,
    ns: &str,
    name: &str,
    app: Option<App>,
    twilio: Option<TwilioAccount>,
) {
    let secret_name = format!("{name}-accounts");
    let mut s = Secret::default();
    s.metadata.name = Some(secret_name.clone());
    s.metadata.namespace = Some(ns.into());
    let mut data = std::collections::BTreeMap::new();
    if let Some(a) = app {
        data.insert("app-secret".to_owned(), a.secret.to_owned());
        env.tokens.push(a.secret.into());
    }
    if let Some(t) = twilio {
        data.insert("auth-token".to_owned(), t.token.to_owned());
        env.tokens.push(t.token.into());
    }
    s.string_data = Some(data);
    Api::<Secret>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let mut pc = ProviderConfig::new(
        name,
        ProviderConfigSpec {
            facebook: app.map(|a| FacebookApp {
                app_id: a.id.into(),
                app_secret_ref: key_ref(&secret_name, "app-secret"),
            }),
            twilio: twilio.map(|t| TwilioSpec {
                account_sid: t.sid.into(),
                auth_token_ref: key_ref(&secret_name, "auth-token"),
                webhook_url: t.webhook.into(),
            }),
        },
    );
    pc.metadata.namespace = Some(ns.into());
    Api::<ProviderConfig>::namespaced(env.sb.client(), ns)
        .create(&PostParams::default(), &pc)
        .await
        .unwrap();
}

/// The Ready reason, the Stalled status (`absent` when there is none) and the Ready message of
/// Channel `ns/name`, once it has them.
pub async fn reason_of(env: &Env, ns: &str, name: &str) -> Option<(String, String, String)> {
    let ch = Api::<Channel>::namespaced(env.sb.client(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let ready = ch.ready_condition()?.clone();
    let stalled = ch
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .map_or("absent".to_string(), |c| c.status.clone());
    Some((ready.reason, stalled, ready.message))
}

/// Waits until Channel `ns/name` reports `reason`.
pub async fn until_reason(env: &Env, ns: &str, name: &str, reason: &str) {
    super::wait::eventually_ok(
        super::wait::TIMEOUT,
        format!("{ns}/{name} to report {reason}"),
        || async {
            match reason_of(env, ns, name).await {
                Some((r, _, _)) if r == reason => Ok(()),
                other => Err(format!("last: {other:?}")),
            }
        },
    )
    .await
}

/// Waits until Channel `ns/name` no longer exists.
pub async fn until_gone(env: &Env, ns: &str, name: &str) {
    let api: Api<Channel> = Api::namespaced(env.sb.client(), ns);
    super::wait::eventually_ok(
        super::wait::TIMEOUT,
        format!("{ns}/{name} to be gone"),
        || async {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(ch)) => Err(format!("still there: {:?}", ch.status)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// How many requests `server` received with this method and path whose query holds every one
/// of `query` (`name`, `value`).
pub async fn calls(
    server: &wiremock::MockServer,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == method && r.url.path() == path)
        .filter(|r| {
            let q: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
            query
                .iter()
                .all(|(k, v)| q.iter().any(|(qk, qv)| qk == k && qv == v))
        })
        .count()
}
