//! Each provider configuration's readiness, in its own status: `Ready=True` (`SecretsFound`) when
//! every Secret key it names exists and is not empty where the controller reads it, else
//! `Ready=False` (`SecretsMissing`) naming the Secret and key — never a value. Written by
//! server-side apply like the Channels' status, when a configuration changes and every period
//! (Secrets are not watched for it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

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

/// Reports the readiness of every configuration when `configs` says one changed, and every
/// `period`, until dropped.
pub async fn report(
    client: Client,
    configs: Arc<ProviderConfigs>,
    secret_access: SecretAccess,
    period: Duration,
) {
    loop {
        tokio::select! {
            () = configs.changed() => {}
            () = tokio::time::sleep(period) => {}
        }
        for pc in configs.namespaced().state() {
            let ns = pc.namespace().unwrap_or_default();
            let (ready, message) = if secret_access.allows(&ns) {
                check(&client, &ns, &pc.accounts()).await
            } else {
                (
                    false,
                    format!("the operator is not configured to read Secrets in namespace {ns} (--secret-namespaces)"),
                )
            };
            let api: Api<ProviderConfig> = Api::namespaced(client.clone(), &ns);
            write(&api, pc.as_ref(), pc.status.as_ref(), ready, message).await;
        }
        for cpc in configs.cluster().state() {
            let ns = configs.operator_namespace();
            let (ready, message) = if secret_access.allows(ns) {
                check(&client, ns, &cpc.accounts()).await
            } else {
                (
                    false,
                    format!("the operator is not configured to read Secrets in its namespace {ns} (--secret-namespaces)"),
                )
            };
            let api: Api<ClusterProviderConfig> = Api::all(client.clone());
            write(&api, cpc.as_ref(), cpc.status.as_ref(), ready, message).await;
        }
    }
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

/// The status for `ready`/`message`, keeping the condition's transition time while its status
/// holds.
fn status(
    previous: Option<&ProviderConfigStatus>,
    generation: Option<i64>,
    ready: bool,
    message: String,
) -> ProviderConfigStatus {
    let status = if ready { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.status == status)
        .map_or_else(
            || Time(k8s_openapi::jiff::Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    ProviderConfigStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: if ready {
                SECRETS_FOUND
            } else {
                SECRETS_MISSING
            }
            .into(),
            message,
            observed_generation: generation,
            last_transition_time,
        }],
    }
}

/// Writes the status of `object` unless it already says that.
async fn write<K>(
    api: &Api<K>,
    object: &K,
    previous: Option<&ProviderConfigStatus>,
    ready: bool,
    message: String,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let next = status(previous, object.meta().generation, ready, message);
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

    #[test]
    fn the_transition_time_holds_while_the_status_does() {
        let first = status(None, Some(1), false, "the Secret x does not exist".into());
        let c = &first.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SECRETS_MISSING)
        );
        let again = status(
            Some(&first),
            Some(1),
            false,
            "the Secret x does not exist".into(),
        );
        assert_eq!(again, first, "an unchanged status is not written again");
        let ready = status(Some(&first), Some(2), true, "present".into());
        assert_eq!(ready.conditions[0].reason, SECRETS_FOUND);
        assert_eq!(ready.observed_generation, Some(2));
    }
}
