//! Writing the planned Channels and their credentials Secrets to the cluster, safely repeated.
//!
//! - Compared before written: a Channel whose applied fields, labels and annotations are all in
//!   the cluster already, and a Secret holding the token with migrate's labels, are not written
//!   (a second run moves no resourceVersion).
//! - Channels are written with server-side apply (field manager [`FIELD_MANAGER`], never forced):
//!   a field someone else changed since (the API's `channels.update`, `kubectl edit`) is a
//!   conflict, reported and not overwritten.
//! - Nothing migrate did not write is touched: a Channel or Secret of the planned name without
//!   migrate's label ([`MIGRATED_LABEL`]) is reported and skipped; so is a channel whose id (or
//!   provider resource) a Channel of another name, in this or another namespace, already holds.
//! - A credentials Secret is created before its Channel (the controller never sees the Channel
//!   without it), then owned by the Channel like the ones the API writes; the one a Channel named
//!   before a new token is deleted once the Channel names the new one.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Secret as K8sSecret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::plan::{Credentials, Planned};
use super::{FIELD_MANAGER, MIGRATED_FROM, MIGRATED_LABEL};
use crate::crd::Channel;
use crate::naming::ChatPluginNaming;
use crate::ownership::{self, PAGE_TOKEN_KEY};
use crate::secret::SecretString;

/// What became of one channel.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Verdict {
    /// Created or changed.
    #[default]
    Written,
    /// Already as planned: nothing written.
    Unchanged,
    /// Not written, on purpose: why.
    Skipped(String),
    /// Not written: what failed.
    Failed(String),
}

/// What became of a channel and of its credentials Secret (`Some(true)`: written,
/// `Some(false)`: unchanged, `None`: none written by migrate).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Outcome {
    /// The Channel.
    pub channel: Verdict,
    /// Its credentials Secret.
    pub secret_written: Option<bool>,
    /// The credentials Secret its owner creates (Airy Core did not list the token) is not there.
    pub secret_missing: bool,
}

impl From<Verdict> for Outcome {
    fn from(channel: Verdict) -> Self {
        Outcome {
            channel,
            ..Default::default()
        }
    }
}

/// Whether migrate wrote the object (its label).
pub fn is_migrated(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MIGRATED_LABEL))
        .is_some_and(|v| v == "true")
}

/// Whether every field of `part` is in `whole` with the same value (objects compared key by key).
pub fn is_subset(part: &Value, whole: &Value) -> bool {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|x| is_subset(v, x))),
        _ => part == whole,
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("HTTP {}: {}", s.code, s.message),
        other => other.to_string(),
    }
}

/// The Channels of the cluster that hold channel ids, read once before writing.
pub struct Holders {
    /// `id <effective id>` and `claim <claim name>` → the Channels (namespace, name).
    by_key: HashMap<String, Vec<(String, String)>>,
    /// The Channels of the target namespace, by name.
    ours: HashMap<String, Channel>,
    /// Only the target namespace could be listed (no right to list Channels cluster-wide).
    pub partial: bool,
}

fn keys(ch: &Channel, naming: ChatPluginNaming) -> [String; 2] {
    [
        format!("id {}", ch.channel_id(naming)),
        format!("claim {}", crate::claims::name(ch)),
    ]
}

/// The cluster of the current kubeconfig, seen from the target namespace.
pub struct Cluster {
    client: Client,
    namespace: String,
    naming: ChatPluginNaming,
    /// The Airy Core API the channels were read from (an annotation).
    from: String,
    channels: Api<Channel>,
    secrets: Api<K8sSecret>,
}

impl Cluster {
    /// The target `namespace` of `client`'s cluster, under the installation's `naming`, writing
    /// channels read from the Airy Core API `from`.
    pub fn new(client: Client, namespace: &str, naming: ChatPluginNaming, from: &str) -> Self {
        Cluster {
            from: from.to_owned(),
            channels: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            client,
            namespace: namespace.to_owned(),
            naming,
        }
    }

    /// Whether the target namespace exists (`true` as well when namespaces may not be read).
    pub async fn namespace_exists(&self) -> Result<bool, kube::Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(&self.namespace).await {
            Ok(found) => Ok(found.is_some()),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads the Channels holding channel ids: every namespace's, else (no right to list them
    /// cluster-wide) the target namespace's.
    pub async fn holders(&self) -> Result<Holders, kube::Error> {
        let all: Api<Channel> = Api::all(self.client.clone());
        let (items, partial) = match all.list(&ListParams::default()).await {
            Ok(l) => (l.items, false),
            Err(kube::Error::Api(s)) if s.code == 403 => (
                self.channels.list(&ListParams::default()).await?.items,
                true,
            ),
            Err(e) => return Err(e),
        };
        let mut by_key: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut ours = HashMap::new();
        for ch in items {
            let at = (ch.namespace().unwrap_or_default(), ch.name_any());
            for k in keys(&ch, self.naming) {
                by_key.entry(k).or_default().push(at.clone());
            }
            if at.0 == self.namespace {
                ours.insert(at.1, ch);
            }
        }
        Ok(Holders {
            by_key,
            ours,
            partial,
        })
    }

    /// Writes one planned channel (see the module docs).
    pub async fn write(&self, p: &Planned, holders: &Holders) -> Outcome {
        let name = p.channel.name_any();
        let ns = &self.namespace;
        let id = p.channel.channel_id(self.naming);
        let holder = keys(&p.channel, self.naming)
            .iter()
            .filter_map(|k| holders.by_key.get(k))
            .flatten()
            .find(|(n, c)| (n, c) != (ns, &name))
            .cloned();
        if let Some((hns, hname)) = holder {
            return Verdict::Skipped(if &hns == ns {
                format!("channel id {id} is already held by the Channel {hname} of this namespace")
            } else {
                format!("channel id {id} is held by the Channel {hname} of namespace {hns}; it is not overwritten")
            })
            .into();
        }
        let existing = holders.ours.get(&name);
        if let Some(ex) = existing {
            if !is_migrated(&ex.metadata) {
                return Verdict::Skipped(format!(
                    "a Channel named {name} exists in namespace {ns} and was not written by migrate; it is not overwritten"
                ))
                .into();
            }
            if ex.spec.channel_id != p.channel.spec.channel_id {
                return Verdict::Skipped(format!(
                    "the Channel {name} has another channelId ({}), which is immutable",
                    ex.spec.channel_id.as_deref().unwrap_or("none")
                ))
                .into();
            }
        }
        let mut secret_written = None;
        if let Some(Credentials::Write {
            name: secret,
            token,
        }) = &p.credentials
        {
            match self.ensure_secret(secret, token, existing).await {
                Ok(written) => secret_written = Some(written),
                Err(v) => return v.into(),
            }
        }
        let applied = p.applied();
        let (channel, verdict) = match existing {
            Some(ex) if is_subset(&applied, &serde_json::to_value(ex).unwrap_or_default()) => {
                (ex.clone(), Verdict::Unchanged)
            }
            _ => {
                let pp = PatchParams::apply(FIELD_MANAGER);
                match self
                    .channels
                    .patch(&name, &pp, &Patch::Apply(&applied))
                    .await
                {
                    Ok(ch) => (ch, Verdict::Written),
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        return Outcome {
                            channel: Verdict::Failed(format!(
                            "the Channel {name} was changed in the cluster since migrate wrote it \
                                 ({}); it is not overwritten",
                            s.message
                        )),
                            secret_written,
                            secret_missing: false,
                        }
                    }
                    Err(e) => {
                        return Outcome {
                            channel: Verdict::Failed(format!(
                                "the cluster refused the Channel {name}: {}",
                                api_message(&e)
                            )),
                            secret_written,
                            secret_missing: false,
                        }
                    }
                }
            }
        };
        if let Some(Credentials::Write { name: secret, .. }) = &p.credentials {
            match self.own_secret(secret, &channel).await {
                Ok(true) => secret_written = Some(true),
                Ok(false) => {}
                Err(e) => {
                    return Outcome {
                        channel: Verdict::Failed(format!(
                        "the Channel {name} could not be made the owner of its Secret {secret}: {}",
                        api_message(&e)
                    )),
                        secret_written,
                        secret_missing: false,
                    }
                }
            }
        }
        if let Some(old) = existing
            .and_then(|ex| ex.spec.credentials_secret_ref.as_ref())
            .filter(|old| Some(old.name.as_str()) != p.credentials.as_ref().map(|c| c.name()))
        {
            self.delete_replaced(&old.name, &channel).await;
        }
        let secret_missing = match &p.credentials {
            Some(Credentials::Missing { name }) => {
                !matches!(self.secrets.get_opt(name).await, Ok(Some(_)))
            }
            _ => false,
        };
        Outcome {
            channel: verdict,
            secret_written,
            secret_missing,
        }
    }

    /// The credentials Secret `name` as migrate writes it: the API's kind, marked as migrate's.
    fn secret(&self, name: &str, token: &SecretString, owner: Option<&Channel>) -> K8sSecret {
        let mut s = ownership::credentials_secret(&self.namespace, name, token, owner);
        s.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(MIGRATED_LABEL.to_owned(), "true".to_owned());
        s.metadata.annotations = Some(BTreeMap::from([(
            MIGRATED_FROM.to_owned(),
            self.from.clone(),
        )]));
        s
    }

    /// Creates the credentials Secret, or checks the one migrate wrote holds the token:
    /// `Ok(true)` when written, `Ok(false)` when already so.
    async fn ensure_secret(
        &self,
        name: &str,
        token: &SecretString,
        channel: Option<&Channel>,
    ) -> Result<bool, Verdict> {
        let wanted = self.secret(name, token, channel);
        let failed = |what: &str, e: kube::Error| {
            Verdict::Failed(format!(
                "{what} its Secret {name} failed: {}",
                api_message(&e)
            ))
        };
        match self.secrets.get_opt(name).await {
            Err(e) => Err(failed("reading", e)),
            Ok(None) => match self.secrets.create(&PostParams::default(), &wanted).await {
                Ok(_) => Ok(true),
                Err(e) => Err(failed("creating", e)),
            },
            Ok(Some(s)) if !is_migrated(&s.metadata) => Err(Verdict::Skipped(format!(
                "a Secret named {name} exists in namespace {} and was not written by migrate; it is not overwritten",
                self.namespace
            ))),
            Ok(Some(s)) => {
                let holds = s.data.as_ref().and_then(|d| d.get(PAGE_TOKEN_KEY))
                    == wanted.data.as_ref().and_then(|d| d.get(PAGE_TOKEN_KEY));
                let labelled = wanted.labels().iter().all(|(k, v)| s.labels().get(k) == Some(v));
                if holds && labelled {
                    return Ok(false);
                }
                let mut replacement = wanted;
                replacement.metadata.resource_version = s.metadata.resource_version.clone();
                replacement.metadata.owner_references = s.metadata.owner_references.clone();
                match self.secrets.replace(name, &PostParams::default(), &replacement).await {
                    Ok(_) => Ok(true),
                    Err(e) => Err(failed("updating", e)),
                }
            }
        }
    }

    /// Makes `channel` the controlling owner of its credentials Secret `name` (migrate's), unless
    /// it is already; `Ok(true)` when the Secret was changed.
    async fn own_secret(&self, name: &str, channel: &Channel) -> Result<bool, kube::Error> {
        let Some(reference) = ownership::owner_reference(channel) else {
            return Ok(false);
        };
        let Some(s) = self.secrets.get_opt(name).await? else {
            return Ok(false);
        };
        if !is_migrated(&s.metadata) || ownership::is_ours(&s.metadata, channel) {
            return Ok(false);
        }
        let patch = json!({"metadata": {
            "ownerReferences": [reference],
            "resourceVersion": s.metadata.resource_version,
        }});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        self.secrets.patch(name, &pp, &Patch::Merge(&patch)).await?;
        Ok(true)
    }

    /// Deletes the credentials Secret `name` that `channel` named before its token changed, when
    /// migrate wrote it for this Channel (guarded by its uid).
    async fn delete_replaced(&self, name: &str, channel: &Channel) {
        let Ok(Some(s)) = self.secrets.get_opt(name).await else {
            return;
        };
        if !is_migrated(&s.metadata) || !ownership::credentials_of(&s.metadata, channel) {
            return;
        }
        let dp = DeleteParams {
            preconditions: s.metadata.uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = self.secrets.delete(name, &dp).await {
            tracing::warn!(secret = name, error = %api_message(&e), "deleting a replaced credentials Secret failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_compare_objects_key_by_key() {
        let whole = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
                           "spec": {"name": "n", "connected": true, "deletionPolicy": "Orphan"}});
        assert!(is_subset(
            &json!({"metadata": {"labels": {"x": "1"}}, "spec": {"connected": true}}),
            &whole
        ));
        assert!(!is_subset(&json!({"spec": {"name": "m"}}), &whole));
        assert!(!is_subset(
            &json!({"spec": {"imageUrl": "https://x"}}),
            &whole
        ));
        assert!(!is_subset(
            &json!({"metadata": {"labels": {"z": "1"}}}),
            &whole
        ));
    }
}
