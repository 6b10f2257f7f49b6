//! Each provider configuration's readiness and use, in its own status: `Ready=True`
//! (`SecretsFound`) when every Secret key it names exists and is not empty where the controller
//! reads it, else `Ready=False` (`SecretsMissing`) naming the Secret and key — never a value; the
//! Channels whose records name it (`holders`, `holderCount`), and while it is being deleted and
//! still held, `Ready=False` (`InUse`) saying which Channels it waits for. Once it is being
//! deleted and no record names it, its `airy.co/in-use` finalizer is removed (`in_use`). Written
//! by server-side apply like the Channels' status, when a configuration changes and every period
//! (Secrets and records are not watched for it; a Channel whose record goes pokes it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

use super::in_use;
use super::provider_configs::{read_accounts, ProviderConfigs};
use super::watch::SecretAccess;
use crate::crd::READY;
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

/// Reports the readiness and use of every configuration when `configs` says one changed, and
/// every `period`, until dropped; lets a configuration being deleted go once no record in
/// `state_namespace` names it.
pub async fn report(
    client: Client,
    configs: Arc<ProviderConfigs>,
    secret_access: SecretAccess,
    state_namespace: String,
    period: Duration,
) {
    let records: Api<Secret> = Api::namespaced(client.clone(), &state_namespace);
    loop {
        tokio::select! {
            () = configs.changed() => {}
            () = tokio::time::sleep(period) => {}
        }
        for pc in configs.namespaced().state() {
            let ns = pc.namespace().unwrap_or_default();
            let readiness = if secret_access.allows(&ns) {
                check(&client, &ns, &pc.accounts()).await
            } else {
                (
                    false,
                    format!("the operator is not configured to read Secrets in namespace {ns} (--secret-namespaces)"),
                )
            };
            let api: Api<ProviderConfig> = Api::namespaced(client.clone(), &ns);
            settle(&api, pc.as_ref(), pc.status.as_ref(), &records, readiness).await;
        }
        for cpc in configs.cluster().state() {
            let ns = configs.operator_namespace();
            let readiness = if secret_access.allows(ns) {
                check(&client, ns, &cpc.accounts()).await
            } else {
                (
                    false,
                    format!("the operator is not configured to read Secrets in its namespace {ns} (--secret-namespaces)"),
                )
            };
            let api: Api<ClusterProviderConfig> = Api::all(client.clone());
            settle(&api, cpc.as_ref(), cpc.status.as_ref(), &records, readiness).await;
        }
    }
}

/// Writes the status of `object` from its `readiness` and the records naming it; a
/// configuration being deleted that no record names loses its finalizer instead.
async fn settle<K>(
    api: &Api<K>,
    object: &K,
    previous: Option<&ProviderConfigStatus>,
    records: &Api<Secret>,
    readiness: (bool, String),
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
        (true, n) => Verdict {
            ready: false,
            reason: IN_USE,
            message: format!(
                "being deleted; it waits until no Channel holds it: {n} still connected through it ({}{}); disconnect, delete or move them",
                names.join(", "),
                if n > names.len() { ", …" } else { "" }
            ),
        },
        (false, _) => Verdict {
            ready: readiness.0,
            reason: if readiness.0 {
                SECRETS_FOUND
            } else {
                SECRETS_MISSING
            },
            message: readiness.1,
        },
    };
    let held = (count > 0).then_some((count, names));
    write(api, object, previous, verdict, held).await;
}

/// Whether the Secrets of `accounts` are usable in `namespace`, and what to say about it.
async fn check(client: &Client, namespace: &str, accounts: &Accounts) -> (bool, String) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match read_accounts(&secrets, namespace, accounts).await {
        Ok(Ok(_)) if accounts.facebook.is_none() && accounts.twilio.is_none() => {
            (true, "no provider account configured".into())
        }
        Ok(Ok(_)) => (
            true,
            format!("the Secrets are present in namespace {namespace}"),
        ),
        Ok(Err(why)) => (false, why),
        Err(e) => (false, format!("the Secrets cannot be read: {e}")),
    }
}

/// What the Ready condition says.
struct Verdict {
    ready: bool,
    reason: &'static str,
    message: String,
}

/// The status for `verdict` and the Channels holding it (how many, the first ones), keeping the
/// condition's transition time while its status holds.
fn status(
    previous: Option<&ProviderConfigStatus>,
    generation: Option<i64>,
    verdict: Verdict,
    held: Option<(usize, Vec<String>)>,
) -> ProviderConfigStatus {
    let status = if verdict.ready { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.status == status)
        .map_or_else(
            || Time(k8s_openapi::jiff::Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    let (count, holders) = held.unwrap_or_default();
    ProviderConfigStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: verdict.reason.into(),
            message: verdict.message,
            observed_generation: generation,
            last_transition_time,
        }],
        holders,
        holder_count: (count > 0).then_some(count as i64),
    }
}

/// Writes the status of `object` unless it already says that.
async fn write<K>(
    api: &Api<K>,
    object: &K,
    previous: Option<&ProviderConfigStatus>,
    verdict: Verdict,
    held: Option<(usize, Vec<String>)>,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ready = verdict.ready;
    let next = status(previous, object.meta().generation, verdict, held);
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

    fn verdict(ready: bool, message: &str) -> Verdict {
        Verdict {
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
            None,
        );
        assert_eq!(again, first, "an unchanged status is not written again");
        let ready = status(
            Some(&first),
            Some(2),
            verdict(true, "present"),
            Some((12, vec!["a/b".into()])),
        );
        assert_eq!(ready.conditions[0].reason, SECRETS_FOUND);
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!((ready.holder_count, ready.holders.len()), (Some(12), 1));
    }
}
