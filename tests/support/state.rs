//! The operator's private state, read as the cluster admin: the namespace the tests give the
//! controller (`--state-namespace`), its Channel records (Secrets) and its Leases (the claims of
//! channel ids and the entries of shared provider effects).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::env::Env;

/// The state namespace of the tests' controller, and the chart's for the tests' release.
pub const STATE_NS: &str = "channel-operator-state";

/// The Secret `name` of the state namespace; fails the test when it does not exist.
pub async fn state_secret(env: &Env, name: &str) -> Secret {
    Api::<Secret>::namespaced(env.sb.client(), STATE_NS)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{STATE_NS}/{name}: {e}"))
}

/// The Secrets of the state namespace whose name starts with `prefix` (`channel-`: records).
pub async fn state_secrets(env: &Env, prefix: &str) -> Vec<Secret> {
    state_objects(env, prefix).await
}

/// The Leases of the state namespace whose name starts with `prefix` (`claim-`, `effect-`).
pub async fn state_leases(env: &Env, prefix: &str) -> Vec<Lease> {
    state_objects(env, prefix).await
}

async fn state_objects<K>(env: &Env, prefix: &str) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(env.sb.client(), STATE_NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.name_any().starts_with(prefix))
        .collect()
}

/// The record of the Channel with uid `uid`, if there is one.
pub async fn record(env: &Env, uid: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(env.sb.client(), STATE_NS)
        .get_opt(&format!("channel-{uid}"))
        .await
        .unwrap()
}

/// Waits until the Channel with uid `uid` has no record any more.
pub async fn no_record(env: &Env, uid: &str) {
    super::wait::eventually(format!("the record of {uid} to be gone"), || async {
        record(env, uid).await.is_none()
    })
    .await
}
