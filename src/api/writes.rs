//! The write side: connect, disconnect and update go through the Kubernetes API, and connect and
//! disconnect then wait (bounded) on the cache for the controller's verdict in the status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::reason::Reason;

use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::cache::Entry;

use super::error::ApiError;
use super::AppState;
use crate::crd::{Channel, ChannelSpec, SecretKeyRef, Source};
use crate::ownership::{self, credentials_secret_name, PAGE_TOKEN_KEY};

/// Field manager of the API's writes.
pub const FIELD_MANAGER: &str = "channel-operator-api";

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
    pub page_token: Option<crate::secret::Secret>,
    /// Instagram's linked page, when the source is instagram.
    pub instagram: Option<crate::crd::InstagramSpec>,
}

/// What the controller reported.
enum Outcome {
    Ready(Arc<Entry>),
    /// Not Ready, with the reason and message.
    Failed(Reason, String),
    TimedOut,
}

/// Maps a Kubernetes API error to the API's answer.
pub fn kube_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) => match s.code {
            400 | 422 => ApiError::bad_request(format!("the channel was rejected: {}", s.message)),
            404 => ApiError::not_found("channel not found"),
            409 => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("the channel changed concurrently: {}", s.message),
            ),
            401 | 403 => ApiError::unavailable(
                "the Kubernetes API refused the request; check the service account's permissions",
            ),
            code => ApiError::unavailable(format!(
                "the Kubernetes API answered {code}; try again later"
            )),
        },
        other => {
            tracing::warn!(error = %other, "Kubernetes API request failed");
            ApiError::unavailable("the Kubernetes API is unreachable; try again later")
        }
    }
}

fn retryable(e: &kube::Error, conflicts: bool) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || (conflicts && s.is_conflict()),
        kube::Error::Auth(_) | kube::Error::BuildRequest(_) | kube::Error::SerdeError(_) => false,
        _ => true,
    }
}

/// The longest one Kubernetes write may take, retries included (kube's client itself also
/// retries 429/503 answers with a backoff).
const CALL_BUDGET: Duration = Duration::from_secs(8);

/// Runs a Kubernetes call, retrying server-side failures (and, for patches, conflicts), within
/// [`CALL_BUDGET`].
pub(super) async fn retry<T, F, Fut>(conflicts: bool, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_BUDGET;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout_at(deadline, f()).await {
            Ok(r) => r,
            Err(_) => {
                return Err(kube::Error::Api(
                    kube::core::Status::failure(
                        "the Kubernetes API did not answer in time",
                        "Timeout",
                    )
                    .with_code(504)
                    .boxed(),
                ))
            }
        };
        match result {
            Err(e) if attempt < 4 && retryable(&e, conflicts) => {
                tracing::debug!(error = %e, attempt, "retrying a Kubernetes API request");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

pub(super) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

impl AppState {
    pub(super) fn channels(&self, namespace: &str) -> Api<Channel> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn secrets(&self, namespace: &str) -> Api<K8sSecret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits for the controller's verdict on generation `generation` of namespace/name.
    async fn outcome(&self, namespace: &str, name: &str, generation: i64) -> Outcome {
        self.cache
            .wait_for(self.sync_timeout, |c| {
                let e = c.get_by_key(namespace, name)?;
                let cond = e.verdict_at(generation)?;
                match (cond.status.as_str(), cond.reason.as_str()) {
                    ("True", _) => Some(Outcome::Ready(e)),
                    ("False", r) if r == Reason::Progressing => None,
                    ("False", reason) => {
                        let reason = Reason::parse(reason).unwrap_or(Reason::ProviderError);
                        // The cache holds exactly the Channels the API serves.
                        let message = super::scope::confine(
                            &failure_message(reason, &cond.message),
                            |ns, name| c.get_by_key(ns, name).is_some(),
                        );
                        Some(Outcome::Failed(reason, message))
                    }
                    _ => None,
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
    pub async fn connect(&self, d: Desired) -> Result<Arc<Entry>, ApiError> {
        let id = self.naming.channel_id(d.source, &d.source_channel_id);
        let _turn = self.connects.lock(&id).await;
        if let Some(existing) = self.cache.get(&id) {
            return self.connect_existing(Arc::new(existing.channel()), d).await;
        }
        // A Channel of this provider resource pinned to Airy Core's other id for it (Viber). Chat
        // plugins are not looked up so: as at Airy Core, a connect makes a new one.
        if d.source != Source::ChatPlugin {
            let pinned = crate::pinned_id::derived_ids(d.source, &d.source_channel_id)
                .into_iter()
                .filter_map(|other| self.cache.get(&other))
                .find(|e| e.source == d.source && e.spec.source_channel_id == d.source_channel_id);
            if let Some(existing) = pinned {
                return self.connect_existing(Arc::new(existing.channel()), d).await;
            }
        }
        let ns = self.namespace.clone();
        let api = self.channels(&ns);
        let credentials_secret_ref = d.page_token.as_ref().map(|t| SecretKeyRef {
            name: credentials_secret_name(&id, t.expose()),
            key: PAGE_TOKEN_KEY.to_owned(),
        });
        let mut channel = Channel::new(
            &id,
            ChannelSpec {
                source: d.source,
                source_channel_id: d.source_channel_id.clone(),
                channel_id: None,
                name: d.name.clone(),
                image_url: d.image_url.clone(),
                connected: true,
                credentials_secret_ref: credentials_secret_ref.clone(),
                instagram: d.instagram.clone(),
                whatsapp: None,
                deletion_policy: Default::default(),
                provider_config_ref: None,
            },
        );
        channel.metadata.namespace = Some(ns.clone());
        channel.metadata.labels = Some(ownership::managed_labels());
        // The page-token Secret comes first, so the controller never sees the Channel without
        // its credentials; it is adopted by the Channel once that has a uid.
        let secret_name = credentials_secret_ref.as_ref().map(|r| r.name.clone());
        if let (Some(name), Some(token)) = (&secret_name, &d.page_token) {
            self.create_page_token_secret(&ns, None, name, token)
                .await?;
        }
        let pp = PostParams::default();
        let created = match retry(false, || api.create(&pp, &channel)).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Created meanwhile (or by an earlier attempt whose answer was lost).
                let current = retry(false, || api.get(&id)).await.map_err(kube_error)?;
                return self.connect_existing(Arc::new(current), d).await;
            }
            Err(e) => {
                if let Some(name) = &secret_name {
                    self.delete_secret(&channel, name).await;
                }
                return Err(kube_error(e));
            }
        };
        if let Some(name) = &secret_name {
            if let Err(e) = self.adopt_secret(&created, name).await {
                self.remove_created(&created, Some(name)).await;
                return Err(e);
            }
        }
        let generation = created.metadata.generation.unwrap_or(1);
        match self.outcome(&ns, &id, generation).await {
            Outcome::Ready(e) => Ok(e),
            Outcome::Failed(reason, message) => {
                self.remove_created(
                    &created,
                    credentials_secret_ref.as_ref().map(|r| r.name.as_str()),
                )
                .await;
                Err(if reason == Reason::Duplicate {
                    // Held by a Channel outside the API's namespaces: say nothing about it.
                    held_elsewhere()
                } else {
                    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message)
                })
            }
            Outcome::TimedOut => Err(self.timed_out("connected")),
        }
    }

    async fn connect_existing(&self, ch: Arc<Channel>, d: Desired) -> Result<Arc<Entry>, ApiError> {
        let ns = ch.namespace().unwrap_or_default();
        let name = ch.name_any();
        if ch.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "the channel is being deleted; try again once it is gone",
            ));
        }
        let old_ref = ch.spec.credentials_secret_ref.clone();
        let new_ref = d.page_token.as_ref().map(|t| SecretKeyRef {
            name: credentials_secret_name(&name, t.expose()),
            key: PAGE_TOKEN_KEY.to_owned(),
        });
        let mut spec = serde_json::Map::new();
        if !ch.spec.connected {
            spec.insert("connected".into(), json!(true));
        }
        if let Some(n) = d
            .name
            .as_ref()
            .filter(|n| ch.spec.name.as_ref() != Some(*n))
        {
            spec.insert("name".into(), json!(n));
        }
        if let Some(u) = d
            .image_url
            .as_ref()
            .filter(|u| ch.spec.image_url.as_ref() != Some(*u))
        {
            spec.insert("imageUrl".into(), json!(u));
        }
        if let Some(i) = d
            .instagram
            .as_ref()
            .filter(|i| ch.spec.instagram.as_ref() != Some(*i))
        {
            spec.insert("instagram".into(), json!({"pageId": i.page_id}));
        }
        let ref_changes = new_ref.is_some() && new_ref != old_ref;
        if let (Some(r), Some(token), false) = (&new_ref, &d.page_token, ref_changes) {
            // The same token: the Secret the spec names should be there (the controller keeps it
            // at disconnect); one deleted meanwhile is written again, so the connect can work.
            let api = self.secrets(&ns);
            if retry(false, || api.get_opt(&r.name))
                .await
                .map_err(secret_error)?
                .is_none()
            {
                self.create_page_token_secret(&ns, Some(&ch), &r.name, token)
                    .await?;
            }
        }
        if let Some(r) = new_ref.as_ref().filter(|_| ref_changes) {
            spec.insert(
                "credentialsSecretRef".into(),
                json!({"name": r.name, "key": r.key}),
            );
        }
        let generation = if spec.is_empty() {
            // Nothing to change: answer at once when the channel is already connected.
            let generation = ch.metadata.generation.unwrap_or(0);
            if let Some(e) = self.cache.get_by_key(&ns, &name) {
                if e.ready_at(generation) {
                    return Ok(e);
                }
            }
            generation
        } else {
            if let (Some(r), Some(token), true) = (&new_ref, &d.page_token, ref_changes) {
                self.create_page_token_secret(&ns, Some(&ch), &r.name, token)
                    .await?;
            }
            let patched = match self.patch_settled(&ns, &name, json!(spec)).await {
                Ok(p) => p,
                Err(e) => {
                    // The Channel never pointed at the new Secret: it has no use.
                    if let (Some(r), true) = (&new_ref, ref_changes) {
                        self.delete_owned_secret(&ch, &r.name).await;
                    }
                    return Err(e);
                }
            };
            patched.metadata.generation.unwrap_or(0)
        };
        let outcome = self.outcome(&ns, &name, generation).await;
        // The Channel points at the new Secret now, whatever the verdict: the old one has no use.
        if let (true, Some(old)) = (ref_changes, old_ref) {
            self.delete_owned_secret(&ch, &old.name).await;
        }
        match outcome {
            Outcome::Ready(e) => Ok(e),
            Outcome::Failed(_, message) => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message,
            )),
            Outcome::TimedOut => Err(self.timed_out("connected")),
        }
    }

    async fn create_page_token_secret(
        &self,
        ns: &str,
        owner: Option<&Channel>,
        name: &str,
        token: &crate::secret::Secret,
    ) -> Result<(), ApiError> {
        // The operator's, and consenting to be this Channel's credentials.
        let secret = ownership::credentials_secret(ns, name, token, owner);
        let api = self.secrets(ns);
        let pp = PostParams::default();
        match retry(false, || api.create(&pp, &secret)).await {
            Ok(_) => Ok(()),
            // Same name = same token: the Secret we need is there; make sure the Channel owns
            // it (an earlier attempt may have left it without an owner).
            Err(kube::Error::Api(s)) if s.is_already_exists() => match owner {
                Some(o) => self.adopt_secret(o, name).await,
                None => Ok(()),
            },
            Err(e) => Err(secret_error(e)),
        }
    }

    /// Makes the Channel the owner of its credentials Secret (deleted with it), when the
    /// ownership rules let the API adopt it; a Secret of that name that is someone else's is a
    /// conflict, and is left untouched.
    async fn adopt_secret(&self, owner: &Channel, name: &str) -> Result<(), ApiError> {
        let api = self.secrets(&owner.namespace().unwrap_or_default());
        let existing = retry(false, || api.get_opt(name))
            .await
            .map_err(secret_error)?;
        match existing {
            Some(s)
                if ownership::is_ours(&s.metadata, owner)
                    && ownership::usable_as_credentials(&s.metadata, owner) =>
            {
                return Ok(())
            }
            Some(s) if ownership::api_may_take(&s.metadata, owner) => {}
            _ => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "a Secret the channel's page token would be stored in exists and is not the \
                     operator's; remove it and connect again",
                ))
            }
        }
        let refs: Vec<_> = ownership::owner_reference(owner).into_iter().collect();
        // With the consent label too: one written before the API set it becomes usable.
        let patch = Patch::Merge(json!({"metadata": {
            "ownerReferences": refs,
            "labels": ownership::credentials_labels(),
        }}));
        let pparams = patch_params();
        retry(true, || api.patch(name, &pparams, &patch))
            .await
            .map(|_| ())
            .map_err(secret_error)
    }

    /// Removes the credentials Secret a failed connect for `ch` leaves, when the ownership rules
    /// let the API take it (guarded by its uid).
    async fn delete_secret(&self, ch: &Channel, name: &str) {
        let api = self.secrets(&ch.namespace().unwrap_or_default());
        let secret = match retry(false, || api.get_opt(name)).await {
            Ok(Some(s)) if ownership::api_may_take(&s.metadata, ch) => s,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading a page-token Secret to remove failed");
                return;
            }
        };
        let dp = DeleteParams {
            preconditions: secret.metadata.uid.map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match retry(false, || api.delete(name, &dp)).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => tracing::warn!(error = %e, "removing a page-token Secret failed"),
        }
    }

    async fn delete_owned_secret(&self, owner: &Channel, name: &str) {
        let api = self.secrets(&owner.namespace().unwrap_or_default());
        let Ok(Some(secret)) = api.get_opt(name).await else {
            return;
        };
        if ownership::api_deletes_replaced(&secret.metadata, owner) {
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                tracing::warn!(error = %e, secret = name, "deleting the old page-token Secret failed");
            }
        }
    }

    /// Removes a Channel this request created, and then its page-token Secret: nothing is kept.
    /// The deletion goes through the controller's finalizer, which disconnects the channel at its
    /// provider (a provider may have acted before it answered with an error), so the Secret is
    /// deleted only once the Channel is gone (bounded by the sync timeout).
    async fn remove_created(&self, created: &Channel, secret: Option<&str>) {
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
        if let Some(s) = secret {
            if gone.is_some() {
                self.delete_secret(created, s).await;
            } else {
                // Still being disconnected: the Channel owns the Secret, so the garbage
                // collector removes it with the Channel.
                tracing::warn!(channel = %name, "a channel whose connect failed is still being removed");
            }
        }
    }

    /// Disconnects; `Ok(true)` when it was connected, `Ok(false)` when it already was not.
    pub async fn disconnect(&self, source: Source, id: &str) -> Result<bool, ApiError> {
        let _turn = self.connects.lock(id).await;
        let Some(e) = self.cache.get(id) else {
            return Err(ApiError::bad_request(format!("channel {id} is not known")));
        };
        if e.source != source {
            return Err(ApiError::bad_request(format!(
                "channel {id} is not a {source} channel"
            )));
        }
        // A Channel pinning an id that is not its own (refused by the controller too).
        crate::pinned_id::check(&e.spec).map_err(ApiError::bad_request)?;
        if !e.spec.connected {
            return Ok(false);
        }
        let (ns, name) = e.key();
        let api = self.channels(&ns);
        let patch = Patch::Merge(json!({"spec": {"connected": false}}));
        let pparams = patch_params();
        let patched = retry(true, || api.patch(&name, &pparams, &patch))
            .await
            .map_err(kube_error)?;
        match self
            .outcome(&ns, &name, patched.metadata.generation.unwrap_or(0))
            .await
        {
            Outcome::Ready(_) => Ok(true),
            Outcome::Failed(_, message) => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message,
            )),
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
        let api = self.channels(&ns);
        let patch = Patch::Merge(json!({ "spec": spec }));
        let pparams = patch_params();
        let patched = retry(true, || api.patch(&name, &pparams, &patch))
            .await
            .map_err(|e| match kube_error(e) {
                nf if nf.status == 404 => ApiError::not_found(format!("channel {id} not found")),
                other => other,
            })?;
        Ok(super::cache::answer(&patched, self.naming).1)
    }
}

/// Maps a Kubernetes API error of a Secret request to the API's answer: like [`kube_error`],
/// without the cluster's message, which names the Secret (and so a digest of the token).
fn secret_error(e: kube::Error) -> ApiError {
    let mut err = kube_error(e);
    if matches!(err.status.as_u16(), 400 | 404 | 409) {
        err.message = "the channel's page token could not be stored; try again".to_owned();
    }
    err
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

/// The answer to a connect whose channel id a Channel outside the API's namespaces holds.
fn held_elsewhere() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "the channel id is already held by a Channel this API does not manage; \
         remove that Channel or connect it where it is declared",
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
