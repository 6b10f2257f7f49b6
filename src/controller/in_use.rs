//! A provider configuration in use is protected the way Kubernetes protects a
//! PersistentVolumeClaim in use (`kubernetes.io/pvc-protection`): the finalizer
//! [`IN_USE_FINALIZER`] is added before the first effect is made through it, and removed only
//! once it is being deleted and no Channel's record in the state namespace names it any longer
//! (read from the API server, not a cache). Meanwhile it admits no new connect, and the
//! Channels connected through it can still be disconnected, deleted or moved: an undo works
//! from the record.
//!
//! The race between a connect and the removal is closed without a clock: the connect writes its
//! record first, then reads the configuration from the API server and goes on only when it is
//! not being deleted ([`protect`]); the removal lists the records after the deletion began and
//! removes the finalizer with the resourceVersion it read. A record written before that list is
//! seen by it; one written after finds the configuration being deleted and is withdrawn.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::record::{CHANNEL_ANNOTATION, CONFIG_UID_LABEL};
use crate::effects::ConfigRef;
use crate::ownership::{managed_selector, MANAGER};
use crate::provider_config::{ClusterProviderConfig, ProviderConfig, ProviderConfigKind};

/// The finalizer of a configuration that records name.
pub const IN_USE_FINALIZER: &str = "airy.co/in-use";
/// How many of the Channels holding a configuration its status names.
pub const SHOWN: usize = 10;
const ATTEMPTS: usize = 8;

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Makes sure the configuration `r` (the object with its uid) carries the finalizer, reading it
/// from the API server: `Ok(true)` when it does (added now if it did not), `Ok(false)` when it
/// is being deleted or gone — no new connect through it. The flags' accounts need nothing.
pub async fn protect(client: &Client, r: &ConfigRef) -> Result<bool, kube::Error> {
    match r.kind {
        None => Ok(true),
        Some(ProviderConfigKind::ProviderConfig) => {
            protect_in(
                &Api::<ProviderConfig>::namespaced(client.clone(), &r.namespace),
                r,
            )
            .await
        }
        Some(ProviderConfigKind::ClusterProviderConfig) => {
            protect_in(&Api::<ClusterProviderConfig>::all(client.clone()), r).await
        }
    }
}

async fn protect_in<K>(api: &Api<K>, r: &ConfigRef) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..ATTEMPTS {
        let Some(object) = api.get_opt(&r.name).await? else {
            return Ok(false);
        };
        let meta = object.meta();
        if meta.uid.as_deref() != Some(r.uid.as_str()) || meta.deletion_timestamp.is_some() {
            return Ok(false);
        }
        let mut finalizers = meta.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == IN_USE_FINALIZER) {
            return Ok(true);
        }
        finalizers.push(IN_USE_FINALIZER.into());
        match set_finalizers(api, &object, finalizers).await {
            Ok(()) => return Ok(true),
            Err(e) if conflict(&e) => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Writes `finalizers` on `object`, guarded by the resourceVersion it was read with.
async fn set_finalizers<K>(
    api: &Api<K>,
    object: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {
        "resourceVersion": object.meta().resource_version,
        "finalizers": finalizers,
    }});
    api.patch(
        &object.name_any(),
        &PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// The Channels (`namespace/name`, sorted) whose records name the configuration object `uid`:
/// how many, and the first [`SHOWN`].
pub async fn holders(
    records: &Api<Secret>,
    uid: &str,
) -> Result<(usize, Vec<String>), kube::Error> {
    let selector = format!("{},{CONFIG_UID_LABEL}={uid}", managed_selector());
    let mut names: Vec<String> = records
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .iter()
        .filter_map(|s| s.annotations().get(CHANNEL_ANNOTATION).cloned())
        .collect();
    names.sort();
    let count = names.len();
    names.truncate(SHOWN);
    Ok((count, names))
}

/// Lets a configuration being deleted go: removes [`IN_USE_FINALIZER`] (guarded by the
/// resourceVersion `object` was read with; a conflict is left for the next round).
pub async fn unprotect<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizers: Vec<String> = object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != IN_USE_FINALIZER)
        .cloned()
        .collect();
    match set_finalizers(api, object, finalizers).await {
        Ok(()) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `object` carries [`IN_USE_FINALIZER`].
pub fn is_protected<K: Resource>(object: &K) -> bool {
    object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == IN_USE_FINALIZER)
}
