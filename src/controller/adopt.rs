//! Adopting a Channel that `channel-operator migrate` moved from a running Airy Core: Airy Core
//! made its effects at the provider already (its Facebook app subscribed to the page), so the
//! Channel becomes `Ready` without any provider call, its effects recorded as `Adopted` with the
//! account that made them — then a spec change, a re-check, a disconnect or a deletion work from
//! its record as for any Channel.
//!
//! Only on an admin's word: the adoption record migrate wrote in the state namespace
//! ([`crate::adoption`]), which tenants cannot write. The Channel's `airy.co/migrated-from`
//! annotation only says where to look (so other Channels cost no extra read); without a record that matches —
//! bound to the Channel's uid, namespace and name, its source, source channel id and channel id,
//! effects that are the ones the Channel's configuration makes now (the same Facebook app), and
//! credentials still holding the token Airy Core listed — the Channel connects as any other, its
//! credentials proven first. The record stands in for that proof: the claim of the channel id is
//! still taken with the apiserver's create-if-absent, and a Channel that loses it is a Duplicate.
//!
//! Each write of an adoption is one a repeat finds done (the claim, the record, the entry). The
//! adoption record is deleted before the status says connected, so it is never left to vouch
//! again; an adoption cut off between the two is completed on the word of what it wrote on the
//! record's (`resumed`), still without a provider call.

use kube::runtime::controller::Action;
use kube::ResourceExt;
use tracing::info;

use super::plan::{Claim, Observed};
use super::reconcile::{while_connected, Context, Error, EventType};
use super::status::Reporter;
use super::{connect, entries};
use crate::adoption;
use crate::crd::{Channel, ChannelStatus};
use crate::effects::Origin;
use crate::migrate::MIGRATED_FROM;
use crate::providers::{Proof, Providers};
use crate::reason::Reason;

/// An adoption record that matches its Channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Vouched {
    /// What it vouches for, and the token.
    pub record: adoption::Record,
    /// Its uid and resourceVersion, read: it is deleted with them as preconditions (`None`:
    /// deleted already, by an adoption cut off before its status).
    stored: Option<(Option<String>, Option<String>)>,
}

/// Whether `ch` carries migrate's annotation (the controller's cache keeps no labels): only then
/// is an adoption record looked for.
fn marked(ch: &Channel) -> bool {
    ch.annotations().contains_key(MIGRATED_FROM)
}

/// Why `record` does not vouch for `ch` as observed, if it does not.
fn mismatch(
    ch: &Channel,
    ctx: &Context,
    providers: &Providers,
    record: &adoption::Record,
    observed: &Observed,
) -> Option<String> {
    let a = &record.adoption;
    let mut wanted = observed.wanted.clone();
    let mut vouched = a.effects.clone();
    let order = |k: &crate::effects::EffectKey| k.entry_name();
    wanted.sort_by_key(order);
    vouched.sort_by_key(order);
    let credentials = observed.credentials.as_ref().ok().and_then(|c| c.as_ref());
    let token_kept = !providers.for_source(ch.spec.source).needs_credentials()
        || credentials.is_some_and(|c| c.token == record.token);
    let checks = [
        (
            record.uid == ch.uid().unwrap_or_default()
                && a.namespace == ch.namespace().unwrap_or_default()
                && a.name == ch.name_any(),
            "it was written for another Channel".to_owned(),
        ),
        (
            a.source == ch.spec.source
                && a.source_channel_id == ch.spec.source_channel_id
                && a.channel_id == ch.channel_id(ctx.config.naming),
            "the Channel's source, source channel id or channel id is not the one Airy Core had"
                .to_owned(),
        ),
        (
            wanted == vouched,
            format!(
                "Airy Core's effects ({}) are not the ones the Channel's configuration makes ({})",
                describe(&vouched),
                describe(&wanted)
            ),
        ),
        (
            token_kept,
            "the Channel's credentials no longer hold the token Airy Core listed".to_owned(),
        ),
    ];
    checks.into_iter().find(|(ok, _)| !ok).map(|(_, why)| why)
}

fn describe(keys: &[crate::effects::EffectKey]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(|k| k.describe())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The adoption record vouching for `ch`, where there may be one (a Channel migrate marked, to
/// be connected, not connected yet, its channel id not held by another) and it matches; else
/// `None` (a record that does not match is logged, and left for the Channel's deletion).
pub(super) async fn vouched(
    ch: &Channel,
    ctx: &Context,
    providers: &Providers,
    observed: &Observed,
) -> Result<Option<Vouched>, Error> {
    let connected = ch.status.as_ref().is_some_and(|s| s.connected);
    let may = marked(ch)
        && ch.spec.connected
        && ch.metadata.deletion_timestamp.is_none()
        && observed.invalid.is_none()
        && observed.provider_config.is_ok()
        && !connected
        && !matches!(observed.claim, Claim::Held(..))
        && providers.for_source(ch.spec.source).calls_out();
    if !may {
        return Ok(None);
    }
    let uid = ch.uid().unwrap_or_default();
    let Some(secret) = ctx.records().get_opt(&adoption::name(&uid)).await? else {
        return resumed(ch, ctx, providers, observed).await;
    };
    let record = match adoption::Record::from_secret(&secret) {
        Ok(r) => r,
        Err(why) => {
            info!("the adoption record in the state namespace is not one ({why}); connecting with proof");
            return Ok(None);
        }
    };
    if let Some(why) = mismatch(ch, ctx, providers, &record, observed) {
        info!("the adoption record does not vouch for this Channel ({why}); connecting with proof");
        return Ok(None);
    }
    Ok(Some(Vouched {
        record,
        stored: Some((secret.metadata.uid, secret.metadata.resource_version)),
    }))
}

/// An adoption cut off after it deleted the adoption record, before its status said connected:
/// what it wrote on the record's word vouches for the rest — the Channel's record holding the
/// token Airy Core listed (still the credentials') and the effects its configuration makes, each
/// held by the Channel in its entry as adopted, its claim taken. `None` otherwise (a connect
/// proven at the provider, or no adoption).
async fn resumed(
    ch: &Channel,
    ctx: &Context,
    providers: &Providers,
    observed: &Observed,
) -> Result<Option<Vouched>, Error> {
    let (Claim::Ours(_), Some(kept)) = (&observed.claim, &observed.record) else {
        return Ok(None);
    };
    let (Some(token), false) = (kept.token.clone(), kept.effects.is_empty()) else {
        return Ok(None);
    };
    let record = adoption::Record {
        uid: ch.uid().unwrap_or_default(),
        adoption: adoption::Adoption {
            namespace: ch.namespace().unwrap_or_default(),
            name: ch.name_any(),
            source: ch.spec.source,
            source_channel_id: ch.spec.source_channel_id.clone(),
            channel_id: ch.channel_id(ctx.config.naming),
            from: ch
                .annotations()
                .get(MIGRATED_FROM)
                .cloned()
                .unwrap_or_default(),
            effects: kept.effects.iter().map(|e| e.key.clone()).collect(),
        },
        token,
    };
    if mismatch(ch, ctx, providers, &record, observed).is_some() {
        return Ok(None);
    }
    for key in &record.adoption.effects {
        if entries::held(&ctx.leases(), ch, key).await? != Some(Origin::Adopted) {
            return Ok(None);
        }
    }
    info!("resuming an adoption whose adoption record is used up: its record and entries vouch");
    Ok(Some(Vouched {
        record,
        stored: None,
    }))
}

/// Deletes the adoption record of `ch` (guarded by `stored`'s uid and resourceVersion, or none),
/// if there is one; one already gone is fine.
async fn delete(
    ctx: &Context,
    ch: &Channel,
    stored: (Option<String>, Option<String>),
) -> Result<(), Error> {
    let name = adoption::name(&ch.uid().unwrap_or_default());
    super::guarded::delete(&ctx.records(), &name, stored.0, stored.1).await?;
    Ok(())
}

/// At the deletion of a Channel migrate marked: its adoption record, if one was never used.
pub(super) async fn discard(ctx: &Context, ch: &Channel) -> Result<(), Error> {
    if !marked(ch) {
        return Ok(());
    }
    delete(ctx, ch, (None, None)).await
}

/// Records what Airy Core made as adopted (no provider call), keeps the token Airy Core listed in
/// the Channel's record, deletes the adoption record, reports `Connected`.
pub(super) async fn adopt(
    ch: &Channel,
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    mut observed: Observed,
    fingerprint: String,
) -> Result<Action, Error> {
    let provider = providers.for_source(ch.spec.source);
    let Some(vouched) = observed.adoption.take() else {
        return connect::connect(ch, ctx, reporter, providers, observed, fingerprint).await;
    };
    let token = vouched.record.token.clone();
    let proof = Proof {
        undo: Some(token.clone()),
        outcome: crate::providers::ConnectOutcome {
            token: Some(token),
            ..Default::default()
        },
        ..Default::default()
    };
    let previous = observed.record.as_ref();
    let effects = connect::wanted(&observed);
    let record = connect::keep(ch, ctx, previous, effects, &proof).await?;
    let mut origins = Vec::new();
    if let Some(record) = &record {
        if !connect::protected(ch, ctx, record, previous).await? {
            let message = "the provider configuration is being deleted: it admits no new connect";
            return reporter
                .fail("Adopt", Error::ProviderConfigMissing(message.into()))
                .await;
        }
        origins =
            match connect::hold(ch, ctx, provider, record, &proof, Some(Origin::Adopted)).await {
                Ok(Ok(origins)) => origins,
                Ok(Err(why)) => return connect::wait(reporter, record, why).await,
                Err(e) => return reporter.fail("Adopt", e).await,
            };
    }
    if let Some(stored) = vouched.stored {
        delete(ctx, ch, stored).await?;
    }
    connect::remember(
        ctx,
        ch,
        observed.credentials.as_ref().ok().and_then(|c| c.as_ref()),
    );
    let from = &vouched.record.adoption.from;
    info!(%from, "adopted from Airy Core without a provider call");
    let next = ChannelStatus {
        connected: true,
        connected_with: Some(fingerprint),
        effects: connect::record_statuses(record.as_ref(), &origins),
        ..Default::default()
    };
    reporter
        .write(next, Reason::Connected, "connected at the provider")
        .await?;
    reporter
        .event(
            EventType::Normal,
            Reason::Connected,
            "Adopt",
            format!(
                "adopted {} {} from the Airy Core at {from}: connected there already, recorded without a provider call",
                ch.spec.source, ch.spec.source_channel_id
            ),
        )
        .await;
    Ok(while_connected(ctx, provider))
}
