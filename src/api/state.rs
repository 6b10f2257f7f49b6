//! The API's state ([`AppState`]: everything a handler needs) and what it does to the cluster:
//! connect, disconnect and update go through the Kubernetes API, and connect and disconnect then
//! wait (bounded) on the cache for the controller's verdict in the status. Connects of one channel
//! run one after another: in one process through [`IdLocks`], across API replicas through the
//! Channel itself (`AppState::patch_after_verdict`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::args::Args;
use super::auth::Auth;
use super::cache::{AnswerCache, CachedChannel};
use super::error::ApiError;
use super::id_locks::IdLocks;
use super::kube_calls::{kube_error, patch_params, retry, secret_error};
use super::metrics::Metrics;
use crate::crd::{Channel, ChannelSpec, SecretKeyRef, Source};
use crate::ownership::{self, credentials_secret_name, PAGE_TOKEN_KEY};
use crate::reason::Reason;
use crate::secret::SecretString;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) cache: AnswerCache,
    pub(crate) client: kube::Client,
    pub(crate) namespace: String,
    pub(crate) id_locks: IdLocks,
    pub(crate) sync_timeout: Duration,
    pub(crate) naming: crate::naming::ChatPluginNaming,
    pub(crate) facebook: std::sync::Arc<crate::providers::facebook::Facebook>,
    pub(crate) viber: std::sync::Arc<crate::providers::viber::Viber>,
    pub(crate) viber_token: Option<SecretString>,
    pub(crate) metrics: Metrics,
    pub(crate) auth: Auth,
}

/// What a connect request asks for, validated.
#[derive(Debug)]
pub struct Desired {
    /// The source.
    pub source: Source,
    /// The source channel id.
    pub source_channel_id: String,
    /// The name, when given.
    pub name: Option<String>,
    /// The image, when given.
    pub image_url: Option<String>,
    /// The token the API keeps in the Channel's credentials Secret, when the source has one: the
    /// page token (facebook, instagram), the user token (whatsapp) or the bot's auth token (viber).
    pub channel_token: Option<SecretString>,
    /// Instagram's linked page, when the source is instagram.
    pub instagram: Option<crate::crd::InstagramSpec>,
}

/// What a create of a credentials Secret found.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Created,
    /// One of that name was there (the API cannot tell whose).
    Existed,
}

/// What the controller reported.
enum Outcome {
    Ready(Arc<CachedChannel>),
    /// Not Ready, with the reason and message.
    Failed(Reason, String),
    TimedOut,
}

impl AppState {
    /// State over a cache (filled by [`AnswerCache::run`] or by hand in tests).
    pub fn new(client: kube::Client, cache: AnswerCache, args: &Args) -> anyhow::Result<Self> {
        if !(args.sync_timeout_seconds.is_finite() && args.sync_timeout_seconds > 0.0) {
            anyhow::bail!("--sync-timeout-seconds must be a positive number");
        }
        // The namespace flags are checked here too, so a state built by hand follows them.
        args.api_namespaces()?;
        if cache.naming() != args.chatplugin_naming {
            anyhow::bail!(
                "the channel cache and --chatplugin-naming name the chat plugin differently"
            );
        }
        let providers = crate::providers::Providers::new(&args.providers)?;
        Ok(AppState {
            cache,
            client,
            namespace: args.channels_namespace(),
            id_locks: Default::default(),
            sync_timeout: Duration::from_secs_f64(args.sync_timeout_seconds),
            naming: args.chatplugin_naming,
            facebook: providers.facebook(),
            viber: providers.viber(),
            viber_token: args
                .providers
                .viber_auth_token
                .clone()
                .filter(|t| !t.is_empty()),
            metrics: Metrics::new(),
            auth: Auth::new(&args.api_tokens, args.jwt_secret.as_ref()),
        })
    }

    /// The cache.
    pub fn cache(&self) -> &AnswerCache {
        &self.cache
    }

    fn channels(&self, namespace: &str) -> Api<Channel> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits for the controller's verdict on generation `generation` of namespace/name.
    async fn outcome(&self, namespace: &str, name: &str, generation: i64) -> Outcome {
        self.cache
            .wait_for(self.sync_timeout, |c| {
                let e = c.get_by_key(namespace, name)?;
                let verdict = e.verdict_at(generation)?;
                match (verdict.status?, verdict.reason) {
                    (true, _) => Some(Outcome::Ready(e)),
                    (false, Some(Reason::Progressing)) => None,
                    (false, reason) => {
                        let reason = reason.unwrap_or(Reason::ProviderError);
                        // The cache holds exactly the Channels the API serves.
                        let message = super::confine::channel_refs(
                            &failure_message(reason, verdict.message()),
                            |ns, name| c.get_by_key(ns, name).is_some(),
                        );
                        Some(Outcome::Failed(reason, message))
                    }
                }
            })
            .await
            .unwrap_or(Outcome::TimedOut)
    }

    fn timed_out(&self, what: &str) -> ApiError {
        ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the channel was not {what} within {} s; the change stays and is reconciled in the background",
                self.sync_timeout.as_secs_f64()
            ),
        )
    }

    /// Connects: creates the Channel or updates the one with that id, then waits for the verdict.
    pub async fn connect(&self, d: Desired) -> Result<Arc<CachedChannel>, ApiError> {
        let id = self.naming.id_of(d.source, &d.source_channel_id);
        let _locked = self.id_locks.lock(&id).await;
        if let Some(existing) = self.cache.get(&id) {
            return self.connect_existing(existing, None, d).await;
        }
        // A Channel of this provider resource pinned to Airy Core's other id for it (Viber). Chat
        // plugins are not looked up so: as at Airy Core, a connect makes a new one.
        if d.source != Source::ChatPlugin {
            let pinned = crate::pinned_id::derived_ids(d.source, &d.source_channel_id)
                .into_iter()
                .filter_map(|other| self.cache.get(&other))
                .find(|e| {
                    e.source == d.source && e.inputs.has_source_channel_id(&d.source_channel_id)
                });
            if let Some(existing) = pinned {
                return self.connect_existing(existing, None, d).await;
            }
        }
        let ns = self.namespace.clone();
        let api = self.channels(&ns);
        let credentials_secret_ref = d.channel_token.as_ref().map(|t| SecretKeyRef {
            name: credentials_secret_name(&id, t.expose()),
            key: PAGE_TOKEN_KEY.to_owned(),
        });
        // A Channel with credentials is created disconnected: its credentials Secret is written
        // next, controlled by the Channel (so nothing stays when a later step fails), and only
        // then is the Channel connected; the controller never sees it connected without them.
        let mut channel = Channel::new(
            &id,
            ChannelSpec {
                source: d.source,
                source_channel_id: d.source_channel_id.clone(),
                channel_id: None,
                name: d.name.clone(),
                image_url: d.image_url.clone(),
                connected: credentials_secret_ref.is_none(),
                credentials_secret_ref: credentials_secret_ref.clone(),
                instagram: d.instagram.clone(),
                whatsapp: None,
                deletion_policy: Default::default(),
                provider_config_ref: None,
            },
        );
        channel.metadata.namespace = Some(ns.clone());
        channel.metadata.labels = Some(ownership::managed_labels());
        let pp = PostParams::default();
        let created = match retry(false, || api.create(&pp, &channel)).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Created meanwhile (or by an earlier attempt whose answer was lost).
                let current = retry(false, || api.get(&id)).await.map_err(kube_error)?;
                let entry = CachedChannel::new(&current, self.naming).ok_or_else(|| {
                    ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "a resource of the channel's name exists that declares another channel",
                    )
                })?;
                return self
                    .connect_existing(Arc::new(entry), Some(current), d)
                    .await;
            }
            Err(e) => return Err(kube_error(e)),
        };
        let created = match (&credentials_secret_ref, &d.channel_token) {
            (Some(r), Some(token)) => match self.connect_created(&created, &r.name, token).await {
                Ok(connected) => connected,
                Err(e) => {
                    self.remove_created(&created).await;
                    return Err(e);
                }
            },
            _ => created,
        };
        let generation = created.metadata.generation.unwrap_or(1);
        match self.outcome(&ns, &id, generation).await {
            Outcome::Ready(e) => Ok(e),
            Outcome::Failed(reason, message) => {
                self.remove_created(&created).await;
                Err(if reason == Reason::Duplicate {
                    // Held by a Channel outside the API's namespaces: say nothing about it.
                    held_elsewhere()
                } else {
                    failed(reason, message)
                })
            }
            Outcome::TimedOut => Err(self.timed_out("connected")),
        }
    }

    /// Writes the credentials Secret `name` of the Channel this request `created` (disconnected),
    /// then connects the Channel; returns it as patched. A Secret of that name that exists already
    /// was not written for this new Channel: the connect is refused, and uses nothing of it.
    async fn connect_created(
        &self,
        created: &Channel,
        name: &str,
        token: &SecretString,
    ) -> Result<Channel, ApiError> {
        if self.create_credentials_secret(created, name, token).await? == Written::Existed {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "a Secret of the name the channel's page token is stored under exists, and this \
                 connect did not write it; try again in a moment (one left by an earlier attempt \
                 is removed with its channel), or have it removed",
            ));
        }
        let api = self.channels(&created.namespace().unwrap_or_default());
        let patch = Patch::Merge(json!({"spec": {"connected": true}}));
        let (pparams, name) = (patch_params(), created.name_any());
        retry(true, || api.patch(&name, &pparams, &patch))
            .await
            .map_err(kube_error)
    }

    /// Connects the channel of the cached entry `e`: patches what the request changes, or
    /// answers at once when it changes nothing and the channel is Ready. Decided from the entry
    /// (`e.inputs`); the Channel itself (`owner`, read when not given) only where a Secret needs
    /// its owner.
    async fn connect_existing(
        &self,
        e: Arc<CachedChannel>,
        mut owner: Option<Channel>,
        d: Desired,
    ) -> Result<Arc<CachedChannel>, ApiError> {
        let (ns, name) = (e.key().0.to_owned(), e.key().1.to_owned());
        if e.deleting {
            return Err(being_deleted());
        }
        // Its id is held by a Channel outside the API's namespaces: a connect would be refused
        // and undone (writing a Secret the API could not remove), so it is refused first.
        let held = |c: &CachedChannel| {
            c.verdict_at(e.generation)
                .is_some_and(|v| v.reason == Some(Reason::Duplicate))
        };
        if held(&e) || self.cache.get_by_key(&ns, &name).is_some_and(|c| held(&c)) {
            return Err(held_elsewhere());
        }
        let new_ref = d.channel_token.as_ref().map(|t| SecretKeyRef {
            name: credentials_secret_name(&name, t.expose()),
            key: PAGE_TOKEN_KEY.to_owned(),
        });
        let mut spec = serde_json::Map::new();
        if !e.spec_connected {
            spec.insert("connected".into(), json!(true));
        }
        if let Some(n) = d.name.as_ref().filter(|n| !e.inputs.has_name(n)) {
            spec.insert("name".into(), json!(n));
        }
        if let Some(u) = d.image_url.as_ref().filter(|u| !e.inputs.has_image_url(u)) {
            spec.insert("imageUrl".into(), json!(u));
        }
        if let Some(i) = d.instagram.as_ref().filter(|i| !e.inputs.has_instagram(i)) {
            spec.insert("instagram".into(), json!({"pageId": i.page_id}));
        }
        let ref_changes = new_ref.is_some() && !e.inputs.has_credentials(new_ref.as_ref());
        if let (Some(r), Some(token), false) = (&new_ref, &d.channel_token, ref_changes) {
            // The same token: the Secret the spec names should be there (the controller keeps it
            // at disconnect); one deleted meanwhile is written again, so the connect can work.
            // The API cannot read it: a create that finds it is the usual case. The Secret
            // needs its owner (uid, generation), which the cache entry does not keep.
            let owner = self.read_owner(&mut owner, &ns, &name).await?;
            self.create_credentials_secret(owner, &r.name, token)
                .await?;
        }
        // A new token's Secret, written after the Channel is read for the patch naming it.
        let new_secret = match (&new_ref, &d.channel_token, ref_changes) {
            (Some(r), Some(token), true) => {
                spec.insert(
                    "credentialsSecretRef".into(),
                    json!({"name": r.name, "key": r.key}),
                );
                Some((r.name.as_str(), token))
            }
            _ => None,
        };
        // The spec as the patch found it, to undo the patch when the id is held elsewhere.
        let (generation, before) = if spec.is_empty() {
            // Nothing to change: answer at once when the channel is already connected.
            if let Some(current) = self.cache.get_by_key(&ns, &name) {
                if current.ready_at(e.generation) {
                    return Ok(current);
                }
            }
            (e.generation, None)
        } else {
            // Whatever fails from here leaves a new Secret to the controller, which deletes the
            // credentials the spec does not name once the Channel moved past the generation they
            // were written at (ownership::controller_deletes_unnamed).
            let (before, patched) = self
                .patch_after_verdict(&ns, &name, json!(spec), new_secret)
                .await?;
            (patched.metadata.generation.unwrap_or(0), Some(before))
        };
        let outcome = self.outcome(&ns, &name, generation).await;
        if let Outcome::Failed(Reason::Duplicate, _) = outcome {
            // Held by a Channel outside the API's namespaces: the connect changes nothing. The
            // Channel gets its spec back, and with it its old Secret (the new one is the
            // controller's to delete).
            if let Some(before) = &before {
                super::undo::undo_connect(&self.channels(&ns), &ns, &name, &spec, before).await;
            }
            return Err(held_elsewhere());
        }
        match outcome {
            Outcome::Ready(e) => Ok(e),
            Outcome::Failed(reason, message) => Err(failed(reason, message)),
            Outcome::TimedOut => Err(self.timed_out("connected")),
        }
    }

    /// The Channel `namespace/name` as the API server has it now, read once into `slot`.
    async fn read_owner<'a>(
        &self,
        slot: &'a mut Option<Channel>,
        namespace: &str,
        name: &str,
    ) -> Result<&'a Channel, ApiError> {
        if slot.is_none() {
            let api = self.channels(namespace);
            let read = retry(false, || api.get_opt(name))
                .await
                .map_err(kube_error)?;
            *slot = Some(read.ok_or_else(being_deleted)?);
        }
        Ok(slot.as_ref().expect("read above"))
    }

    /// Creates the credentials Secret `name` of `owner` holding the channel's token (under the
    /// key `page_token` whatever the source), controlled by the Channel and marked with its uid
    /// and generation ([`ownership::api_credentials_secret`]). The API may create Secrets and
    /// nothing else: one that exists already is never read, changed or deleted here.
    async fn create_credentials_secret(
        &self,
        owner: &Channel,
        name: &str,
        token: &SecretString,
    ) -> Result<Written, ApiError> {
        let ns = owner.namespace().unwrap_or_default();
        // The operator's, and consenting to be this Channel's credentials.
        let secret = ownership::api_credentials_secret(&ns, name, token, owner);
        let api = self.secrets(&ns);
        let pp = PostParams::default();
        match retry(false, || api.create(&pp, &secret)).await {
            Ok(_) => Ok(Written::Created),
            // Same name = same token, if the Secret is the one its name says: the controller
            // uses it only then (ownership::token_fits_name).
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(Written::Existed),
            Err(e) => Err(secret_error(e)),
        }
    }

    /// Removes a Channel this request created (its credentials Secret, which it controls, goes
    /// with it: the garbage collector's). The deletion goes through the controller's finalizer,
    /// which disconnects the channel at its provider (a provider may have acted before it
    /// answered with an error).
    async fn remove_created(&self, created: &Channel) {
        let ns = created.namespace().unwrap_or_default();
        let name = created.name_any();
        let dp = DeleteParams {
            preconditions: created.uid().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        let api = self.channels(&ns);
        if let Err(e) = retry(false, || api.delete(&name, &dp)).await {
            tracing::warn!(error = %e, channel = %name, "removing a channel whose connect failed failed");
        }
        // Let the removal show before answering, so an immediate retry creates afresh.
        let gone = self
            .cache
            .wait_for(self.sync_timeout, |c| {
                c.get_by_key(&ns, &name).is_none().then_some(())
            })
            .await;
        if gone.is_none() {
            tracing::warn!(channel = %name, "a channel whose connect failed is still being removed");
        }
    }

    /// Disconnects; `Ok(true)` when it was connected, `Ok(false)` when it already was not.
    pub async fn disconnect(&self, source: Source, id: &str) -> Result<bool, ApiError> {
        let _locked = self.id_locks.lock(id).await;
        let unknown = || ApiError::bad_request(format!("channel {id} is not known"));
        let e = self.cache.get(id).ok_or_else(unknown)?;
        if e.source != source {
            return Err(ApiError::bad_request(format!(
                "channel {id} is not a {source} channel"
            )));
        }
        // A Channel pinning an id that is not its own (refused by the controller too).
        if let Some(why) = &e.bad_pin {
            return Err(ApiError::bad_request(why.to_string()));
        }
        if !e.spec_connected {
            return Ok(false);
        }
        let (ns, name) = e.key();
        let api = self.channels(ns);
        let patch = Patch::Merge(json!({"spec": {"connected": false}}));
        let pparams = patch_params();
        let patched = retry(true, || api.patch(name, &pparams, &patch))
            .await
            .map_err(kube_error)?;
        match self
            .outcome(ns, name, patched.metadata.generation.unwrap_or(0))
            .await
        {
            Outcome::Ready(_) => Ok(true),
            Outcome::Failed(reason, message) => Err(failed(reason, message)),
            Outcome::TimedOut => Err(self.timed_out("disconnected")),
        }
    }

    /// Updates name and image of a connected channel (`Some(None)`: no image any more); returns
    /// the answer: the updated channel, serialized.
    pub async fn update(
        &self,
        id: &str,
        name: Option<String>,
        image_url: Option<Option<String>>,
    ) -> Result<Bytes, ApiError> {
        let e = self
            .cache
            .get(id)
            .filter(|e| e.connected)
            .ok_or_else(|| ApiError::not_found(format!("channel {id} not found")))?;
        let mut spec = serde_json::Map::new();
        if let Some(n) = name {
            spec.insert("name".into(), json!(n));
        }
        if let Some(u) = image_url {
            spec.insert("imageUrl".into(), json!(u));
        }
        if spec.is_empty() {
            return Ok(e.json.clone());
        }
        let (ns, name) = e.key();
        let api = self.channels(ns);
        let patch = Patch::Merge(json!({ "spec": spec }));
        let pparams = patch_params();
        let patched = retry(true, || api.patch(name, &pparams, &patch))
            .await
            .map_err(|e| match kube_error(e) {
                nf if nf.status == 404 => ApiError::not_found(format!("channel {id} not found")),
                other => other,
            })?;
        Ok(super::cache::answer(&patched, self.naming).1)
    }

    /// Patches the spec of a Channel no other connect is waiting on: the Channel as read now must
    /// carry the controller's verdict on its generation, and the patch is conditional on that
    /// read (its resourceVersion). Connects of one channel through several API replicas are
    /// serialized this way, as [`IdLocks`] serializes them in one: a connect whose Channel is
    /// still being connected by another request answers 409 and changes nothing. Returns the
    /// spec the patch was applied to, and the patched Channel.
    ///
    /// `secret` (name, token): the credentials Secret the patch names, created between the read
    /// and the patch, marked with the generation read; a patch whose Channel changed its spec
    /// since is not made (the Secret is then the controller's to delete, as one a failed patch
    /// leaves).
    async fn patch_after_verdict(
        &self,
        ns: &str,
        name: &str,
        spec: serde_json::Value,
        secret: Option<(&str, &SecretString)>,
    ) -> Result<(crate::crd::ChannelSpec, Channel), ApiError> {
        let api = self.channels(ns);
        let pparams = patch_params();
        let mut written_at = None;
        for _ in 0..3 {
            let current = retry(false, || api.get(name)).await.map_err(kube_error)?;
            if current.metadata.deletion_timestamp.is_some() || !has_verdict(&current) {
                return Err(in_progress());
            }
            if let Some((secret, token)) = secret {
                match written_at {
                    None => {
                        self.create_credentials_secret(&current, secret, token)
                            .await?;
                        written_at = Some(current.metadata.generation);
                    }
                    Some(g) if g != current.metadata.generation => return Err(in_progress()),
                    Some(_) => {}
                }
            }
            let mut metadata = json!({"resourceVersion": current.resource_version()});
            if secret.is_some() {
                // Kept through an undo of the spec: the controller deletes the Secret once unnamed.
                metadata["annotations"] = json!({ownership::API_CREDENTIALS_ANNOTATION: "true"});
            }
            let patch = Patch::Merge(json!({"metadata": metadata, "spec": spec}));
            match retry(false, || api.patch(name, &pparams, &patch)).await {
                Ok(p) => return Ok((current.spec, p)),
                // Changed since the read (a status write, or another request): read again.
                Err(kube::Error::Api(s)) if s.is_conflict() => continue,
                Err(e) => return Err(kube_error(e)),
            }
        }
        Err(in_progress())
    }
}

/// What an API client is told of the controller's failure: the condition's message, except for
/// the reasons whose message names a Secret (and with it a digest of the token), which stay in
/// the Channel's status for the cluster's administrator.
fn failure_message(reason: Reason, message: &str) -> String {
    match reason {
        Reason::CredentialsMissing => "Connect failed: the channel's credentials are missing or \
            cannot be used by the operator; its administrator finds the details in the Channel's \
            status"
            .to_owned(),
        Reason::SecretConflict => "Connect failed: a Secret the operator needs for this channel \
            is not the operator's; its administrator finds the details in the Channel's status"
            .to_owned(),
        _ if message.is_empty() => format!("the channel could not be reconciled ({reason})"),
        _ => message.to_owned(),
    }
}

/// The answer to a connect or disconnect the controller reports failed: 503 when the
/// installation is not configured for it (no provider configuration admits the namespace, or
/// the operator lacks what the source needs: an app, a webhook URL, access to the namespace's
/// Secrets), else 500.
fn failed(reason: Reason, message: String) -> ApiError {
    match reason {
        Reason::ProviderConfigMissing | Reason::CredentialsMissing => {
            ApiError::unavailable(message)
        }
        _ => ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// The answer to a connect whose channel id a Channel outside the API's namespaces holds.
fn held_elsewhere() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "the channel id is already held by a Channel this API does not manage; \
         remove that Channel or connect it where it is declared",
    )
}

/// Whether the controller has given its verdict on the Channel's current generation (Ready or
/// not, but no longer `Progressing`): no connect is waiting on it.
fn has_verdict(ch: &Channel) -> bool {
    ch.verdict_at(ch.metadata.generation.unwrap_or(0))
        .is_some_and(|c| c.reason.as_str() != Reason::Progressing)
}

/// The answer to a connect of a channel being deleted.
fn being_deleted() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "the channel is being deleted; try again once it is gone",
    )
}

/// The answer to a connect of a channel another request is connecting.
fn in_progress() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "the channel is being connected by another request; try again once that is done",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_name_no_secret() {
        let secret = "default/f405cad8-dd03-5275-be27-a660d4d64949-page-token-3f08aace12";
        for reason in [Reason::CredentialsMissing, Reason::SecretConflict] {
            let m = failure_message(reason, &format!("the Secret {secret} does not exist"));
            assert!(!m.contains("page-token") && !m.contains("default/"), "{m}");
            assert!(m.starts_with("Connect failed:"), "{m}");
        }
        // A provider's message says what went wrong at the provider, and is kept.
        let m = failure_message(Reason::ProviderError, "facebook: HTTP 500: try later");
        assert_eq!(m, "facebook: HTTP 500: try later");
    }
}
