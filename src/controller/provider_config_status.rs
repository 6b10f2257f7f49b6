//! Each provider configuration's health, in its own status, written when a configuration
//! changes and every period (Secrets are not watched for it), by server-side apply like the
//! Channels' status:
//!
//! - `Ready=True` (`SecretsFound`) when every Secret key it names exists and is not empty where
//!   the controller reads it, else `Ready=False` (`SecretsMissing`) naming the Secret and key —
//!   never a value;
//! - `CredentialsHealthy`: whether its accounts work at their providers (README, "Token
//!   health"): the Facebook app's id and secret (Graph's `debug_token` of the app's own token),
//!   the Twilio account's status (active, suspended, closed). `Unknown` (`Unchecked`) when the
//!   Secrets are missing or the provider did not answer; absent without accounts.
//!
//! The accounts needing attention are handed to the metrics after every round.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

use super::provider_configs::{read_accounts, ProviderConfigs};
use super::watch::SecretAccess;
use crate::crd::READY;
use crate::credentials_health::{describe_rejection, Attention, Health, Verdict};
use crate::metrics::Metrics;
use crate::ownership::MANAGER;
use crate::provider_config::{
    Accounts, ClusterProviderConfig, ProviderConfig, ProviderConfigStatus,
};
use crate::providers::{ProviderError, Providers};

/// The reason of a usable configuration's Ready condition.
pub const SECRETS_FOUND: &str = "SecretsFound";
/// The reason of an unusable configuration's Ready condition.
pub const SECRETS_MISSING: &str = "SecretsMissing";

/// Configurations checked at once (each check may wait for two providers).
const PARALLEL_CHECKS: usize = 8;

/// What one check found of a configuration.
struct Found {
    ready: bool,
    message: String,
    /// Per account (`facebook`, `twilio`), its verdict; empty without accounts.
    accounts: Vec<(&'static str, Verdict)>,
}

/// Reports the health of every configuration when `configs` says one changed, and every
/// `period`, until dropped.
pub async fn report(
    client: Client,
    configs: Arc<ProviderConfigs>,
    secret_access: SecretAccess,
    period: Duration,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            () = configs.changed() => {}
            () = tokio::time::sleep(period) => {}
        }
        let mut checks: Vec<BoxFuture<'_, Vec<Attention>>> = Vec::new();
        for pc in configs.namespaced().state() {
            let (client, configs, access) = (&client, &configs, &secret_access);
            checks.push(Box::pin(async move {
                let ns = pc.namespace().unwrap_or_default();
                let found = if access.allows(&ns) {
                    check(client, configs, &ns, &pc.accounts()).await
                } else {
                    unreadable(format!("the operator is not configured to read Secrets in namespace {ns} (--secret-namespaces)"))
                };
                let api: Api<ProviderConfig> = Api::namespaced(client.clone(), &ns);
                write(&api, pc.as_ref(), pc.status.as_ref(), &found).await;
                attention(pc.as_ref(), &found)
            }));
        }
        for cpc in configs.cluster().state() {
            let (client, configs, access) = (&client, &configs, &secret_access);
            checks.push(Box::pin(async move {
                let ns = configs.operator_namespace();
                let found = if access.allows(ns) {
                    check(client, configs, ns, &cpc.accounts()).await
                } else {
                    unreadable(format!("the operator is not configured to read Secrets in its namespace {ns} (--secret-namespaces)"))
                };
                let api: Api<ClusterProviderConfig> = Api::all(client.clone());
                write(&api, cpc.as_ref(), cpc.status.as_ref(), &found).await;
                attention(cpc.as_ref(), &found)
            }));
        }
        let attention: Vec<Attention> = futures::stream::iter(checks)
            .buffer_unordered(PARALLEL_CHECKS)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        metrics.set_config_credentials(attention);
    }
}

fn unreadable(message: String) -> Found {
    Found {
        ready: false,
        message,
        accounts: Vec::new(),
    }
}

/// Whether the Secrets of `accounts` are usable in `namespace`, and whether the accounts work
/// at their providers.
async fn check(
    client: &Client,
    configs: &ProviderConfigs,
    namespace: &str,
    accounts: &Accounts,
) -> Found {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let unchecked = |why: &str| {
        let say = |what: &str| Verdict::of(Health::Unchecked, format!("{what} not checked: {why}"));
        let mut out = Vec::new();
        if accounts.facebook.is_some() {
            out.push(("facebook", say("the Facebook app's credentials were")));
        }
        if accounts.twilio.is_some() {
            out.push(("twilio", say("the Twilio account was")));
        }
        out
    };
    match read_accounts(&secrets, namespace, accounts).await {
        Ok(Ok(_)) if accounts.facebook.is_none() && accounts.twilio.is_none() => Found {
            ready: true,
            message: "no provider account configured".into(),
            accounts: Vec::new(),
        },
        Ok(Ok(read)) => Found {
            ready: true,
            message: format!("the Secrets are present in namespace {namespace}"),
            accounts: account_health(&configs.with_accounts(read), accounts).await,
        },
        Ok(Err(why)) => Found {
            accounts: unchecked(&why),
            ready: false,
            message: why,
        },
        Err(e) => {
            let why = format!("the Secrets cannot be read: {e}");
            Found {
                accounts: unchecked(&why),
                ready: false,
                message: why,
            }
        }
    }
}

/// The verdict on each account of a configuration, asked of its provider (changing nothing).
async fn account_health(
    providers: &Providers,
    accounts: &Accounts,
) -> Vec<(&'static str, Verdict)> {
    let mut out = Vec::new();
    if let Some(app) = &accounts.facebook {
        let id = &app.app_id;
        let fix = "put the app's current secret in the Secret named by spec.facebook.appSecretRef";
        let verdict = match providers.facebook().debug_app_token().await {
            Ok(facts) if facts.valid => Verdict::of(
                Health::Valid,
                format!("the Facebook app {id} accepts its credentials"),
            ),
            Ok(facts) => Verdict::of(
                Health::Invalidated,
                format!(
                    "Facebook says the access token of app {id} is invalid ({}): {fix}",
                    describe_rejection(facts.subcode, facts.error.as_deref())
                ),
            ),
            Err(
                e @ (ProviderError::InvalidCredentials(_) | ProviderError::TokenRejected { .. }),
            ) => Verdict::of(
                Health::Invalidated,
                format!("Facebook refused the credentials of app {id} ({e}): {fix}"),
            ),
            Err(e) => Verdict::of(
                Health::Unchecked,
                format!("the credentials of the Facebook app {id} could not be checked: {e}"),
            ),
        };
        out.push(("facebook", verdict));
    }
    if let Some(account) = &accounts.twilio {
        let sid = &account.account_sid;
        let verdict = match providers.twilio().account_status().await {
            Some(Ok(status)) => match status.as_str() {
                "active" => Verdict::of(Health::Valid, format!("the Twilio account {sid} is active")),
                "suspended" => Verdict::of(
                    Health::AccountSuspended,
                    format!("the Twilio account {sid} is suspended: its numbers get no messages and no webhook can be set; resolve it with Twilio (billing, compliance)"),
                ),
                "closed" => Verdict::of(
                    Health::AccountClosed,
                    format!("the Twilio account {sid} is closed: configure another account in spec.twilio"),
                ),
                other => Verdict::of(
                    Health::Unchecked,
                    format!("the Twilio account {sid} reports the unknown status {other:?}"),
                ),
            },
            Some(Err(ProviderError::InvalidCredentials(e))) => Verdict::of(
                Health::Invalidated,
                format!("Twilio refused the auth token of account {sid} ({e}): put the account's current auth token in the Secret named by spec.twilio.authTokenRef"),
            ),
            Some(Err(e)) => Verdict::of(
                Health::Unchecked,
                format!("the Twilio account {sid} could not be checked: {e}"),
            ),
            None => Verdict::of(Health::Unchecked, format!("the Twilio account {sid} is not complete")),
        };
        out.push(("twilio", verdict));
    }
    out
}

/// The accounts of `object` needing attention, for the metrics.
fn attention<K: Resource<DynamicType = ()>>(object: &K, found: &Found) -> Vec<Attention> {
    let kind: &'static str = if K::kind(&()) == "ProviderConfig" {
        "ProviderConfig"
    } else {
        "ClusterProviderConfig"
    };
    found
        .accounts
        .iter()
        .filter(|(_, v)| v.health.is_unhealthy())
        .map(|(source, v)| Attention {
            kind,
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
            source: (*source).to_owned(),
            health: v.health,
            expires_at: None,
        })
        .collect()
}

/// The status for what a check `found`, keeping each condition's transition time while its
/// status holds.
fn status(
    previous: Option<&ProviderConfigStatus>,
    generation: Option<i64>,
    found: &Found,
) -> ProviderConfigStatus {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let before = previous.map_or(&[][..], |p| &p.conditions[..]);
    let status = if found.ready { "True" } else { "False" };
    let last_transition_time = crate::condition::transition_time(before, READY, status, &now);
    let mut conditions = vec![Condition {
        type_: READY.into(),
        status: status.into(),
        reason: if found.ready {
            SECRETS_FOUND
        } else {
            SECRETS_MISSING
        }
        .into(),
        message: found.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }];
    let verdicts = found.accounts.iter().map(|(_, v)| v.clone()).collect();
    if let Some(worst) = Verdict::worst(verdicts) {
        conditions.push(worst.condition(before, generation, &now));
    }
    ProviderConfigStatus {
        observed_generation: generation,
        conditions,
    }
}

/// Writes the status of `object` unless it already says that.
async fn write<K>(api: &Api<K>, object: &K, previous: Option<&ProviderConfigStatus>, found: &Found)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let next = status(previous, object.meta().generation, found);
    if previous == Some(&next) {
        return;
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    });
    let name = object.name_any();
    match api
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {
            debug!(kind = %K::kind(&()), %name, ready = found.ready, "reported the configuration's health")
        }
        Err(e) => {
            warn!(kind = %K::kind(&()), %name, "cannot write the configuration's status: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(ready: bool, message: &str, accounts: Vec<(&'static str, Verdict)>) -> Found {
        Found {
            ready,
            message: message.into(),
            accounts,
        }
    }

    #[test]
    fn the_transition_time_holds_while_the_status_does() {
        let missing = found(false, "the Secret x does not exist", vec![]);
        let first = status(None, Some(1), &missing);
        let c = &first.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SECRETS_MISSING)
        );
        assert_eq!(
            first.conditions.len(),
            1,
            "no accounts: no CredentialsHealthy"
        );
        let again = status(Some(&first), Some(1), &missing);
        assert_eq!(again, first, "an unchanged status is not written again");
        let ready = status(Some(&first), Some(2), &found(true, "present", vec![]));
        assert_eq!(ready.conditions[0].reason, SECRETS_FOUND);
        assert_eq!(ready.observed_generation, Some(2));
    }

    #[test]
    fn the_worst_account_is_the_credentials_condition_and_only_unhealthy_ones_are_metrics() {
        let f = found(
            true,
            "present",
            vec![
                ("facebook", Verdict::of(Health::Valid, "app ok")),
                ("twilio", Verdict::of(Health::AccountSuspended, "suspended")),
            ],
        );
        let st = status(None, Some(1), &f);
        let c = &st.conditions[1];
        assert_eq!(
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str()
            ),
            (
                "CredentialsHealthy",
                "False",
                "AccountSuspended",
                "suspended"
            )
        );
        let mut pc = ProviderConfig::new("default", Default::default());
        pc.metadata.namespace = Some("shop".into());
        let a = attention(&pc, &f);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (
                a[0].kind,
                a[0].namespace.as_str(),
                a[0].source.as_str(),
                a[0].health
            ),
            ("ProviderConfig", "shop", "twilio", Health::AccountSuspended)
        );
    }
}
