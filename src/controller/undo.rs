//! The steps that undo what a Channel did at its provider: a move (the recorded effects its spec
//! or configuration no longer makes), a disconnect, a deletion. Each works from the Channel's
//! record — the account each effect was made with and the credential kept for its undo — never
//! from the current spec, and never needs the configuration (its current credential is used while
//! that very object exists, else the record's copy).
//!
//! Each effect is released from its entry: while another Channel holds it nothing happens at the
//! provider; the last holder undoes it once (`deletionPolicy: Orphan`: releases it without a
//! call). The record drops what was undone, and goes once nothing is left.

use kube::runtime::controller::Action;
use tracing::info;

use super::connect::record_found;
use super::entries::{self, Released};
use super::plan::{Observed, Undo};
use super::reconcile::{report_disconnected, Context, Error, EventType};
use super::record::{self, Record};
use super::secrets;
use super::status::Reporter;
use crate::claims::{self, Holder};
use crate::crd::{Channel, ChannelStatus};
use crate::effects::Effect;
use crate::ownership::Moment;
use crate::providers::Providers;
use crate::reason::Reason;
use crate::secret::SecretString;

/// The credential that undoes `e`: the current one of the configuration it was made through,
/// while that very object (by uid) exists and has one for the effect's account; else the
/// record's copy.
async fn credential(
    ctx: &Context,
    e: &Effect,
    record: &Record,
) -> Result<Option<SecretString>, Error> {
    let current = ctx
        .provider_configs
        .providers_of(&ctx.client, &ctx.config.secret_access, &e.config)
        .await?
        .and_then(|p| p.for_effect(e.key.kind).current_credential(&e.key));
    Ok(current.or_else(|| record.undo.clone()))
}

/// Undoes (`Undo::Provider`) or releases (`Undo::Orphan`) `effects` of `record`, each once
/// across its holders; returns the record without them. A provider failure is returned as it
/// is: the entry stays marked as being undone by this Channel, the record unchanged, and the
/// next reconcile resumes the undo.
async fn undo_effects(
    ch: &Channel,
    ctx: &Context,
    record: &Record,
    effects: &[Effect],
    mode: Undo,
) -> Result<Record, Error> {
    for e in effects {
        match entries::release(&ctx.leases(), ch, &e.key).await? {
            Released::NotHeld => {}
            Released::Kept => {
                info!(effect = %e.key.describe(), "another Channel still holds it; nothing to undo at the provider")
            }
            Released::Last(lease) => {
                if mode == Undo::Provider {
                    let credential = credential(ctx, e, record).await?;
                    ctx.providers
                        .for_effect(e.key.kind)
                        .undo(&e.key, credential.as_ref())
                        .await?;
                    info!(effect = %e.key.describe(), through = %e.config.describe(), "undone at the provider");
                }
                entries::finish_undo(&ctx.leases(), ch, &e.key, *lease).await?;
            }
        }
    }
    let rest = record
        .effects
        .iter()
        .filter(|e| !effects.contains(e))
        .cloned()
        .collect();
    Ok(record.with_effects(rest))
}

/// The record of the Channel, or — for a connection an older version made without one — the
/// record of it made now (its effects as found). `Ok(None)`: none; `Err(action)`: wait.
async fn record_or_legacy(
    ch: &Channel,
    ctx: &Context,
    providers: &Providers,
    observed: Observed,
) -> Result<Result<Option<Record>, Action>, Error> {
    if let Some(r) = observed.record {
        return Ok(Ok(Some(r)));
    }
    if !observed.legacy {
        return Ok(Ok(None));
    }
    Ok(match record_found(ch, ctx, providers, &observed).await? {
        Ok((r, _)) if r == Record::default() => Ok(None),
        Ok((r, _)) => Ok(Some(r)),
        Err(why) => {
            info!("{why}");
            Err(Action::requeue(std::time::Duration::from_secs(1)))
        }
    })
}

/// The Channel moved (another configuration, another account, another resource): undoes the
/// recorded `effects` the spec no longer makes, at the accounts they were made with. `Some` when
/// the undo failed (reported); else `observed.record` is the record without them.
pub(super) async fn moved(
    ch: &Channel,
    ctx: &Context,
    observed: &mut Observed,
    effects: Vec<Effect>,
) -> Result<Option<Action>, Error> {
    let Some(record) = observed.record.clone() else {
        return Ok(None);
    };
    let mut reporter = Reporter::new(ctx, ch);
    let rest = match undo_effects(ch, ctx, &record, &effects, Undo::Provider).await {
        Ok(rest) => rest,
        Err(e) => return reporter.fail("Move", e).await.map(Some),
    };
    let stored = record::write(&ctx.records(), &ctx.config.state_namespace, ch, &rest).await?;
    for e in &effects {
        reporter
            .event(
                EventType::Normal,
                Reason::Disconnected,
                "Move",
                format!(
                    "undone at the old account ({}), the Channel no longer making it: {}",
                    e.config.describe(),
                    e.key.describe()
                ),
            )
            .await;
    }
    ctx.provider_configs.poke();
    observed.record = Some(stored);
    Ok(None)
}

/// `connected: false`: undoes every recorded effect, deletes the record (and the token Secret an
/// older version kept), reports `Disconnected`.
pub(super) async fn disconnect(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    observed: Observed,
) -> Result<Action, Error> {
    let legacy = observed.legacy;
    let record = match record_or_legacy(ch, ctx, providers, observed).await {
        Ok(Ok(r)) => r,
        Ok(Err(wait)) => return Ok(wait),
        Err(e) => return reporter.fail("Disconnect", e).await,
    };
    let Some(record) = record else {
        if legacy {
            delete_owned_where_allowed(ctx, ch, Moment::Disconnect).await?;
        }
        return report_disconnected(reporter).await;
    };
    let undone = match undo_effects(ch, ctx, &record, &record.effects, Undo::Provider).await {
        Ok(r) => r,
        Err(e) => return reporter.fail("Disconnect", e).await,
    };
    // The status first: once the record is gone, nothing may read it as connected.
    let action = report_disconnected(reporter).await?;
    record::delete(&ctx.records(), ch, &undone).await?;
    if legacy {
        delete_owned_where_allowed(ctx, ch, Moment::Disconnect).await?;
    }
    ctx.provider_configs.poke();
    disconnected(reporter, "Disconnect", "").await;
    Ok(action)
}

/// Logs and tells (a `Disconnected` Event of `action`) that the Channel was disconnected.
async fn disconnected(reporter: &Reporter<'_>, action: &str, suffix: &str) {
    let ch = reporter.channel();
    info!(source = %ch.spec.source, "disconnected{suffix}");
    let note = format!(
        "disconnected {} {}{suffix}",
        ch.spec.source, ch.spec.source_channel_id
    );
    reporter
        .event(EventType::Normal, Reason::Disconnected, action, note)
        .await;
}

/// The Channel is being deleted: undoes or releases its recorded effects, deletes its record,
/// its Secrets and its claim; the finalizer goes after.
pub(super) async fn release(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    observed: Observed,
    undo: Undo,
    claim: Option<Holder>,
) -> Result<Action, Error> {
    let observed = Observed {
        legacy: observed.legacy && undo == Undo::Provider,
        ..observed
    };
    let record = match record_or_legacy(ch, ctx, providers, observed).await {
        Ok(Ok(r)) => r,
        Ok(Err(wait)) => return Ok(wait),
        Err(e) => return reporter.fail("DisconnectBeforeDelete", e).await,
    };
    if let Some(record) = record {
        let undone = match undo_effects(ch, ctx, &record, &record.effects, undo).await {
            Ok(r) => r,
            Err(e) => return reporter.fail("DisconnectBeforeDelete", e).await,
        };
        if undo == Undo::Provider {
            // The status first: once the record is gone, nothing may read it as connected.
            reporter
                .write(
                    ChannelStatus::default(),
                    Reason::Progressing,
                    "disconnected at the provider; deleting",
                )
                .await?;
        }
        record::delete(&ctx.records(), ch, &undone).await?;
        ctx.provider_configs.poke();
        if undo == Undo::Provider {
            disconnected(reporter, "Delete", " before deletion").await;
        } else {
            info!("deletionPolicy Orphan: deleting without calling the provider");
        }
    }
    delete_owned_where_allowed(ctx, ch, Moment::Deletion).await?;
    if let Some(holder) = claim {
        // Nothing is left to undo: the channel id is free for the next claim.
        claims::delete(&ctx.leases(), ch, &holder).await?;
    }
    ctx.forget(ch);
    Ok(Action::await_change())
}

/// Deletes the Secrets of the Channel's namespace the controller deletes at `moment`; none where
/// the operator may not touch Secrets (it cannot have created any there).
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
