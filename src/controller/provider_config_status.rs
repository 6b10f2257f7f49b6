//! Each provider configuration's readiness and use, in its own status: `Ready=True`
//! (`SecretsFound`) when every Secret key it names exists and is not empty where the controller
//! reads it, else `Ready=False` (`SecretsMissing`) naming the Secret and key — never a value; the
//! Channels whose records name it (`holders`, `holderCount`), and while it is being deleted and
//! still held, `Ready=False` (`InUse`) saying which Channels it waits for. Once it is being
//! deleted and no record names it, its `airy.co/in-use` finalizer is removed (`in_use`). Written
//! by server-side apply like the Channels' status, when a configuration changes and every period
//! (Secrets and records are not watched for it; a Channel whose record goes pokes it).
//!
//! With its Secrets found, the condition `CredentialsHealthy` says whether its accounts work at
//! their providers (`provider_config_health`); the accounts needing attention are handed to the
//! metrics after every round.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

use super::in_use;
use super::provider_config_health::{self as health, AccountChecks, AccountVerdicts};
use super::provider_configs::{read_accounts, ProviderConfigs};
use super::watch::SecretAccess;
use crate::crd::READY;
use crate::credentials_health::Attention;
use crate::metrics::Metrics;
use crate::ownership::MANAGER;
use crate::provider_config::{
    Accounts, ClusterProviderConfig, ProviderConfig, ProviderConfigStatus,
};

/// The reason of a usable configuration's Ready condition.
pub const SECRETS_FOUND: &str = "SecretsFound";
/// The reason of an unusable configuration's Ready condition.
pub const SECRETS_MISSING: &str = "SecretsMissing";
/// The reason of the Ready condition of a configuration being deleted that Channels still hold.
pub const IN_USE: &str = "InUse";

/// Configurations checked at once (each check may wait for two providers).
const PARALLEL_CHECKS: usize = 8;

/// What one check found of a configuration.
struct Found {
    ready: bool,
    message: String,
    accounts: AccountVerdicts,
}

/// Reports the readiness, use and accounts' health of every configuration when `configs` says
/// one changed, and every `period`, until dropped; lets a configuration being deleted go once no
/// record in `state_namespace` names it. Its providers are asked at most once per `recheck`
/// while it and its Secrets are unchanged.
pub async fn report(
    client: Client,
    configs: Arc<ProviderConfigs>,
    secret_access: SecretAccess,
    state_namespace: String,
    (period, recheck): (Duration, Duration),
    metrics: Arc<Metrics>,
) {
    let records: Api<Secret> = Api::namespaced(client.clone(), &state_namespace);
    let asked = AccountChecks::new(recheck);
    loop {
        tokio::select! {
            () = configs.changed() => {}
            () = tokio::time::sleep(period) => {}
        }
        let mut checks: Vec<BoxFuture<'_, Vec<Attention>>> = Vec::new();
        for pc in configs.namespaced().state() {
            let (client, configs, access, records, asked) =
                (&client, &configs, &secret_access, &records, &asked);
            checks.push(Box::pin(async move {
                let ns = pc.namespace().unwrap_or_default();
                let found = if access.allows(&ns) {
                    check(client, configs, asked, &ns, pc.as_ref(), &pc.accounts()).await
                } else {
                    unreadable(format!("the operator is not configured to read Secrets in namespace {ns} (--secret-namespaces)"))
                };
                let api: Api<ProviderConfig> = Api::namespaced(client.clone(), &ns);
                settle(&api, pc.as_ref(), pc.status.as_ref(), records, &found).await;
                health::attention(pc.as_ref(), &found.accounts)
            }));
        }
        for cpc in configs.cluster().state() {
            let (client, configs, access, records, asked) =
                (&client, &configs, &secret_access, &records, &asked);
            checks.push(Box::pin(async move {
                let ns = configs.operator_namespace();
                let found = if access.allows(ns) {
                    check(client, configs, asked, ns, cpc.as_ref(), &cpc.accounts()).await
                } else {
                    unreadable(format!("the operator is not configured to read Secrets in its namespace {ns} (--secret-namespaces)"))
                };
                let api: Api<ClusterProviderConfig> = Api::all(client.clone());
                settle(&api, cpc.as_ref(), cpc.status.as_ref(), records, &found).await;
                health::attention(cpc.as_ref(), &found.accounts)
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

/// Writes the status of `object` from its `readiness` and the records naming it; a
/// configuration being deleted that no record names loses its finalizer instead.
async fn settle<K>(
    api: &Api<K>,
    object: &K,
    previous: Option<&ProviderConfigStatus>,
    records: &Api<Secret>,
    found: &Found,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let uid = object.meta().uid.clone().unwrap_or_default();
    let (count, names) = match in_use::holders(records, &uid).await {
        Ok(h) => h,
        Err(e) => {
            warn!(kind = %K::kind(&()), %name, "cannot list the records naming the configuration: {e}");
            return;
        }
    };
    let verdict = match (object.meta().deletion_timestamp.is_some(), count) {
        (true, 0) => {
            if in_use::is_protected(object) {
                match in_use::unprotect(api, object).await {
                    Ok(()) => debug!(kind = %K::kind(&()), %name, "no Channel holds the configuration being deleted; let it go"),
                    Err(e) => warn!(kind = %K::kind(&()), %name, "cannot remove the in-use finalizer: {e}"),
                }
            }
            return;
        }
        (true, n) => Readiness {
            ready: false,
            reason: IN_USE,
            message: format!(
                "being deleted; it waits until no Channel holds it: {n} still connected through it ({}{}); disconnect, delete or move them",
                names.join(", "),
                if n > names.len() { ", …" } else { "" }
            ),
        },
        (false, _) => Readiness {
            ready: found.ready,
            reason: if found.ready {
                SECRETS_FOUND
            } else {
                SECRETS_MISSING
            },
            message: found.message.clone(),
        },
    };
    let held = (count > 0).then_some((count, names));
    write(api, object, previous, verdict, &found.accounts, held).await;
}

/// Whether the Secrets of `accounts` of configuration `object` are usable in `namespace`, and
/// whether the accounts work at their providers.
async fn check<K: Resource>(
    client: &Client,
    configs: &ProviderConfigs,
    asked: &AccountChecks,
    namespace: &str,
    object: &K,
    accounts: &Accounts,
) -> Found {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match read_accounts(&secrets, namespace, accounts).await {
        Ok(Ok(_)) if accounts.facebook.is_none() && accounts.twilio.is_none() => Found {
            ready: true,
            message: "no provider account configured".into(),
            accounts: Vec::new(),
        },
        Ok(Ok(read)) => {
            let uid = object.meta().uid.clone().unwrap_or_default();
            let generation = object.meta().generation;
            Found {
                ready: true,
                message: format!("the Secrets are present in namespace {namespace}"),
                accounts: asked
                    .verdicts(configs, &uid, generation, accounts, read)
                    .await,
            }
        }
        Ok(Err(why)) => Found {
            accounts: health::unchecked(accounts, &why),
            ready: false,
            message: why,
        },
        Err(e) => {
            let why = format!("the Secrets cannot be read: {e}");
            Found {
                accounts: health::unchecked(accounts, &why),
                ready: false,
                message: why,
            }
        }
    }
}

/// What the Ready condition says.
struct Readiness {
    ready: bool,
    reason: &'static str,
    message: String,
}

/// The status for `verdict`, the `accounts`' health and the Channels holding it (how many, the
/// first ones), keeping each condition's transition time while its status holds.
fn status(
    previous: Option<&ProviderConfigStatus>,
    generation: Option<i64>,
    verdict: Readiness,
    accounts: &AccountVerdicts,
    held: Option<(usize, Vec<String>)>,
) -> ProviderConfigStatus {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let before = previous.map_or(&[][..], |p| &p.conditions[..]);
    let status = if verdict.ready { "True" } else { "False" };
    let last_transition_time = crate::condition::transition_time(before, READY, status, &now);
    let (count, holders) = held.unwrap_or_default();
    let mut conditions = vec![Condition {
        type_: READY.into(),
        status: status.into(),
        reason: verdict.reason.into(),
        message: verdict.message,
        observed_generation: generation,
        last_transition_time,
    }];
    conditions.extend(health::condition(accounts, before, generation, &now));
    ProviderConfigStatus {
        observed_generation: generation,
        conditions,
        holders,
        holder_count: (count > 0).then_some(count as i64),
    }
}

/// Writes the status of `object` unless it already says that.
async fn write<K>(
    api: &Api<K>,
    object: &K,
    previous: Option<&ProviderConfigStatus>,
    verdict: Readiness,
    accounts: &AccountVerdicts,
    held: Option<(usize, Vec<String>)>,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ready = verdict.ready;
    let next = status(previous, object.meta().generation, verdict, accounts, held);
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
            debug!(kind = %K::kind(&()), %name, ready, "reported the configuration's readiness")
        }
        Err(e) => {
            warn!(kind = %K::kind(&()), %name, "cannot write the configuration's status: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(ready: bool, message: &str) -> Readiness {
        Readiness {
            ready,
            reason: if ready {
                SECRETS_FOUND
            } else {
                SECRETS_MISSING
            },
            message: message.into(),
        }
    }

    #[test]
    fn the_transition_time_holds_while_the_status_does() {
        let first = status(
            None,
            Some(1),
            verdict(false, "the Secret x does not exist"),
            &vec![],
            None,
        );
        let c = &first.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SECRETS_MISSING)
        );
        let again = status(
            Some(&first),
            Some(1),
            verdict(false, "the Secret x does not exist"),
            &vec![],
            None,
        );
        assert_eq!(again, first, "an unchanged status is not written again");
        let ready = status(
            Some(&first),
            Some(2),
            verdict(true, "present"),
            &vec![],
            Some((12, vec!["a/b".into()])),
        );
        assert_eq!(ready.conditions[0].reason, SECRETS_FOUND);
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!((ready.holder_count, ready.holders.len()), (Some(12), 1));
        assert_eq!(
            ready.conditions.len(),
            1,
            "no accounts: no CredentialsHealthy"
        );
    }
}
