//! One reconcile of one Channel: observe, [`plan`], execute the step (`connect` for the steps
//! that leave it connected, `undo` for the ones that undo).
//!
//! Level-triggered and idempotent: every decision is made from the Channel, its status, its
//! record in the state namespace and the Secrets, so a reconcile may be repeated or cut off at
//! any point. The status records the connection inputs a channel was connected with
//! (`connectedWith`); while they are unchanged and the status says connected, the provider is
//! never asked to connect again (a name change, a resync, a restart only re-check). Before any
//! provider call that makes an effect, the record says so (write-ahead), so an effect whose
//! outcome is unknown is undone at disconnect or deletion, from the record.

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
use super::status::Reporter;
use super::{adopt, connect, record, secrets, undo};
use crate::channel_state::may_be_connected;
use crate::claims;
use crate::crd::{Channel, ChannelStatus, DeletionPolicy, FINALIZER};
use crate::providers::{Provider, Providers};
use crate::reason::Reason;

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
        // Claiming changes only the claim, a move only the record: plan again with the outcome
        // (a lost race reads anew).
        for _ in 0..4 {
            let step = plan(&ch, &observed);
            debug!(?step, "planned");
            let taken = match step {
                step @ (Step::Claim | Step::Reclaim(_)) => {
                    let provider = providers.for_source(ch.spec.source);
                    if let Some(failed) = prove_first(&ch, ctx, provider, &mut observed).await? {
                        return Ok(failed);
                    }
                    match step {
                        Step::Reclaim(holder) => {
                            info!(owner = %format!("{}/{}", holder.namespace, holder.name), "the owner of the channel id no longer exists; taking over its claim");
                            match claims::delete(&ctx.leases(), &ch, &holder).await? {
                                true => claims::create(&ctx.leases(), &ch).await?,
                                false => None,
                            }
                        }
                        _ => claims::create(&ctx.leases(), &ch).await?,
                    }
                }
                Step::Move(effects) => {
                    if let Some(failed) = undo::moved(&ch, ctx, &mut observed, effects).await? {
                        return Ok(failed);
                    }
                    continue;
                }
                step => return execute(&ch, ctx, step, observed, &providers).await,
            };
            match taken {
                Some(holder) => {
                    info!("claimed the channel id");
                    observed.claim = Claim::Ours(holder);
                }
                None => {
                    // Another was first: look again; the plan calls no provider for a Duplicate.
                    let proof = observed.proof.take();
                    (observed, providers) = observe(&ch, ctx).await?;
                    observed.proof = proof;
                }
            }
        }
        Ok(Action::requeue(Duration::from_millis(200)))
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Shows, before the Channel claims its channel id, that its credentials work at the provider
/// (read-only calls), where its source has something to prove. `Some(action)` when they do not:
/// reported, and nothing is held.
async fn prove_first(
    ch: &Channel,
    ctx: &Context,
    provider: &dyn Provider,
    observed: &mut Observed,
) -> Result<Option<Action>, Error> {
    // An adoption record that matches stands in for the proof (an admin's word: `adopt`).
    if observed.proof.is_some() || observed.adoption.is_some() || !provider.proves() {
        return Ok(None);
    }
    let credentials = observed.credentials.as_ref().ok().and_then(|c| c.as_ref());
    match provider.prove(ch, credentials.map(|c| &c.token)).await {
        Ok(proof) => {
            observed.proof = Some(proof);
            Ok(None)
        }
        Err(e) => Reporter::new(ctx, ch)
            .fail("Connect", e.into())
            .await
            .map(Some),
    }
}

/// Reads what the plan needs, and only that; with the providers of the Channel's provider
/// configuration (where it has a usable one, else the flags' which it must not call).
async fn observe(ch: &Channel, ctx: &Context) -> Result<(Observed, Providers), Error> {
    let (mut observed, providers) = observe_channel(ch, ctx).await?;
    observed.adoption = adopt::vouched(ch, ctx, &providers, &observed).await?;
    Ok((observed, providers))
}

/// What [`observe`] reads besides an adoption record.
async fn observe_channel(ch: &Channel, ctx: &Context) -> Result<(Observed, Providers), Error> {
    let mut observed = Observed {
        invalid: crate::rules::validate_spec(&ch.spec).err(),
        claim: Claim::NotRead,
        rival: None,
        credentials: Ok(None),
        recheck_due: false,
        provider_config: Ok(None),
        record: None,
        wanted: Vec::new(),
        legacy: false,
        legacy_token: None,
        proof: None,
        adoption: None,
    };
    let mut providers = ctx.providers.clone();
    let status = ch.status.clone().unwrap_or_default();
    let deleting = ch.metadata.deletion_timestamp.is_some();
    if observed.invalid.is_some() && !deleting {
        return Ok((observed, providers));
    }
    let keeps_record = ctx.providers.for_source(ch.spec.source).calls_out();
    let connecting = ch.spec.connected && !deleting;
    if !connecting && keeps_record {
        // An undo works from the record (or, without one, from the configuration).
        read_record(ch, ctx, &status, &mut observed).await?;
    }
    // The provider configuration, to connect or to undo what an older version made without a
    // record, comes first: a Channel that may not call its provider claims no channel id and
    // reads nothing more.
    let undoes_legacy =
        observed.legacy && (!deleting || ch.spec.deletion_policy == DeletionPolicy::Disconnect);
    if connecting || undoes_legacy {
        match provider_config(ch, ctx).await? {
            Ok((p, used)) => {
                providers = p;
                observed.wanted = providers.for_source(ch.spec.source).effects(ch);
                observed.provider_config = Ok(used);
            }
            Err(why) => {
                observed.provider_config = Err(why);
                return Ok((observed, providers));
            }
        }
    }
    observed.claim = read_claim(ch, ctx, !deleting).await?;
    if deleting {
        if undoes_legacy {
            if let Ok(api) = ctx.secrets(ch) {
                // The token an older version kept, for recording (and undoing) what it made.
                observed.legacy_token = secrets::legacy_token(&api, ch).await?;
            }
        }
        return Ok((observed, providers));
    }
    if matches!(observed.claim, Claim::Held(..)) {
        // A duplicate reads nothing more.
        return Ok((observed, providers));
    }
    if connecting && keeps_record {
        read_record(ch, ctx, &status, &mut observed).await?;
    }
    if matches!(observed.claim, Claim::Free | Claim::Orphaned(_)) {
        let same_id = ctx.same_id(ch).await?;
        observed.rival = logic::connected_rival(ch, same_id.iter());
    }
    let provider = providers.for_source(ch.spec.source);
    if !provider.needs_credentials() {
        return Ok((observed, providers));
    }
    let api = match ctx.secrets(ch) {
        Ok(api) => api,
        Err(e) if connecting => {
            observed.credentials = Err(e.to_string());
            return Ok((observed, providers));
        }
        Err(_) => return Ok((observed, providers)),
    };
    if connecting {
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
    if observed.legacy {
        // The token an older version kept, for recording (and undoing) what it made.
        observed.legacy_token = secrets::legacy_token(&api, ch).await?;
    }
    Ok((observed, providers))
}

/// Reads the Channel's record; without one, a status saying the provider may hold a connection
/// means an older version made it (`legacy`).
async fn read_record(
    ch: &Channel,
    ctx: &Context,
    status: &ChannelStatus,
    observed: &mut Observed,
) -> Result<(), Error> {
    observed.record = record::read(&ctx.records(), &ctx.config.state_namespace, ch).await?;
    observed.legacy = observed.record.is_none() && may_be_connected(status);
    Ok(())
}

/// The providers of the Channel's provider configuration and which configuration object that
/// is, or why it has no usable one.
async fn provider_config(
    ch: &Channel,
    ctx: &Context,
) -> Result<Result<(Providers, Option<super::provider_configs::UsedConfig>), String>, Error> {
    ctx.provider_configs
        .providers_for(&ctx.client, &ctx.config.secret_access, ch)
        .await
}

/// What the claim of the Channel's source channel id says; whether another owner still exists
/// is asked of the API server (a cache may not show a Channel created a moment ago), when
/// `check_owner` (a Channel being deleted only needs to know whether the claim is its own).
async fn read_claim(ch: &Channel, ctx: &Context, check_owner: bool) -> Result<Claim, Error> {
    let Some(lease) = claims::read(&ctx.leases(), ch).await? else {
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
    let new_generation = reporter.current().observed_generation != ch.metadata.generation;
    let action = execute_step(ch, ctx, step, observed, providers, &mut reporter).await?;
    // Only where the API has been writing credentials (its form named, or its mark);
    // not after a Duplicate verdict, the one the API undoes (its connect puts the spec back, and
    // with it the Secret the spec named before).
    let verdict = reporter.verdict_now();
    let apis = crate::ownership::api_has_written_credentials(ch);
    if new_generation && apis && verdict.is_some_and(|r| r != Reason::Duplicate) {
        delete_unnamed_credentials(ctx, ch).await;
    }
    Ok(action)
}

/// Deletes the credentials Secrets the API wrote for `ch` that its spec no longer names, once
/// per generation, after the verdict on it. Best effort: what fails here is left to the next
/// generation, or to the garbage collector with the Channel.
async fn delete_unnamed_credentials(ctx: &Context, ch: &Channel) {
    let Ok(api) = ctx.secrets(ch) else { return };
    match secrets::delete_unnamed_credentials(&api, ch).await {
        Ok(0) => {}
        Ok(n) => info!(
            secrets = n,
            "deleted credentials Secrets the Channel no longer names"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "deleting credentials Secrets the Channel no longer names failed")
        }
    }
}

async fn execute_step(
    ch: &Channel,
    ctx: &Context,
    step: Step,
    observed: Observed,
    providers: &Providers,
    reporter: &mut Reporter<'_>,
) -> Result<Action, Error> {
    match step {
        Step::Stall { reason, message } => stall(ctx, reporter, reason, message).await,
        Step::Connect { fingerprint } => {
            connect::connect(ch, ctx, reporter, providers, observed, fingerprint).await
        }
        Step::Confirm {
            fingerprint,
            recheck,
        } => {
            let token = observed.record.as_ref().and_then(|r| r.token.as_ref());
            let next = reporter.current().clone();
            connect::confirm(ctx, reporter, providers, token, next, fingerprint, recheck).await
        }
        Step::Adopt { fingerprint } => {
            connect::adopt(ch, ctx, reporter, providers, observed, fingerprint).await
        }
        Step::AdoptMigrated { fingerprint } => {
            adopt::adopt(ch, ctx, reporter, providers, observed, fingerprint).await
        }
        Step::Disconnect => undo::disconnect(ch, ctx, reporter, providers, observed).await,
        Step::ReportDisconnected => report_disconnected(reporter).await,
        Step::Release { undo, claim } => {
            adopt::discard(ctx, ch).await?;
            undo::release(ch, ctx, reporter, providers, observed, undo, claim).await
        }
        Step::Claim | Step::Reclaim(_) | Step::Move(_) => {
            unreachable!("claims and moves are taken before execute")
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

/// What follows a connected reconcile: the periodic re-check at the provider, where there is one
/// to call; else nothing until the Channel changes (no timer held per Channel).
pub(super) fn while_connected(ctx: &Context, provider: &dyn Provider) -> Action {
    if provider.calls_out() {
        Action::requeue(ctx.config.resync)
    } else {
        Action::await_change()
    }
}

/// Reports `Disconnected`.
pub(super) async fn report_disconnected(reporter: &mut Reporter<'_>) -> Result<Action, Error> {
    reporter
        .write(
            ChannelStatus::default(),
            Reason::Disconnected,
            "disconnected at the provider",
        )
        .await?;
    Ok(Action::await_change())
}
