//! One reconcile of one Channel: observe, [`plan`], execute the step.
//!
//! Level-triggered and idempotent: every decision is made from the Channel, its status and the
//! Secrets, so a reconcile may be repeated or cut off at any point. The status records the
//! connection inputs a channel was connected with (`connectedWith`); while they are unchanged and
//! the status says connected, the provider is never asked to connect again (a name change, a
//! resync, a restart only re-check). Before a connect, the status records the attempt
//! (`connectAttempted`), so a connect whose outcome is unknown is undone at disconnect or deletion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;
use tracing::{debug, info, Instrument};

pub use super::context::{Config, Context};
pub use super::error::Error;
pub use super::events::{EventPublisher, EventType};
pub use super::feed::ChannelRef;
use super::logic;
use super::plan::{plan, Claim, Observed, Step};
use super::secrets::{self, TokenSecret};
use super::status::Reporter;
use crate::channel_state::{may_be_connected, needs_provider};
use crate::claims;
use crate::crd::{Channel, ChannelStatus, FINALIZER};
use crate::ownership::Moment;
use crate::providers::{Provider, Providers};
use crate::reason::{Reason, State};
use crate::secret::SecretString;

/// The reconcile entry point given to the Controller: reads the Channel from the API server (a
/// consistent read, never older than a status this process wrote) and reconciles it; nothing
/// when it is gone.
pub async fn reconcile_on_demand(r: Arc<ChannelRef>, ctx: Arc<Context>) -> Result<Action, Error> {
    let channels: kube::Api<Channel> =
        kube::Api::namespaced(ctx.client.clone(), &r.namespace().unwrap_or_default());
    match channels.get_opt(&r.name_any()).await? {
        Some(ch) => reconcile(Arc::new(ch), ctx).await,
        None => Ok(Action::await_change()),
    }
}

/// One reconcile of the Channel `ch` as read.
pub async fn reconcile(ch: Arc<Channel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %ch.namespace().unwrap_or_default(),
        name = %ch.name_any(),
        channel_id = %ch.channel_id(ctx.config.naming),
    );
    async move {
        ctx.metrics.reconciles.inc();
        let started = Instant::now();
        let result = reconcile_inner(ch.clone(), &ctx).await;
        ctx.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            ctx.succeeded(&super::index::key_of(&ch));
        }
        result
    }
    .instrument(span)
    .await
}

/// The retry policy given to the Controller: exponential backoff with jitter per Channel, capped;
/// a provider's Retry-After wins.
pub fn error_policy(r: Arc<ChannelRef>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(err.reason().as_str());
    let attempt = ctx.failed(&super::feed::key_of_ref(&r));
    if let Some(after) = err.retry_after() {
        return Action::requeue(after);
    }
    let delay = logic::backoff(
        attempt,
        ctx.config.min_backoff,
        ctx.config.max_backoff,
        rand::random::<f64>(),
    );
    debug!(
        attempt,
        delay_ms = delay.as_millis() as u64,
        "retrying after backoff"
    );
    Action::requeue(delay)
}

async fn reconcile_inner(ch: Arc<Channel>, ctx: &Context) -> Result<Action, Error> {
    if ch.is_paused() {
        // Hands off, including deletion: the finalizer stays until the annotation is removed.
        debug!("paused by the airy.co/paused annotation");
        return Ok(Action::await_change());
    }
    let api = ctx.channels(&ch);
    finalizer(&api, FINALIZER, ch, |event| async {
        let (FinalizerEvent::Apply(ch) | FinalizerEvent::Cleanup(ch)) = event;
        let (mut observed, mut providers) = observe(&ch, ctx).await?;
        // Claiming changes only the claim: plan again with its outcome (a lost race reads anew).
        for _ in 0..3 {
            let step = plan(&ch, &observed);
            debug!(?step, "planned");
            let taken = match step {
                Step::Claim => claims::create(&ctx.claims(), &ch).await?,
                Step::Reclaim(holder) => {
                    info!(owner = %format!("{}/{}", holder.namespace, holder.name), "the owner of the channel id no longer exists; taking over its claim");
                    match claims::delete(&ctx.claims(), &ch, &holder).await? {
                        true => claims::create(&ctx.claims(), &ch).await?,
                        false => None,
                    }
                }
                step => return execute(&ch, ctx, step, observed, &providers).await,
            };
            match taken {
                Some(holder) => {
                    info!("claimed the channel id");
                    observed.claim = Claim::Ours(holder);
                }
                None => (observed, providers) = observe(&ch, ctx).await?,
            }
        }
        Ok(Action::requeue(Duration::from_millis(200)))
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Reads what the plan needs, and only that; with the providers of the Channel's provider
/// configuration (where it has a usable one, else the flags' which it must not call).
async fn observe(ch: &Channel, ctx: &Context) -> Result<(Observed, Providers), Error> {
    let mut observed = Observed {
        invalid: crate::rules::validate_spec(&ch.spec).err(),
        claim: Claim::NotRead,
        rival: None,
        credentials: Ok(None),
        token_secret: TokenSecret::Absent,
        recheck_due: false,
        provider_config: Ok(None),
    };
    let mut providers = ctx.providers.clone();
    let status = ch.status.clone().unwrap_or_default();
    let deleting = ch.metadata.deletion_timestamp.is_some();
    if observed.invalid.is_some() && !deleting {
        return Ok((observed, providers));
    }
    // The provider configuration comes first: a Channel that may not call its provider claims
    // no channel id and reads nothing more.
    if needs_provider(ch) {
        match provider_config(ch, ctx).await? {
            Ok((p, config)) => {
                providers = p;
                observed.provider_config = Ok(config);
            }
            Err(why) => {
                observed.provider_config = Err(why);
                return Ok((observed, providers));
            }
        }
    }
    observed.claim = read_claim(ch, ctx, !deleting).await?;
    if deleting {
        return Ok((observed, providers));
    }
    if matches!(observed.claim, Claim::Free | Claim::Orphaned(_)) {
        let same_id = ctx.same_id(ch).await?;
        observed.rival = logic::connected_rival(ch, same_id.iter());
    }
    let provider = providers.for_source(ch.spec.source);
    if matches!(observed.claim, Claim::Held(..)) || !provider.needs_credentials() {
        return Ok((observed, providers));
    }
    let api = match ctx.secrets(ch) {
        Ok(api) => api,
        Err(e) if ch.spec.connected => {
            observed.credentials = Err(e.to_string());
            return Ok((observed, providers));
        }
        Err(_) => return Ok((observed, providers)),
    };
    if ch.spec.connected {
        observed.credentials = match secrets::credentials(&api, ch).await {
            Ok(Some(mut c)) => {
                // A new resourceVersion with the token the channel was connected with (an
                // ownerReference or a label added): not new credentials.
                if let Some(v) = ctx.same_credentials(&ch.uid().unwrap_or_default(), &c) {
                    c.version = v;
                }
                Ok(Some(c))
            }
            Ok(None) => Ok(None),
            Err(e) if e.reason() == Reason::CredentialsMissing => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        observed.recheck_due = ctx.recheck_due(&ch.uid().unwrap_or_default());
    }
    if ch.spec.connected || may_be_connected(&status) {
        // For the conflict check and the re-check (connected), or the disconnect's token.
        observed.token_secret = secrets::token_secret(&api, ch).await?;
    }
    Ok((observed, providers))
}

/// The providers of the Channel's provider configuration, or why it has no usable one.
async fn provider_config(
    ch: &Channel,
    ctx: &Context,
) -> Result<Result<(Providers, Option<String>), String>, Error> {
    ctx.provider_configs
        .providers_for(&ctx.client, &ctx.config.secret_access, ch)
        .await
}

/// What the claim of the Channel's source channel id says; whether another owner still exists
/// is asked of the API server (a cache may not show a Channel created a moment ago), when
/// `check_owner` (a Channel being deleted only needs to know whether the claim is its own).
async fn read_claim(ch: &Channel, ctx: &Context, check_owner: bool) -> Result<Claim, Error> {
    let Some(lease) = claims::read(&ctx.claims(), ch).await? else {
        return Ok(Claim::Free);
    };
    let Some(holder) = claims::Holder::of(&lease) else {
        // A Lease of that name that is not a claim: nobody here may take it.
        return Ok(Claim::Held(String::new(), String::new()));
    };
    if holder.is(ch) {
        return Ok(Claim::Ours(holder));
    }
    if !check_owner {
        return Ok(Claim::Held(holder.namespace, holder.name));
    }
    let owners: kube::Api<Channel> = kube::Api::namespaced(ctx.client.clone(), &holder.namespace);
    match owners.get_opt(&holder.name).await {
        Ok(Some(owner)) if holder.is(&owner) => Ok(Claim::Held(holder.namespace, holder.name)),
        Ok(_) => Ok(Claim::Orphaned(holder)),
        // Where the controller may not look, the owner is taken to exist.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Claim::Held(holder.namespace, holder.name)),
        Err(e) => Err(e.into()),
    }
}

async fn execute(
    ch: &Channel,
    ctx: &Context,
    step: Step,
    observed: Observed,
    providers: &Providers,
) -> Result<Action, Error> {
    let mut reporter = Reporter::new(ctx, ch);
    let provider = providers.for_source(ch.spec.source);
    match step {
        Step::Stall { reason, message } => stall(ctx, &mut reporter, reason, message).await,
        Step::Connect { fingerprint } => {
            let credentials = observed.credentials.ok().flatten();
            connect(ch, ctx, &mut reporter, provider, fingerprint, credentials).await
        }
        Step::Confirm {
            fingerprint,
            recheck,
        } => {
            let mut next = reporter.current().clone();
            if recheck {
                match provider.recheck(ch, observed.token_secret.token()).await {
                    Ok(o) => {
                        ctx.mark_checked(&ch.uid().unwrap_or_default());
                        next.page_name = o.page_name.or(next.page_name);
                        next.page_image_url = o.page_image_url.or(next.page_image_url);
                        next.display_phone_number =
                            o.display_phone_number.or(next.display_phone_number);
                        next.verified_name = o.verified_name.or(next.verified_name);
                        next.quality_rating = o.quality_rating.or(next.quality_rating);
                        debug!("re-checked at the provider");
                    }
                    Err(e) => return reporter.fail("Recheck", e.into()).await,
                }
            }
            next.connected = true;
            next.connected_with = Some(fingerprint);
            next.connect_attempted = None;
            reporter
                .write(next, Reason::Connected, "connected at the provider")
                .await?;
            Ok(while_connected(ctx, provider))
        }
        Step::Disconnect => {
            let token = observed.token_secret.token().cloned();
            if let Some(failed) = disconnect(ch, ctx, &mut reporter, provider, token, false).await?
            {
                return Ok(failed);
            }
            report_disconnected(ch, ctx, &mut reporter, true).await
        }
        Step::ReportDisconnected { cleanup } => {
            report_disconnected(ch, ctx, &mut reporter, cleanup).await
        }
        Step::Claim | Step::Reclaim(_) => unreachable!("claims are taken before execute"),
        Step::Release {
            disconnect: call,
            claim,
        } => {
            if call {
                // The token Secret is read only now: nothing else needs it at deletion.
                let token = match secrets::token_secret(&ctx.secrets(ch)?, ch).await? {
                    TokenSecret::Ours(t) => t,
                    _ => None,
                };
                if let Some(failed) =
                    disconnect(ch, ctx, &mut reporter, provider, token, true).await?
                {
                    return Ok(failed);
                }
            } else if may_be_connected(reporter.current()) {
                info!("deletionPolicy Orphan: deleting without calling the provider");
            }
            delete_owned_where_allowed(ctx, ch, Moment::Deletion).await?;
            if let Some(holder) = claim {
                // Nothing is left to undo: the channel id is free for the next claim.
                claims::delete(&ctx.claims(), ch, &holder).await?;
            }
            ctx.forget(ch);
            Ok(Action::await_change())
        }
    }
}

/// Reports a failure that retrying cannot fix. The ones a change elsewhere fixes (a Secret
/// appearing or going away) are returned as errors, so the retry policy looks again, slower each time.
async fn stall(
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    reason: Reason,
    message: String,
) -> Result<Action, Error> {
    let mut next = reporter.current().clone();
    match reason {
        Reason::ProviderConfigMissing => {
            return reporter
                .fail("Connect", Error::ProviderConfigMissing(message))
                .await
        }
        Reason::CredentialsMissing => {
            let err = crate::providers::ProviderError::CredentialsMissing(message);
            return reporter.fail("Connect", err.into()).await;
        }
        Reason::SecretConflict => {
            return reporter
                .fail("Connect", Error::SecretConflict(message))
                .await
        }
        Reason::Duplicate => {
            next = ChannelStatus::default();
        }
        _ => {}
    }
    let news = !reporter.says(reason, &message);
    reporter.write(next, reason, &message).await?;
    if news {
        tracing::warn!(reason = reason.as_str(), "{message}");
        let action = if reason == Reason::InvalidSpec {
            "Validate"
        } else {
            "Connect"
        };
        reporter
            .event(EventType::Warning, reason, action, message)
            .await;
    }
    Ok(match reason {
        // The owner's deletion re-triggers this Channel; this is only a safety net.
        Reason::Duplicate => Action::requeue(ctx.config.resync.min(Duration::from_secs(30))),
        _ => Action::await_change(),
    })
}

/// Records the attempt, connects, keeps the token, reports `Connected`. A source whose connect
/// makes no call (the chat plugin, Google) has nothing to undo and nothing to tell: no attempt
/// record and no Event, only the status (two apiserver writes fewer per Channel).
async fn connect(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    provider: &dyn Provider,
    fingerprint: String,
    credentials: Option<secrets::Credentials>,
) -> Result<Action, Error> {
    let calls_out = provider.calls_out();
    if calls_out {
        let mut attempt = reporter.current().clone();
        attempt.connect_attempted = Some(fingerprint.clone());
        reporter
            .write(attempt, Reason::Progressing, "connecting at the provider")
            .await?;
    }
    let outcome = match provider
        .connect(ch, credentials.as_ref().map(|c| &c.token))
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let mut status = reporter.current().clone();
            if e.reason().state() == State::Stalled {
                // Refused before anything changed at the provider.
                status.connect_attempted = None;
            }
            return reporter.fail_with("Connect", e.into(), status).await;
        }
    };
    if let Some(token) = &outcome.token {
        if let Err(e) = secrets::store_token(&ctx.secrets(ch)?, ch, ctx.config.naming, token).await
        {
            return reporter.fail("StoreToken", e).await;
        }
    }
    ctx.mark_checked(&ch.uid().unwrap_or_default());
    if let Some(c) = &credentials {
        ctx.connected_with(&ch.uid().unwrap_or_default(), c);
    }
    info!(source = %ch.spec.source, "connected");
    let next = ChannelStatus {
        connected: true,
        connected_with: Some(fingerprint),
        page_name: outcome.page_name,
        page_image_url: outcome.page_image_url,
        display_phone_number: outcome.display_phone_number,
        verified_name: outcome.verified_name,
        quality_rating: outcome.quality_rating,
        ..Default::default()
    };
    reporter
        .write(next, Reason::Connected, "connected at the provider")
        .await?;
    if calls_out {
        reporter
            .event(
                EventType::Normal,
                Reason::Connected,
                "Connect",
                format!("connected {} {}", ch.spec.source, ch.spec.source_channel_id),
            )
            .await;
    }
    Ok(while_connected(ctx, provider))
}

/// What follows a connected reconcile: the periodic re-check at the provider, where there is one
/// to call; else nothing until the Channel changes (no timer held per Channel).
fn while_connected(ctx: &Context, provider: &dyn Provider) -> Action {
    if provider.calls_out() {
        Action::requeue(ctx.config.resync)
    } else {
        Action::await_change()
    }
}

/// Disconnects at the provider with the kept token (or, where none was kept, one recovered from
/// the credentials), then records it as `Progressing` before anything else happens (a retry
/// must not call the provider again) and reports a `Disconnected` Event. A provider failure is
/// reported and its requeue returned. `deleting` tells a disconnect before deletion apart.
async fn disconnect(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    provider: &dyn Provider,
    token: Option<SecretString>,
    deleting: bool,
) -> Result<Option<Action>, Error> {
    let action = if deleting {
        "DisconnectBeforeDelete"
    } else {
        "Disconnect"
    };
    let token = match token {
        Some(t) => Some(t),
        None if provider.needs_credentials() => {
            let recovered = match async { secrets::credentials(&ctx.secrets(ch)?, ch).await }.await
            {
                Ok(c) => provider
                    .recover_token(ch, c.as_ref().map(|c| &c.token))
                    .await
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            match recovered {
                Ok(t) => t,
                Err(e) => return reporter.fail(action, e).await.map(Some),
            }
        }
        None => None,
    };
    if let Some(other) = still_shared(ch, ctx, provider) {
        info!(shared_with = %other, "another Channel still uses what this one shares at the provider; nothing to undo there");
    } else if let Err(e) = provider.disconnect(ch, token.as_ref()).await {
        return reporter.fail(action, e.into()).await.map(Some);
    }
    let (suffix, progress, event_action) = if deleting {
        (
            " before deletion",
            "disconnected at the provider; deleting",
            "Delete",
        )
    } else {
        (
            "",
            "disconnected at the provider; deleting stored tokens",
            "Disconnect",
        )
    };
    info!(source = %ch.spec.source, "disconnected{suffix}");
    reporter
        .write(ChannelStatus::default(), Reason::Progressing, progress)
        .await?;
    reporter
        .event(
            EventType::Normal,
            Reason::Disconnected,
            event_action,
            format!(
                "disconnected {} {}{suffix}",
                ch.spec.source, ch.spec.source_channel_id
            ),
        )
        .await;
    Ok(None)
}

/// `namespace/name` of another Channel that shares what `ch` shares at the provider (e.g. a
/// WhatsApp business account) and stays connected, if any.
fn still_shared(ch: &Channel, ctx: &Context, provider: &dyn Provider) -> Option<String> {
    let shared = provider.shared_resource(ch)?;
    ctx.store
        .sharing(&super::index::key_of(ch), ch.spec.source, &shared)
        .map(|other| other.to_string())
}

/// Deletes the Secrets of the Channel the controller deletes at `moment`; none where the
/// operator may not touch Secrets (it cannot have created any there).
async fn delete_owned_where_allowed(
    ctx: &Context,
    ch: &Channel,
    moment: Moment,
) -> Result<usize, Error> {
    match ctx.secrets(ch) {
        Ok(api) => secrets::delete_owned(&api, ch, moment).await,
        Err(_) => Ok(0),
    }
}

/// Deletes the derived token Secret (when `cleanup`) and reports `Disconnected`.
async fn report_disconnected(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    cleanup: bool,
) -> Result<Action, Error> {
    if cleanup {
        let n = delete_owned_where_allowed(ctx, ch, Moment::Disconnect).await?;
        if n > 0 {
            info!(secrets = n, "deleted the channel's stored tokens");
        }
    }
    reporter
        .write(
            ChannelStatus::default(),
            Reason::Disconnected,
            "disconnected at the provider",
        )
        .await?;
    Ok(Action::await_change())
}
