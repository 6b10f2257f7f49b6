//! One reconcile of one Channel.
//!
//! Level-triggered and idempotent: every decision is made from the Channel, its status and the
//! Secrets, so a reconcile may be repeated or cut off at any point. The status records the
//! connection inputs a channel was connected with (`connectedWith`); while they are unchanged and
//! the status says connected, the provider is never asked to connect again (a name change, a
//! resync, a restart only re-check).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn, Instrument};

use super::logic;
use super::{Args, MANAGER};
use crate::crd::{Channel, ChannelStatus, DeletionPolicy, FINALIZER};
use crate::metrics::Metrics;
use crate::providers::{ProviderError, Providers};
use crate::reason::Reason;
use crate::secret::Secret;

/// Key of the page access token in the token Secret the operator owns.
pub const TOKEN_KEY: &str = "page_access_token";
/// Label naming the channel id on Secrets the operator owns.
pub const CHANNEL_ID_LABEL: &str = "airy.co/channel-id";

/// Name of the Secret holding a Facebook channel's page access token.
pub fn token_secret_name(channel_name: &str) -> String {
    format!("{channel_name}-facebook-token")
}

/// Severity of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something went as desired.
    Normal,
    /// Something failed.
    Warning,
}

/// Publishes events.k8s.io/v1 Events about Channels.
///
/// kube's `Recorder` keeps every Event it sent for minutes to aggregate repeats into series; this
/// controller emits an Event only when something changes, so it creates them directly and keeps
/// nothing (at 10,000 Channels that cache was megabytes).
pub struct EventPublisher {
    client: Client,
    instance: String,
}

impl EventPublisher {
    /// Events are reported by `channel-operator` from `instance` (the replica's identity).
    pub fn new(client: Client, instance: String) -> Self {
        EventPublisher { client, instance }
    }

    /// Creates one Event regarding `ch`. Failures are logged, never fatal.
    pub async fn publish(
        &self,
        ch: &Channel,
        type_: EventType,
        why: &str,
        action: &str,
        note: String,
    ) {
        use k8s_openapi::api::events::v1::Event;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let ns = ch.namespace().unwrap_or_default();
        let mut ev = Event {
            action: Some(action.into()),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            note: Some(note.chars().take(1024).collect()),
            reason: Some(why.into()),
            regarding: Some(ch.object_ref(&())),
            reporting_controller: Some(MANAGER.into()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(format!("{type_:?}")),
            ..Default::default()
        };
        ev.metadata.name = Some(format!("{}.{:016x}", ch.name_any(), rand::random::<u64>()));
        ev.metadata.namespace = Some(ns.clone());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&kube::api::PostParams::default(), &ev).await {
            debug!("cannot publish event {why}: {e}");
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A provider call failed, or its inputs are missing.
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed, or the wrapped reconcile did.
    #[error("{0}")]
    Finalizer(#[source] Box<FinalizerError<Error>>),
}

impl Error {
    fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(f) => match f.as_ref() {
                FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }

    /// The Ready reason (or `KubeError`) this error is counted under.
    pub fn reason(&self) -> Reason {
        match self.inner() {
            Error::Provider(p) => p.reason(),
            _ => Reason::KubeError,
        }
    }

    /// The provider's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Error::Provider(ProviderError::RateLimited { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    providers: Providers,
    events: EventPublisher,
    metrics: Arc<Metrics>,
    store: Store<Channel>,
    min_backoff: Duration,
    max_backoff: Duration,
    resync: Duration,
    failures: Mutex<HashMap<String, u32>>,
    last_checked: Mutex<HashMap<String, Instant>>,
    /// resourceVersion of the last status this process wrote, per Channel uid: a cached object
    /// older than that is stale, and deciding from its status could connect a channel twice.
    last_write: Mutex<HashMap<String, u64>>,
}

impl Context {
    /// Builds the context from the flags.
    pub fn new(
        client: Client,
        providers: Providers,
        events: EventPublisher,
        metrics: Arc<Metrics>,
        store: Store<Channel>,
        args: &Args,
    ) -> Self {
        let (min_backoff, max_backoff) = super::backoff_bounds(args);
        Context {
            client,
            providers,
            events,
            metrics,
            store,
            min_backoff,
            max_backoff,
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            failures: Mutex::new(HashMap::new()),
            last_checked: Mutex::new(HashMap::new()),
            last_write: Mutex::new(HashMap::new()),
        }
    }

    fn channels(&self, ch: &Channel) -> Api<Channel> {
        Api::namespaced(self.client.clone(), &ch.namespace().unwrap_or_default())
    }

    fn secrets(&self, ch: &Channel) -> Api<KubeSecret> {
        Api::namespaced(self.client.clone(), &ch.namespace().unwrap_or_default())
    }

    /// Whether a connected channel is due for a provider re-check. A channel this process has not
    /// seen yet counts as just checked: a restart is not a reason to call every provider.
    fn recheck_due(&self, uid: &str) -> bool {
        let mut map = self.last_checked.lock().expect("not poisoned");
        match map.get(uid) {
            Some(t) if t.elapsed() >= self.resync => true,
            Some(_) => false,
            None => {
                map.insert(uid.to_owned(), Instant::now());
                false
            }
        }
    }

    fn mark_checked(&self, uid: &str) {
        self.last_checked
            .lock()
            .expect("not poisoned")
            .insert(uid.to_owned(), Instant::now());
    }

    /// Whether the cached Channel predates the last status this process wrote for it.
    fn is_stale(&self, ch: &Channel) -> bool {
        let (Some(uid), Some(rv)) = (ch.uid(), parse_rv(ch)) else {
            return false;
        };
        self.last_write
            .lock()
            .expect("not poisoned")
            .get(&uid)
            .is_some_and(|written| rv < *written)
    }

    fn forget(&self, uid: &str) {
        self.last_write.lock().expect("not poisoned").remove(uid);
        self.last_checked.lock().expect("not poisoned").remove(uid);
        self.failures.lock().expect("not poisoned").remove(uid);
    }

    /// The status to write, carrying over the Ready transition time.
    #[allow(clippy::too_many_arguments)]
    fn status(
        &self,
        ch: &Channel,
        connected: bool,
        connected_with: Option<String>,
        page: (Option<String>, Option<String>),
        ready: bool,
        why: Reason,
        message: &str,
    ) -> ChannelStatus {
        let generation = ch.metadata.generation;
        ChannelStatus {
            id: Some(ch.channel_id()),
            connected,
            page_name: page.0,
            page_image_url: page.1,
            connected_with,
            observed_generation: generation,
            conditions: vec![logic::ready_condition(
                ch.ready_condition(),
                ready,
                why,
                message,
                generation,
                Time(k8s_openapi::jiff::Timestamp::now()),
            )],
        }
    }

    /// Writes the status by server-side apply, unless it is already what the Channel says. Retries
    /// conflicts a few times: losing a status write after a provider call would mean calling again.
    async fn write_status(&self, ch: &Channel, status: ChannelStatus) -> Result<(), kube::Error> {
        if same_status(ch.status.as_ref(), &status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": Channel::api_version(&()),
            "kind": Channel::kind(&()),
            "status": status,
        });
        let api = self.channels(ch);
        let params = PatchParams::apply(MANAGER).force();
        let mut attempt = 0u32;
        loop {
            match api
                .patch_status(&ch.name_any(), &params, &Patch::Apply(&patch))
                .await
            {
                Ok(written) => {
                    if let (Some(uid), Some(rv)) = (ch.uid(), parse_rv(&written)) {
                        self.last_write
                            .lock()
                            .expect("not poisoned")
                            .insert(uid, rv);
                    }
                    return Ok(());
                }
                Err(e) if attempt < 4 && is_retriable(&e) => {
                    attempt += 1;
                    debug!("status write failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn event(&self, ch: &Channel, type_: EventType, why: Reason, action: &str, note: String) {
        self.events
            .publish(ch, type_, why.as_str(), action, note)
            .await;
    }

    /// Reads the Channel's credentials Secret. Returns the token and the Secret's resourceVersion.
    async fn credentials(&self, ch: &Channel) -> Result<(Option<Secret>, Option<String>), Error> {
        let Some(r) = &ch.spec.credentials_secret_ref else {
            return Ok((None, None));
        };
        let ns = ch.namespace().unwrap_or_default();
        let secret = self.secrets(ch).get_opt(&r.name).await?.ok_or_else(|| {
            ProviderError::CredentialsMissing(format!(
                "the Secret {ns}/{} named by spec.credentialsSecretRef does not exist",
                r.name
            ))
        })?;
        let value = secret_value(&secret, &r.key).ok_or_else(|| {
            ProviderError::CredentialsMissing(format!(
                "the Secret {ns}/{} has no key {:?} or its value is empty",
                r.name, r.key
            ))
        })?;
        Ok((Some(value), secret.metadata.resource_version.clone()))
    }

    /// The page access token kept at connect, if its Secret exists.
    async fn stored_token(&self, ch: &Channel) -> Result<Option<Secret>, Error> {
        let secret = self
            .secrets(ch)
            .get_opt(&token_secret_name(&ch.name_any()))
            .await?;
        Ok(secret.and_then(|s| secret_value(&s, TOKEN_KEY)))
    }

    /// Keeps the token in a Secret owned by the Channel (garbage-collected with it).
    async fn store_token(&self, ch: &Channel, token: &Secret) -> Result<(), Error> {
        let name = token_secret_name(&ch.name_any());
        let mut secret = KubeSecret::default();
        secret.metadata.name = Some(name.clone());
        secret.metadata.namespace = ch.namespace();
        secret.metadata.labels = Some(BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            ),
            (CHANNEL_ID_LABEL.to_owned(), ch.channel_id()),
        ]));
        secret.metadata.owner_references = ch.controller_owner_ref(&()).map(|r| vec![r]);
        secret.type_ = Some("Opaque".into());
        secret.data = Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token.expose().as_bytes().to_vec()),
        )]));
        let mut value = serde_json::to_value(&secret).map_err(kube::Error::SerdeError)?;
        value["apiVersion"] = "v1".into();
        value["kind"] = "Secret".into();
        self.secrets(ch)
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await?;
        Ok(())
    }

    /// Deletes every Secret whose ownerReferences name this Channel. Returns how many.
    async fn delete_owned_secrets(&self, ch: &Channel) -> Result<usize, Error> {
        let Some(uid) = ch.uid() else { return Ok(0) };
        let api = self.secrets(ch);
        let owned: Vec<String> = api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| {
                s.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
            })
            .map(|s| s.name_any())
            .collect();
        for name in &owned {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(owned.len())
    }

    /// Reports a failure in the status (keeping what is known to be connected) and returns it.
    async fn fail(&self, ch: &Channel, action: &str, err: Error) -> Result<Action, Error> {
        let prev = ch.status.clone().unwrap_or_default();
        let why = err.reason();
        let why = if why == Reason::KubeError {
            Reason::ProviderError
        } else {
            why
        };
        let message = format!("{action} failed: {err}");
        warn!(reason = why.as_str(), "{message}");
        let changed = ch
            .ready_condition()
            .is_none_or(|c| c.reason != why || c.message != message);
        let status = self.status(
            ch,
            prev.connected,
            prev.connected_with.clone(),
            (prev.page_name.clone(), prev.page_image_url.clone()),
            false,
            why,
            &message,
        );
        if let Err(e) = self.write_status(ch, status).await {
            warn!("cannot write the failure to the status: {e}");
        }
        if changed {
            self.event(ch, EventType::Warning, why, action, message)
                .await;
        }
        Err(err)
    }
}

fn parse_rv(ch: &Channel) -> Option<u64> {
    ch.metadata.resource_version.as_deref()?.parse().ok()
}

fn is_retriable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 429 || s.code >= 500)
}

/// Whether writing `new` would change nothing but the Ready transition time (which `new` carries over).
fn same_status(old: Option<&ChannelStatus>, new: &ChannelStatus) -> bool {
    old == Some(new)
}

fn secret_value(secret: &KubeSecret, key: &str) -> Option<Secret> {
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })?;
    let raw = raw.trim().to_owned();
    (!raw.is_empty()).then(|| Secret::new(raw))
}

/// The reconcile entry point given to the Controller.
pub async fn reconcile(ch: Arc<Channel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %ch.namespace().unwrap_or_default(),
        name = %ch.name_any(),
        channel_id = %ch.channel_id(),
    );
    async move {
        ctx.metrics.reconciles.inc();
        let started = Instant::now();
        let result = reconcile_inner(ch.clone(), ctx.clone()).await;
        ctx.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            if let Some(uid) = ch.uid() {
                ctx.failures.lock().expect("not poisoned").remove(&uid);
            }
        }
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(ch: Arc<Channel>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ch.is_paused() {
        // Hands off, including deletion: the finalizer stays until the annotation is removed.
        debug!("paused by the airy.co/paused annotation");
        return Ok(Action::await_change());
    }
    if ctx.is_stale(&ch) {
        // Our last status write has not reached the cache yet; decide on fresh data.
        debug!("cached Channel predates our last status write; retrying shortly");
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let api = ctx.channels(&ch);
    if ch.metadata.deletion_timestamp.is_none() && ch.finalizers().is_empty() {
        // The first finalizer goes in with a merge patch guarded by the resourceVersion (a
        // conflict retries). kube's helper would send a JSON patch testing the absent
        // /metadata/finalizers against null, which the sandbox rejects (kube-apiserver accepts).
        let patch = serde_json::json!({
            "metadata": {"finalizers": [FINALIZER], "resourceVersion": ch.resource_version()}
        });
        api.patch(
            &ch.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        return Ok(Action::await_change());
    }
    finalizer(&api, FINALIZER, ch, |event| async {
        match event {
            FinalizerEvent::Apply(ch) => apply(&ch, &ctx).await,
            FinalizerEvent::Cleanup(ch) => cleanup(&ch, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(ch: &Channel, ctx: &Context) -> Result<Action, Error> {
    let prev = ch.status.clone().unwrap_or_default();
    let page = (prev.page_name.clone(), prev.page_image_url.clone());
    if let Err(message) = crate::rules::validate_spec(&ch.spec) {
        let changed = ch
            .ready_condition()
            .is_none_or(|c| c.reason != Reason::InvalidSpec || c.message != message);
        let status = ctx.status(
            ch,
            prev.connected,
            prev.connected_with.clone(),
            page,
            false,
            Reason::InvalidSpec,
            &message,
        );
        ctx.write_status(ch, status).await?;
        if changed {
            warn!("invalid spec: {message}");
            ctx.event(
                ch,
                EventType::Warning,
                Reason::InvalidSpec,
                "Validate",
                message,
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    let same_id = ctx.store.state_filter(|c| {
        c.spec.source == ch.spec.source && c.spec.source_channel_id == ch.spec.source_channel_id
    });
    if let Some(owner) = logic::duplicate_owner(ch, same_id.iter().map(|c| c.as_ref())) {
        let message = format!(
            "{} {} belongs to the older Channel {owner}; this Channel is not connected",
            ch.spec.source, ch.spec.source_channel_id
        );
        let changed = ch
            .ready_condition()
            .is_none_or(|c| c.reason != Reason::Duplicate);
        let status = ctx.status(
            ch,
            false,
            None,
            (None, None),
            false,
            Reason::Duplicate,
            &message,
        );
        ctx.write_status(ch, status).await?;
        if changed {
            info!("duplicate of {owner}");
            ctx.event(
                ch,
                EventType::Warning,
                Reason::Duplicate,
                "Connect",
                message,
            )
            .await;
        }
        // The owner's deletion re-triggers this Channel; this is only a safety net.
        return Ok(Action::requeue(ctx.resync.min(Duration::from_secs(30))));
    }

    let provider = ctx.providers.for_source(ch.spec.source);
    let uid = ch.uid().unwrap_or_default();
    if ch.spec.connected {
        let (credentials, version) = if provider.needs_credentials() {
            match ctx.credentials(ch).await {
                Ok(c) => c,
                Err(e) => return ctx.fail(ch, "Connect", e).await,
            }
        } else {
            (None, None)
        };
        let fingerprint = logic::fingerprint(&ch.spec, version.as_deref());
        if prev.connected && prev.connected_with.as_deref() == Some(fingerprint.as_str()) {
            let mut page = page;
            if ctx.recheck_due(&uid) {
                let token = if provider.needs_credentials() {
                    ctx.stored_token(ch).await?
                } else {
                    None
                };
                match provider.recheck(ch, token.as_ref()).await {
                    Ok(o) => {
                        ctx.mark_checked(&uid);
                        page = (o.page_name.or(page.0), o.page_image_url.or(page.1));
                        debug!("re-checked at the provider");
                    }
                    Err(e) => return ctx.fail(ch, "Recheck", e.into()).await,
                }
            }
            let status = ctx.status(
                ch,
                true,
                Some(fingerprint),
                page,
                true,
                Reason::Connected,
                "connected at the provider",
            );
            ctx.write_status(ch, status).await?;
            return Ok(Action::requeue(ctx.resync));
        }

        let outcome = match provider.connect(ch, credentials.as_ref()).await {
            Ok(o) => o,
            Err(e) => return ctx.fail(ch, "Connect", e.into()).await,
        };
        if let Some(token) = &outcome.token {
            if let Err(e) = ctx.store_token(ch, token).await {
                return ctx.fail(ch, "StoreToken", e).await;
            }
        }
        ctx.mark_checked(&uid);
        info!(source = %ch.spec.source, "connected");
        let status = ctx.status(
            ch,
            true,
            Some(fingerprint),
            (outcome.page_name, outcome.page_image_url),
            true,
            Reason::Connected,
            "connected at the provider",
        );
        ctx.write_status(ch, status).await?;
        ctx.event(
            ch,
            EventType::Normal,
            Reason::Connected,
            "Connect",
            format!("connected {} {}", ch.spec.source, ch.spec.source_channel_id),
        )
        .await;
        Ok(Action::requeue(ctx.resync))
    } else {
        let was_connected = prev.connected || prev.connected_with.is_some();
        if was_connected {
            if let Some(failed) = disconnect_at_provider(
                ch,
                ctx,
                "Disconnect",
                "disconnected at the provider; deleting stored tokens",
                ("Disconnect", ""),
            )
            .await?
            {
                return Ok(failed);
            }
        }
        let settled = !was_connected
            && prev.observed_generation == ch.metadata.generation
            && ch
                .ready_condition()
                .is_some_and(|c| c.status == "True" && c.reason == Reason::Disconnected);
        if !settled {
            let n = ctx.delete_owned_secrets(ch).await?;
            if n > 0 {
                info!(secrets = n, "deleted the channel's stored tokens");
            }
        }
        let status = ctx.status(
            ch,
            false,
            None,
            (None, None),
            true,
            Reason::Disconnected,
            "disconnected at the provider",
        );
        ctx.write_status(ch, status).await?;
        Ok(Action::await_change())
    }
}

/// Disconnects a channel at its provider (with the stored token where the provider needs one),
/// then records it in the status as `Progressing` with `progress` before anything else happens
/// (a retry must not call the provider again) and reports a `Disconnected` Event. A provider
/// failure is reported through [`Context::fail`] as `action`, and its requeue is returned.
/// `event_action` and `event_suffix` tell the Event apart (a disconnect, or one before deletion).
async fn disconnect_at_provider(
    ch: &Channel,
    ctx: &Context,
    action: &str,
    progress: &str,
    (event_action, event_suffix): (&str, &str),
) -> Result<Option<Action>, Error> {
    let provider = ctx.providers.for_source(ch.spec.source);
    let token = if provider.needs_credentials() {
        ctx.stored_token(ch).await?
    } else {
        None
    };
    if let Err(e) = provider.disconnect(ch, token.as_ref()).await {
        return ctx.fail(ch, action, e.into()).await.map(Some);
    }
    info!(source = %ch.spec.source, "disconnected{event_suffix}");
    let status = ctx.status(
        ch,
        false,
        None,
        (None, None),
        false,
        Reason::Progressing,
        progress,
    );
    ctx.write_status(ch, status).await?;
    ctx.event(
        ch,
        EventType::Normal,
        Reason::Disconnected,
        event_action,
        format!(
            "disconnected {} {}{event_suffix}",
            ch.spec.source, ch.spec.source_channel_id
        ),
    )
    .await;
    Ok(None)
}

async fn cleanup(ch: &Channel, ctx: &Context) -> Result<Action, Error> {
    let prev = ch.status.clone().unwrap_or_default();
    let was_connected = prev.connected || prev.connected_with.is_some();
    if ch.spec.deletion_policy == DeletionPolicy::Disconnect && was_connected {
        if let Some(failed) = disconnect_at_provider(
            ch,
            ctx,
            "DisconnectBeforeDelete",
            "disconnected at the provider; deleting",
            ("Delete", " before deletion"),
        )
        .await?
        {
            return Ok(failed);
        }
    } else if was_connected {
        info!("deletionPolicy Orphan: deleting without calling the provider");
    }
    ctx.delete_owned_secrets(ch).await?;
    if let Some(uid) = ch.uid() {
        ctx.forget(&uid);
    }
    Ok(Action::await_change())
}

/// The retry policy given to the Controller: exponential backoff with jitter per Channel, capped;
/// a provider's Retry-After wins.
pub fn error_policy(ch: Arc<Channel>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(err.reason().as_str());
    let attempt = {
        let mut failures = ctx.failures.lock().expect("not poisoned");
        let n = failures.entry(ch.uid().unwrap_or_default()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    if let Some(after) = err.retry_after() {
        return Action::requeue(after);
    }
    let delay = logic::backoff(
        attempt,
        ctx.min_backoff,
        ctx.max_backoff,
        rand::random::<f64>(),
    );
    debug!(
        attempt,
        delay_ms = delay.as_millis() as u64,
        "retrying after backoff"
    );
    Action::requeue(delay)
}
