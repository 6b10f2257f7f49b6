//! What the health of a set of credentials means, defined once for the controller (a Channel's
//! token, a provider configuration's accounts), its metrics and the docs: the condition
//! `CredentialsHealthy`, its reasons, the permissions each source needs, and the verdict on a
//! token from what the provider says of it.
//!
//! The verdict never holds a token: only dates, permission names and the provider's words about
//! why a token stopped working.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::Source;

/// The condition type that says whether the credentials work and keep working.
pub const CREDENTIALS_HEALTHY: &str = "CredentialsHealthy";

/// How long before a token expires it is reported `ExpiringSoon` by default
/// (`--credentials-warning-days`).
pub const DEFAULT_WARNING_DAYS: u64 = 7;

/// The permissions (Graph scopes) a token of `source` must carry for the channel to work; empty
/// for sources whose tokens have no scopes to check. The table of docs/providers.md.
pub fn required_scopes(source: Source) -> &'static [&'static str] {
    match source {
        Source::Facebook => &["pages_messaging", "pages_manage_metadata"],
        Source::Instagram => &[
            "pages_messaging",
            "pages_manage_metadata",
            "instagram_manage_messages",
        ],
        Source::Whatsapp => &[
            "whatsapp_business_messaging",
            "whatsapp_business_management",
        ],
        _ => &[],
    }
}

/// Whether a source's token is asked about at every re-check (Graph's `debug_token`).
pub fn is_debugged(source: Source) -> bool {
    matches!(
        source,
        Source::Facebook | Source::Instagram | Source::Whatsapp
    )
}

/// The reason of the `CredentialsHealthy` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// The credentials work and do not expire within the warning period (`True`).
    Valid,
    /// The token expires (or its data access does) within the warning period.
    ExpiringSoon,
    /// The token (or its data access) expired.
    Expired,
    /// The provider invalidated the credentials (password changed, app removed, revoked).
    Invalidated,
    /// The token lacks a permission the source needs.
    MissingPermissions,
    /// The provider account is suspended (Twilio).
    AccountSuspended,
    /// The provider account is closed (Twilio).
    AccountClosed,
    /// The check could not be made (the provider did not answer): status `Unknown`.
    Unchecked,
}

impl Health {
    /// Every reason, in a stable order.
    pub const ALL: [Health; 8] = [
        Health::Valid,
        Health::ExpiringSoon,
        Health::Expired,
        Health::Invalidated,
        Health::MissingPermissions,
        Health::AccountSuspended,
        Health::AccountClosed,
        Health::Unchecked,
    ];

    /// The condition's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Valid => "Valid",
            Health::ExpiringSoon => "ExpiringSoon",
            Health::Expired => "Expired",
            Health::Invalidated => "Invalidated",
            Health::MissingPermissions => "MissingPermissions",
            Health::AccountSuspended => "AccountSuspended",
            Health::AccountClosed => "AccountClosed",
            Health::Unchecked => "Unchecked",
        }
    }

    /// Parses a condition's `reason`.
    pub fn parse(s: &str) -> Option<Health> {
        Health::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// The condition's `status`: `True` only when valid, `Unknown` when not checked.
    pub fn status(self) -> &'static str {
        match self {
            Health::Valid => "True",
            Health::Unchecked => "Unknown",
            _ => "False",
        }
    }

    /// Whether the credentials no longer work at all: the Channel is not Ready
    /// (`InvalidCredentials`) and no connect or subscribe call is made with them.
    pub fn breaks_channel(self) -> bool {
        matches!(
            self,
            Health::Expired
                | Health::Invalidated
                | Health::AccountSuspended
                | Health::AccountClosed
        )
    }

    /// Whether it needs someone's attention (a metric series and an alert): every `False`.
    pub fn is_unhealthy(self) -> bool {
        self.status() == "False"
    }

    /// How bad it is, to report the worst of several accounts.
    fn severity(self) -> u8 {
        match self {
            Health::Valid => 0,
            Health::Unchecked => 1,
            Health::ExpiringSoon => 2,
            Health::MissingPermissions => 3,
            Health::AccountSuspended => 4,
            Health::Expired => 5,
            Health::Invalidated => 6,
            Health::AccountClosed => 7,
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the provider says of a token (Graph's `debug_token`), without the token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenFacts {
    /// Whether the provider accepts the token.
    pub valid: bool,
    /// When the token expires; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// When the app's access to the granting user's data expires; `None`: never, or not said.
    pub data_access_expires_at: Option<Timestamp>,
    /// The permissions granted.
    pub scopes: Vec<String>,
    /// Why the token is invalid: Graph's OAuth error subcode (463: expired, 460: password
    /// changed, ...).
    pub subcode: Option<i64>,
    /// The provider's description of why it is invalid.
    pub error: Option<String>,
}

/// The health of one set of credentials and what to show of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The condition's reason.
    pub health: Health,
    /// The condition's message: what is wrong and what to do.
    pub message: String,
    /// When the token expires (`None`: never, or unknown).
    pub expires_at: Option<Timestamp>,
    /// When the token's data access expires.
    pub data_access_expires_at: Option<Timestamp>,
    /// The required permissions the token lacks.
    pub missing_permissions: Vec<String>,
}

/// What to do when a Channel's token stopped working.
const REPLACE: &str = "put a new token in the Secret named by spec.credentialsSecretRef, or repair the grant at the provider: the Channel recovers by itself";

impl Verdict {
    /// A verdict with nothing but a reason and a message.
    pub fn of(health: Health, message: impl Into<String>) -> Verdict {
        Verdict {
            health,
            message: message.into(),
            expires_at: None,
            data_access_expires_at: None,
            missing_permissions: Vec::new(),
        }
    }

    /// The token as the provider described it (`facts`) for a channel needing `required`, at
    /// `now`, warning `warning` ahead of an expiry.
    pub fn judge(facts: &TokenFacts, required: &[&str], now: Timestamp, warning: Duration) -> Self {
        let at = |t: Timestamp| t.to_string();
        let passed = |t: Option<Timestamp>| t.filter(|t| *t <= now);
        let mut v = Verdict::of(Health::Valid, "");
        v.expires_at = facts.expires_at;
        v.data_access_expires_at = facts.data_access_expires_at;
        v.missing_permissions = required
            .iter()
            .filter(|r| !facts.scopes.iter().any(|s| s == *r))
            .map(|r| (*r).to_owned())
            .collect();
        let expired_at = passed(facts.expires_at);
        if !facts.valid && facts.subcode != Some(EXPIRED) && expired_at.is_none() {
            v.health = Health::Invalidated;
            v.message = format!(
                "the provider invalidated the token ({}): {REPLACE}",
                describe_rejection(facts.subcode, facts.error.as_deref())
            );
        } else if !facts.valid || expired_at.is_some() {
            v.health = Health::Expired;
            v.message = match expired_at.or(facts.expires_at) {
                Some(t) => format!("the token expired at {}: {REPLACE}", at(t)),
                None => format!("the token expired: {REPLACE}"),
            };
        } else if let Some(t) = passed(facts.data_access_expires_at) {
            v.health = Health::Expired;
            v.message = format!(
                "the token's data access expired at {} (90 days after the granting user was last active): have the user log in to the app again and put the new token in the Secret named by spec.credentialsSecretRef",
                at(t)
            );
        } else if !v.missing_permissions.is_empty() {
            v.health = Health::MissingPermissions;
            v.message = format!(
                "the token lacks the permissions {}: grant them to the app (log in again accepting them) and put the new token in the Secret named by spec.credentialsSecretRef",
                v.missing_permissions.join(", ")
            );
        } else if let Some((what, t)) = soonest(facts, now, warning) {
            v.health = Health::ExpiringSoon;
            v.message = format!(
                "the token{what} expires at {}, in {}: put a new token in the Secret named by spec.credentialsSecretRef before then",
                at(t),
                span(now, t)
            );
        } else {
            v.message = match facts.expires_at {
                Some(t) => format!("the token is valid until {}", at(t)),
                None => "the token is valid and does not expire".into(),
            };
        }
        v
    }

    /// The verdict on credentials a provider call was refused with (Graph's OAuth error 190):
    /// expired (`expired`) or invalidated, described by the provider's `message`.
    pub fn rejected(expired: bool, message: &str) -> Verdict {
        if expired {
            Verdict::of(
                Health::Expired,
                format!("the provider refused the token as expired ({message}): {REPLACE}"),
            )
        } else {
            Verdict::of(
                Health::Invalidated,
                format!("the provider refused the token ({message}): {REPLACE}"),
            )
        }
    }

    /// The worst of several accounts' verdicts (a configuration's Facebook app and Twilio
    /// account), with every unhealthy one's message; `None` for none.
    pub fn worst(verdicts: Vec<Verdict>) -> Option<Verdict> {
        let worst = verdicts
            .iter()
            .map(|v| v.health)
            .max_by_key(|h| h.severity())?;
        let messages: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.health != Health::Valid || worst == Health::Valid)
            .map(|v| v.message.as_str())
            .collect();
        Some(Verdict::of(worst, messages.join("; ")))
    }

    /// The `CredentialsHealthy` condition of this verdict, keeping the transition time of
    /// `previous` (the conditions last written) while its status holds.
    pub fn condition(
        &self,
        previous: &[Condition],
        generation: Option<i64>,
        now: &Time,
    ) -> Condition {
        let status = self.health.status();
        let last_transition_time =
            crate::condition::transition_time(previous, CREDENTIALS_HEALTHY, status, now);
        Condition {
            type_: CREDENTIALS_HEALTHY.into(),
            status: status.into(),
            reason: self.health.as_str().into(),
            message: self.message.chars().take(32 * 1024).collect(),
            observed_generation: generation,
            last_transition_time,
        }
    }
}

/// A resource whose credentials need attention: one series of the credentials metrics
/// (healthy ones have none, so the series stay as few as the resources in trouble).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// `Channel`, `ProviderConfig` or `ClusterProviderConfig`.
    pub kind: &'static str,
    /// The resource's namespace (empty for a `ClusterProviderConfig`).
    pub namespace: String,
    /// The resource's name.
    pub name: String,
    /// The Channel's source, or the configuration's account (`facebook`, `twilio`).
    pub source: String,
    /// The condition's reason (never `Valid`).
    pub health: Health,
    /// When the credentials expire (seconds since the epoch), where known.
    pub expires_at: Option<i64>,
}

impl Attention {
    /// The attention a Channel's credentials need, from its `CredentialsHealthy` condition and
    /// `status.credentials`: `None` while they are healthy or were never checked.
    pub fn of_channel(ch: &crate::crd::Channel) -> Option<Attention> {
        use kube::ResourceExt;
        let status = ch.status.as_ref()?;
        let health = status
            .conditions
            .iter()
            .find(|c| c.type_ == CREDENTIALS_HEALTHY)
            .and_then(|c| Health::parse(&c.reason))
            .filter(|h| h.is_unhealthy())?;
        let expires_at = status.credentials.as_ref().and_then(|c| {
            [&c.expires_at, &c.data_access_expires_at]
                .into_iter()
                .flatten()
                .map(|t| t.0.as_second())
                .min()
        });
        Some(Attention {
            kind: "Channel",
            namespace: ch.namespace().unwrap_or_default(),
            name: ch.name_any(),
            source: ch.spec.source.as_str().to_owned(),
            health,
            expires_at,
        })
    }
}

/// Graph's OAuth error subcode of an expired token.
pub const EXPIRED: i64 = 463;

/// Graph's OAuth error code of credentials that no longer work.
pub const OAUTH_INVALID_TOKEN: i64 = 190;

/// Words for why Graph refused a token (its error subcode), else the provider's own message.
pub fn describe_rejection(subcode: Option<i64>, message: Option<&str>) -> String {
    let known = match subcode {
        Some(458) => Some("the user removed the app"),
        Some(459) => Some("the user's account is checkpointed: they must log in at Facebook"),
        Some(460) => Some("the password of the user who granted it changed"),
        Some(463) => Some("it expired"),
        Some(464) => Some("the user's account is not confirmed"),
        Some(467) => Some("it was revoked or the user logged out"),
        Some(492) => Some("the user is no longer an admin of the page"),
        _ => None,
    };
    match (known, subcode, message) {
        (Some(k), Some(code), _) => format!("OAuth error 190, subcode {code}: {k}"),
        (None, Some(code), Some(m)) => format!("OAuth error 190, subcode {code}: {m}"),
        (None, None, Some(m)) => m.to_owned(),
        _ => "OAuth error 190".to_owned(),
    }
}

/// The earliest expiry within `warning` of `now`: (" " + what expires, when).
fn soonest(
    facts: &TokenFacts,
    now: Timestamp,
    warning: Duration,
) -> Option<(&'static str, Timestamp)> {
    let horizon = now.checked_add(warning).unwrap_or(Timestamp::MAX);
    [
        ("", facts.expires_at),
        ("'s data access", facts.data_access_expires_at),
    ]
    .into_iter()
    .filter_map(|(what, t)| t.filter(|t| *t <= horizon).map(|t| (what, t)))
    .min_by_key(|(_, t)| *t)
}

/// `3 days 4 hours`, `5 hours`, `12 minutes`: the time from `now` to `t`.
fn span(now: Timestamp, t: Timestamp) -> String {
    let secs = t.as_second().saturating_sub(now.as_second()).max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (days, hours) {
        (0, 0) => unit(minutes, "minute"),
        (0, h) => unit(h, "hour"),
        (d, 0) => unit(d, "day"),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn after(secs: i64) -> Option<Timestamp> {
        Some(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn facts() -> TokenFacts {
        TokenFacts {
            valid: true,
            scopes: vec![
                "pages_messaging".into(),
                "pages_manage_metadata".into(),
                "pages_show_list".into(),
            ],
            ..Default::default()
        }
    }

    fn judge(f: &TokenFacts, source: Source) -> Verdict {
        Verdict::judge(f, required_scopes(source), now(), WEEK)
    }

    #[test]
    fn a_token_that_never_expires_with_every_permission_is_valid() {
        let v = judge(&facts(), Source::Facebook);
        assert_eq!(v.health, Health::Valid);
        assert_eq!(v.expires_at, None);
        assert_eq!(v.message, "the token is valid and does not expire");
        let mut f = facts();
        f.expires_at = after(30 * DAY);
        assert_eq!(judge(&f, Source::Facebook).health, Health::Valid);
    }

    #[test]
    fn an_expiry_within_the_warning_period_is_expiring_soon_and_says_when() {
        let mut f = facts();
        f.expires_at = after(3 * DAY + 2 * 3_600);
        let v = judge(&f, Source::Facebook);
        assert_eq!(v.health, Health::ExpiringSoon);
        assert!(v.message.contains("in 3 days 2 hours"), "{}", v.message);
        assert!(v.message.contains("2027-01-18T"), "{}", v.message);
        assert!(!v.health.breaks_channel());
        // The data access, when it comes first.
        let mut f = facts();
        f.expires_at = after(6 * DAY);
        f.data_access_expires_at = after(DAY);
        let v = judge(&f, Source::Facebook);
        assert!(
            v.message.starts_with("the token's data access expires"),
            "{}",
            v.message
        );
        assert!(v.message.contains("in 1 day:"), "{}", v.message);
    }

    #[test]
    fn invalid_tokens_are_expired_or_invalidated_by_their_subcode_and_dates() {
        let mut f = facts();
        f.valid = false;
        f.subcode = Some(460);
        f.expires_at = after(DAY);
        let v = judge(&f, Source::Facebook);
        assert_eq!(v.health, Health::Invalidated);
        assert!(
            v.message.contains("subcode 460: the password"),
            "{}",
            v.message
        );
        assert!(v.health.breaks_channel());
        f.subcode = Some(EXPIRED);
        assert_eq!(judge(&f, Source::Facebook).health, Health::Expired);
        f.subcode = None;
        f.expires_at = after(-DAY);
        assert_eq!(judge(&f, Source::Facebook).health, Health::Expired);
        // Still said valid, but past its expiry (clocks differ): expired.
        let mut f = facts();
        f.expires_at = after(-1);
        assert_eq!(judge(&f, Source::Facebook).health, Health::Expired);
        let mut f = facts();
        f.data_access_expires_at = after(-1);
        let v = judge(&f, Source::Facebook);
        assert_eq!(v.health, Health::Expired);
        assert!(v.message.contains("data access expired"), "{}", v.message);
    }

    #[test]
    fn a_missing_permission_is_named_and_outranks_an_expiry() {
        let mut f = facts();
        f.expires_at = after(DAY);
        let v = judge(&f, Source::Instagram);
        assert_eq!(v.health, Health::MissingPermissions);
        assert_eq!(v.missing_permissions, ["instagram_manage_messages"]);
        assert!(
            v.message.contains("instagram_manage_messages"),
            "{}",
            v.message
        );
        assert!(!v.health.breaks_channel());
        let v = judge(&facts(), Source::Whatsapp);
        assert_eq!(
            v.missing_permissions,
            [
                "whatsapp_business_messaging",
                "whatsapp_business_management"
            ]
        );
    }

    #[test]
    fn the_condition_keeps_its_transition_time_while_its_status_holds() {
        let t1 = Time(Timestamp::from_second(1).unwrap());
        let t2 = Time(Timestamp::from_second(2).unwrap());
        let first = Verdict::of(Health::ExpiringSoon, "a").condition(&[], Some(1), &t1);
        assert_eq!(
            (first.status.as_str(), first.reason.as_str()),
            ("False", "ExpiringSoon")
        );
        let second =
            Verdict::of(Health::Expired, "b").condition(std::slice::from_ref(&first), Some(2), &t2);
        assert_eq!(second.last_transition_time, t1, "False stayed False");
        let third = Verdict::of(Health::Valid, "c").condition(&[second], Some(2), &t2);
        assert_eq!(
            (third.status.as_str(), third.last_transition_time),
            ("True", t2)
        );
        assert_eq!(
            Verdict::of(Health::Unchecked, "")
                .condition(&[], None, &t1)
                .status,
            "Unknown"
        );
    }

    #[test]
    fn the_worst_account_decides_and_every_unhealthy_one_is_said() {
        let v = Verdict::worst(vec![
            Verdict::of(Health::Valid, "app fine"),
            Verdict::of(Health::AccountSuspended, "twilio suspended"),
        ])
        .unwrap();
        assert_eq!(
            (v.health, v.message.as_str()),
            (Health::AccountSuspended, "twilio suspended")
        );
        let v = Verdict::worst(vec![
            Verdict::of(Health::Valid, "a"),
            Verdict::of(Health::Valid, "b"),
        ])
        .unwrap();
        assert_eq!((v.health, v.message.as_str()), (Health::Valid, "a; b"));
        assert!(Verdict::worst(vec![]).is_none());
    }

    #[test]
    fn every_reason_round_trips_and_only_valid_is_true() {
        for h in Health::ALL {
            assert_eq!(Health::parse(h.as_str()), Some(h));
            assert_eq!(h.status() == "True", h == Health::Valid);
        }
        assert!(!Health::Unchecked.is_unhealthy() && !Health::Valid.is_unhealthy());
    }
}
