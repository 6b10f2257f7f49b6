//! The health of a Channel's credentials (docs/channel.md, "Credentials health"): at connect and
//! at every re-check of a Facebook, Instagram or WhatsApp Channel one Graph `debug_token` about
//! the token the channel uses (the one its record keeps); a Viber bot token's health is its
//! re-check's `get_account_info`. What the provider said goes to `status.credentials` and the
//! condition `CredentialsHealthy` (the verdict is `credentials_health`'s), with an Event on each
//! change of its reason. Credentials that no longer work stop the channel (`Ready=False,
//! InvalidCredentials`) with no provider call that changes anything, until they change or a
//! re-check finds them working again. Any provider error carrying Graph's OAuth error 190 is
//! taken as such a verdict at once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tracing::warn;

use super::context::Context;
use super::error::Error;
use super::events::EventType;
use super::secrets::Credentials;
use super::status::Reporter;
use crate::crd::{Channel, ChannelStatus, CredentialsStatus, Source};
use crate::credentials_health::{
    is_debugged, required_scopes, Health, Verdict, CREDENTIALS_HEALTHY,
};
use crate::providers::{ConnectOutcome, ProviderError, Providers};
use crate::reason::Reason;
use crate::secret::SecretString;

/// The Event action of what this module reports.
const ACTION: &str = "CheckCredentials";

/// How long `checkedAt` stands for checks that found the same.
const CHECKED_AT_HOLDS: std::time::Duration = std::time::Duration::from_secs(3600);

/// One `debug_token` about `token`, the token `ch` uses, judged for its source: `None` for
/// sources whose tokens are not asked about, or without a token.
pub(super) async fn ask(
    ctx: &Context,
    providers: &Providers,
    ch: &Channel,
    token: Option<&SecretString>,
) -> Option<Verdict> {
    if !is_debugged(ch.spec.source) {
        return None;
    }
    let token = token.filter(|t| !t.is_empty())?;
    Some(match providers.facebook().debug_token(token).await {
        Ok(facts) => Verdict::judge(
            &facts,
            required_scopes(ch.spec.source),
            Timestamp::now(),
            ctx.config.credentials_warning,
        ),
        // The app's problem (its configuration says so), not a verdict on the token.
        Err(e) => Verdict::of(
            Health::Unchecked,
            format!("the token could not be checked: {e}"),
        ),
    })
}

/// The verdict at a connect, once the proof obtained `token`: `debug_token` about it, or for a
/// Viber bot the proof's own `get_account_info` (it worked).
pub(super) async fn at_connect(
    ctx: &Context,
    providers: &Providers,
    ch: &Channel,
    token: Option<&SecretString>,
) -> Option<Verdict> {
    match ask(ctx, providers, ch, token).await {
        Some(v) => Some(v),
        None => from_recheck(ch.spec.source, &Ok(ConnectOutcome::default())),
    }
}

/// What a re-check's own answer says of the credentials: a Viber bot token that works or was
/// refused; Graph's OAuth error 190 from any source.
pub(super) fn from_recheck(
    source: Source,
    answer: &Result<ConnectOutcome, ProviderError>,
) -> Option<Verdict> {
    match answer {
        Ok(_) if source == Source::Viber => Some(Verdict::of(
            Health::Valid,
            "Viber accepts the bot token (get_account_info)",
        )),
        Ok(_) => None,
        Err(ProviderError::InvalidCredentials(m)) if source == Source::Viber => Some(Verdict::of(
            Health::Invalidated,
            format!("Viber refused the bot token ({m}): put the bot's current token in the Secret named by spec.credentialsSecretRef"),
        )),
        Err(e) => e.credentials_verdict(),
    }
}

/// Shows `verdict` in `next` (`status.credentials` and the condition, its transition time kept
/// from the status as it stands) and announces a change of its reason; `Some(verdict)` when the
/// credentials no longer work.
pub(super) async fn settle(
    ctx: &Context,
    reporter: &Reporter<'_>,
    next: &mut ChannelStatus,
    verdict: Verdict,
) -> Option<Verdict> {
    let ch = reporter.channel();
    let before = &reporter.current().conditions;
    show(next, &verdict, before, ch.metadata.generation);
    announce(ctx, ch, before, &verdict).await;
    verdict.health.breaks_channel().then_some(verdict)
}

/// Puts `verdict` into `next`: `status.credentials` (what was known stays when the check could
/// not be made) and the `CredentialsHealthy` condition. A check that finds what the status says
/// keeps its `checkedAt` for up to [`CHECKED_AT_HOLDS`]: a re-check that changes nothing writes
/// nothing.
fn show(
    next: &mut ChannelStatus,
    verdict: &Verdict,
    before: &[Condition],
    generation: Option<i64>,
) {
    let now = Time(Timestamp::now());
    let previous = next.credentials.clone().unwrap_or_default();
    next.credentials = Some(if verdict.health == Health::Unchecked {
        previous
    } else {
        let found = CredentialsStatus {
            checked_at: previous.checked_at.clone(),
            expires_at: verdict.expires_at.map(Time),
            data_access_expires_at: verdict.data_access_expires_at.map(Time),
            missing_permissions: verdict.missing_permissions.clone(),
        };
        let recent = previous.checked_at.as_ref().is_some_and(|t| {
            now.0.as_second().saturating_sub(t.0.as_second()) < CHECKED_AT_HOLDS.as_secs() as i64
        });
        if found == previous && recent {
            found
        } else {
            CredentialsStatus {
                checked_at: Some(now.clone()),
                ..found
            }
        }
    });
    next.conditions.retain(|c| c.type_ != CREDENTIALS_HEALTHY);
    next.conditions
        .push(verdict.condition(before, generation, &now));
}

/// An Event when the reason changes: Warning for credentials needing attention, Normal when
/// they are valid again. None for the same reason again (no storm at every re-check).
async fn announce(ctx: &Context, ch: &Channel, before: &[Condition], verdict: &Verdict) {
    let was = health_of(before);
    if was == Some(verdict.health) {
        return;
    }
    let type_ = match verdict.health {
        h if h.is_unhealthy() => EventType::Warning,
        Health::Valid if was.is_some_and(Health::is_unhealthy) => EventType::Normal,
        _ => return,
    };
    ctx.events
        .publish_as(
            ch,
            type_,
            verdict.health.as_str(),
            ACTION,
            verdict.message.clone(),
        )
        .await;
}

fn health_of(conditions: &[Condition]) -> Option<Health> {
    conditions
        .iter()
        .find(|c| c.type_ == CREDENTIALS_HEALTHY)
        .and_then(|c| Health::parse(&c.reason))
}

/// Whether the status says the Channel's credentials no longer work.
pub(super) fn broken(status: &ChannelStatus) -> bool {
    health_of(&status.conditions).is_some_and(Health::breaks_channel)
}

/// The `CredentialsHealthy` condition a status write keeps: the one `next` carries, else the one
/// written before, while `next` has `status.credentials` (a disconnected Channel has neither).
pub(super) fn kept(next: &ChannelStatus, current: &ChannelStatus) -> Option<Condition> {
    next.credentials.as_ref()?;
    let find = |s: &ChannelStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == CREDENTIALS_HEALTHY)
            .cloned()
    };
    find(next).or_else(|| find(current))
}

/// What became of credentials a connect found not to work.
pub(super) enum Refused {
    /// Nothing was refused with these credentials.
    No,
    /// Still not working (or not due for a re-check): the reconcile's outcome.
    Still(Result<Action, Error>),
    /// Working again: the verdict of the `debug_token` just asked (the connect asks no other).
    Works(Option<Verdict>),
}

/// Before a connect with `credentials` whose token a connect found not to work (and that have
/// not changed since): nothing until the re-check is due, then one `debug_token` about that
/// token.
pub(super) async fn refused(
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    providers: &Providers,
    credentials: Option<&Credentials>,
) -> Refused {
    let ch = reporter.channel();
    let uid = ch.uid().unwrap_or_default();
    let Some(token) = credentials.and_then(|c| ctx.refused(&uid, &c.version)) else {
        return Refused::No;
    };
    if !ctx.recheck_due(&uid) {
        return Refused::Still(Ok(Action::requeue(ctx.config.resync)));
    }
    ctx.mark_checked(&uid);
    match ask(ctx, providers, ch, Some(&token)).await {
        Some(v) if v.health.breaks_channel() => {
            let mut status = reporter.current().clone();
            settle(ctx, reporter, &mut status, v.clone()).await;
            Refused::Still(stop(ctx, reporter, status, &v).await)
        }
        v => {
            ctx.refuse(&uid, None);
            Refused::Works(v)
        }
    }
}

/// Reports credentials that no longer work (`verdict`): `Ready=False, InvalidCredentials` over
/// `next`, a Warning Event when that is news, and no provider call until the next re-check
/// (`--resync-seconds`) or a change of the Channel or its Secret.
pub(super) async fn stop(
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    next: ChannelStatus,
    verdict: &Verdict,
) -> Result<Action, Error> {
    let message = format!("the credentials no longer work: {}", verdict.message);
    let news = !reporter.says(Reason::InvalidCredentials, &message);
    reporter
        .write(next, Reason::InvalidCredentials, &message)
        .await?;
    if news {
        warn!(reason = %Reason::InvalidCredentials, "{message}");
        reporter
            .event(
                EventType::Warning,
                Reason::InvalidCredentials,
                ACTION,
                message,
            )
            .await;
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// Shows in `status` the credentials' verdict the failure `e` carries, if any (Graph's OAuth
/// error 190, a Viber bot token refused).
pub(super) async fn note_failure(
    ctx: &Context,
    reporter: &Reporter<'_>,
    status: &mut ChannelStatus,
    e: &Error,
) {
    let Error::Provider(e) = e else { return };
    let source = reporter.channel().spec.source;
    if let Some(verdict) = from_recheck(source, &Err(e.clone())) {
        settle(ctx, reporter, status, verdict).await;
    }
}

/// Reports the failure `e` of `action`, with the credentials' verdict where it carries one.
pub(super) async fn fail(
    ctx: &Context,
    reporter: &mut Reporter<'_>,
    action: &str,
    e: ProviderError,
) -> Result<Action, Error> {
    let e = Error::from(e);
    let mut status = reporter.current().clone();
    note_failure(ctx, reporter, &mut status, &e).await;
    reporter.fail_with(action, e, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(reason: &str) -> Condition {
        Condition {
            type_: CREDENTIALS_HEALTHY.into(),
            status: "False".into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::now()),
        }
    }

    #[test]
    fn the_condition_stays_with_the_credentials_status_only() {
        let current = ChannelStatus {
            credentials: Some(CredentialsStatus::default()),
            conditions: vec![condition("Invalidated")],
            ..Default::default()
        };
        assert!(broken(&current));
        let mut next = current.clone();
        next.conditions.clear();
        assert_eq!(kept(&next, &current).unwrap().reason, "Invalidated");
        next.conditions = vec![condition("ExpiringSoon")];
        assert_eq!(kept(&next, &current).unwrap().reason, "ExpiringSoon");
        assert!(!broken(&next));
        assert_eq!(kept(&ChannelStatus::default(), &current), None);
    }

    #[test]
    fn a_viber_recheck_is_its_verdict_and_graphs_190_is_one_for_any_source() {
        let ok = Ok(ConnectOutcome::default());
        assert_eq!(
            from_recheck(Source::Viber, &ok).map(|v| v.health),
            Some(Health::Valid)
        );
        assert_eq!(from_recheck(Source::Facebook, &ok), None);
        let refused = Err(ProviderError::InvalidCredentials("401".into()));
        assert_eq!(
            from_recheck(Source::Viber, &refused).map(|v| v.health),
            Some(Health::Invalidated)
        );
        assert_eq!(from_recheck(Source::TwilioSms, &refused), None);
        let rejected = Err(ProviderError::TokenRejected {
            message: "subcode 463".into(),
            expired: true,
        });
        assert_eq!(
            from_recheck(Source::Whatsapp, &rejected).map(|v| v.health),
            Some(Health::Expired)
        );
    }
}
