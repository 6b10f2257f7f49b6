//! The steps that leave a Channel connected: `Connect` (prove, record, make what nobody holds
//! yet), `Confirm` (re-check when due) and `Adopt` (record what an older version made); the
//! adoption of what Airy Core made (`adopt`) records and holds through the same functions.
//!
//! A connect writes the Channel's record before any provider call that makes an effect
//! (write-ahead), protects the configuration the effects are made through, then holds each
//! effect in its entry: the first holder makes it at the provider, the others hold it without a
//! call (`entries`). What the proof obtained (the page access token, the long-lived WhatsApp
//! token, a copy of the Viber bot token or of the Twilio auth token) is kept in the record,
//! never in the tenant's namespace.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::ResourceExt;
use tracing::info;

use super::entries::{self, Acquired, Released};
use super::plan::Observed;
use super::reconcile::{while_connected, Context, Error, EventType};
use super::record::{self, Record};
use super::secrets::Credentials;
use super::status::Reporter;
use super::{in_use, secrets};
use crate::crd::{Channel, ChannelStatus, EffectStatus};
use crate::effects::{ConfigRef, Effect, Origin};
use crate::ownership::Moment;
use crate::providers::{Proof, Provider, Providers};
use crate::reason::{Reason, State};
use crate::secret::SecretString;

/// How soon a Channel waiting for another's undo or making looks again.
const WAIT: Duration = Duration::from_secs(1);

/// The configuration the Channel's providers are of (the flags' when none).
fn config_of(observed: &Observed) -> ConfigRef {
    match &observed.provider_config {
        Ok(Some(used)) => used.reference.clone(),
        _ => ConfigRef::flags(),
    }
}

/// The effects the Channel's spec and configuration make.
pub(super) fn wanted(observed: &Observed) -> Vec<Effect> {
    let config = config_of(observed);
    observed
        .wanted
        .iter()
        .map(|key| Effect {
            key: key.clone(),
            config: config.clone(),
        })
        .collect()
}

/// The status of `effects`, each with its origin where known.
pub(super) fn effect_statuses(effects: &[Effect], origins: &[Option<Origin>]) -> Vec<EffectStatus> {
    effects
        .iter()
        .enumerate()
        .map(|(i, e)| EffectStatus::of(e, origins.get(i).copied().flatten()))
        .collect()
}

/// The status of the effects of `record` (none without one), each with its origin where known.
pub(super) fn record_statuses(
    record: Option<&Record>,
    origins: &[Option<Origin>],
) -> Vec<EffectStatus> {
    record
        .map(|r| effect_statuses(&r.effects, origins))
        .unwrap_or_default()
}

/// Remembers that `ch` was connected now, with `credentials`: no re-check is due, and a new
/// resourceVersion of a Secret holding the same token is not new credentials.
pub(super) fn remember(ctx: &Context, ch: &Channel, credentials: Option<&Credentials>) {
    let uid = ch.uid().unwrap_or_default();
    ctx.mark_checked(&uid);
    if let Some(c) = credentials {
        ctx.connected_with(&uid, c);
    }
}

/// Writes the record holding `effects` and the proof's tokens over `previous`, unless it says
/// that already; none is kept (and an old one goes) when there is nothing to keep.
pub(super) async fn keep(
    ch: &Channel,
    ctx: &Context,
    previous: Option<&Record>,
    effects: Vec<Effect>,
    proof: &Proof,
) -> Result<Option<Record>, Error> {
    let token = proof.outcome.token.clone();
    if effects.is_empty() && token.is_none() {
        if let Some(old) = previous {
            record::delete(&ctx.records(), ch, old).await?;
        }
        return Ok(None);
    }
    let next = Record::next(previous, effects, token, proof.undo.clone());
    if previous == Some(&next) {
        return Ok(Some(next));
    }
    let ns = &ctx.config.state_namespace;
    Ok(Some(record::write(&ctx.records(), ns, ch, &next).await?))
}

/// Holds each effect of `record` in its entry; with `first`, records one nobody holds so (no
/// provider call), else makes it when this Channel is its first holder. The origins, or why to
/// wait.
pub(super) async fn hold(
    ch: &Channel,
    ctx: &Context,
    provider: &dyn Provider,
    record: &Record,
    proof: &Proof,
    first: Option<Origin>,
) -> Result<Result<Vec<Option<Origin>>, String>, Error> {
    let mut origins = Vec::new();
    for e in &record.effects {
        let origin = match entries::acquire(&ctx.leases(), &ctx.client, ch, e, first).await? {
            Acquired::Held(origin) => origin,
            Acquired::Wait(why) => return Ok(Err(why)),
            Acquired::Make(lease) => match provider.make(ch, &e.key, proof).await {
                Ok(origin) => {
                    info!(effect = %e.key.describe(), through = %e.config.describe(), ?origin, "made at the provider");
                    entries::made(&ctx.leases(), ch, &e.key, origin, *lease).await?;
                    origin
                }
                Err(err) => {
                    if err.reason().state() == State::Stalled {
                        // Refused before anything changed at the provider: hold nothing.
                        let released = entries::release(&ctx.leases(), ch, &e.key).await?;
                        if let Released::Last(lease) = released {
                            entries::finish_undo(&ctx.leases(), ch, &e.key, *lease).await?;
                        }
                    }
                    return Err(err.into());
                }
            },
        };
        origins.push(Some(origin));
    }
    Ok(Ok(origins))
}

/// Protects the configuration `record`'s effects are made through, before any is made: `false`
/// when it is being deleted (then the record goes back to `previous`, nothing made through it).
pub(super) async fn protected(
    ch: &Channel,
    ctx: &Context,
    record: &Record,
    previous: Option<&Record>,
) -> Result<bool, Error> {
    let Some(config) = record.config() else {
        return Ok(true);
    };
    if previous.and_then(|p| p.config()) == Some(config)
        || in_use::protect(&ctx.client, config).await?
    {
        return Ok(true);
    }
    let ns = &ctx.config.state_namespace;
    match previous {
        Some(p) => {
            let back = Record::next(
                Some(record),
                p.effects.clone(),
                p.token.clone(),
                p.undo.clone(),
            );
            record::write(&ctx.records(), ns, ch, &back).await?;
        }
        None => record::delete(&ctx.records(), ch, record).await?,
    }
    Ok(false)
}

/// Proves (unless the claim step did), records, makes, keeps the token, reports `Connected`.
pub(super) async fn connect(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    mut observed: Observed,
    fingerprint: String,
) -> Result<Action, Error> {
    let provider = providers.for_source(ch.spec.source);
    let credentials = observed.credentials.as_ref().ok().and_then(|c| c.as_ref());
    let proof = match observed.proof.take() {
        Some(p) => p,
        None => match provider.prove(ch, credentials.map(|c| &c.token)).await {
            Ok(p) => p,
            Err(e) => return reporter.fail("Connect", e.into()).await,
        },
    };
    let effects = wanted(&observed);
    let previous = observed.record.as_ref();
    let record = keep(ch, ctx, previous, effects, &proof).await?;
    let origins = match &record {
        None => Vec::new(),
        Some(record) => {
            if !protected(ch, ctx, record, previous).await? {
                let message = format!(
                    "the {} is being deleted: it admits no new connect",
                    config_of(&observed).describe()
                );
                return reporter
                    .fail("Connect", Error::ProviderConfigMissing(message))
                    .await;
            }
            match hold(ch, ctx, provider, record, &proof, None).await {
                Ok(Ok(origins)) => origins,
                Ok(Err(why)) => return wait(reporter, record, why).await,
                Err(e) => {
                    let mut status = reporter.current().clone();
                    status.effects = effect_statuses(&record.effects, &[]);
                    return reporter.fail_with("Connect", e, status).await;
                }
            }
        }
    };
    if observed.legacy_token.is_some() {
        // What an older version kept in the tenant's namespace is the record's now.
        delete_legacy(ctx, ch).await?;
    }
    remember(ctx, ch, credentials);
    info!(source = %ch.spec.source, "connected");
    let outcome = proof.outcome;
    let next = ChannelStatus {
        connected: true,
        connected_with: Some(fingerprint),
        page_name: outcome.page_name,
        page_image_url: outcome.page_image_url,
        display_phone_number: outcome.display_phone_number,
        verified_name: outcome.verified_name,
        quality_rating: outcome.quality_rating,
        effects: record_statuses(record.as_ref(), &origins),
        ..Default::default()
    };
    reporter
        .write(next, Reason::Connected, "connected at the provider")
        .await?;
    if provider.calls_out() {
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

/// Reports that the connect waits for another Channel (an undo or a making under way).
pub(super) async fn wait(
    reporter: &mut Reporter<'_>,
    record: &Record,
    why: String,
) -> Result<Action, Error> {
    let mut status = reporter.current().clone();
    status.effects = effect_statuses(&record.effects, &[]);
    reporter.write(status, Reason::Progressing, &why).await?;
    Ok(Action::requeue(WAIT))
}

/// Deletes the token Secret an older version kept in the Channel's namespace, when it is ours.
async fn delete_legacy(ctx: &Context, ch: &Channel) -> Result<(), Error> {
    if let Ok(api) = ctx.secrets(ch) {
        let n = secrets::delete_owned(&api, ch, Moment::Disconnect).await?;
        if n > 0 {
            info!("deleted the token Secret an older version kept in the Channel's namespace");
        }
    }
    Ok(())
}

/// Re-checks at the provider when due (with the record's `token`), reports `Connected` over
/// `next` (the status as it stands).
pub(super) async fn confirm(
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    provider: &dyn Provider,
    token: Option<&SecretString>,
    mut next: ChannelStatus,
    fingerprint: String,
    recheck: bool,
) -> Result<Action, Error> {
    if recheck {
        let ch = reporter.channel();
        match provider.recheck(ch, token).await {
            Ok(o) => {
                ctx.mark_checked(&ch.uid().unwrap_or_default());
                next.page_name = o.page_name.or(next.page_name);
                next.page_image_url = o.page_image_url.or(next.page_image_url);
                next.display_phone_number = o.display_phone_number.or(next.display_phone_number);
                next.verified_name = o.verified_name.or(next.verified_name);
                next.quality_rating = o.quality_rating.or(next.quality_rating);
                tracing::debug!("re-checked at the provider");
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

/// Records what an older version made for the Channel, as found (no provider call that changes
/// anything): its effects as the spec and configuration make them now, its kept token (or one
/// proven again, read-only, where it kept none). `Err(why)` to wait for another Channel.
pub(super) async fn record_found(
    ch: &Channel,
    ctx: &Context,
    providers: &Providers,
    observed: &Observed,
) -> Result<Result<(Record, Vec<Option<Origin>>), String>, Error> {
    let provider = providers.for_source(ch.spec.source);
    let effects = wanted(observed);
    let mut proof = Proof::default();
    match &observed.legacy_token {
        Some(token) => {
            proof.outcome.token = Some(token.clone());
            proof.undo = Some(token.clone());
        }
        None if provider.needs_credentials() => {
            let api = ctx.secrets(ch)?;
            let credentials = secrets::credentials(&api, ch).await?;
            proof = provider
                .prove(ch, credentials.as_ref().map(|c| &c.token))
                .await?;
        }
        None => {
            proof.undo = effects
                .first()
                .and_then(|e| provider.current_credential(&e.key));
        }
    }
    let Some(record) = keep(ch, ctx, observed.record.as_ref(), effects, &proof).await? else {
        return Ok(Ok((Record::default(), Vec::new())));
    };
    if let Some(config) = record.config() {
        // Made already: the configuration is protected if it still can be.
        in_use::protect(&ctx.client, config).await?;
    }
    Ok(
        hold(ch, ctx, provider, &record, &proof, Some(Origin::Found))
            .await?
            .map(|origins| (record, origins)),
    )
}

/// A Channel an older version connected: its effects recorded as found, its token moved into
/// the record, then confirmed.
pub(super) async fn adopt(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    observed: Observed,
    fingerprint: String,
) -> Result<Action, Error> {
    let (record, origins) = match record_found(ch, ctx, providers, &observed).await {
        Ok(Ok(found)) => found,
        Ok(Err(why)) => {
            info!("{why}");
            return Ok(Action::requeue(WAIT));
        }
        Err(e) => return reporter.fail("Record", e).await,
    };
    if observed.legacy_token.is_some() {
        delete_legacy(ctx, ch).await?;
    }
    if record != Record::default() {
        info!(
            effects = record.effects.len(),
            "recorded what an earlier version made"
        );
    }
    let mut next = reporter.current().clone();
    next.effects = effect_statuses(&record.effects, &origins);
    let provider = providers.for_source(ch.spec.source);
    confirm(
        ctx,
        reporter,
        provider,
        record.token.as_ref(),
        next,
        fingerprint,
        false,
    )
    .await
}
