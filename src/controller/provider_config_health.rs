//! Whether a provider configuration's own accounts work at their providers (docs/providers.md,
//! "A configuration's accounts"): the Facebook app's id and secret (Graph's `debug_token` of the
//! app's own token), the Twilio account's status (active, suspended, closed). Asked when the
//! configuration or its Secrets change and at sweeps, but at most once per `--resync-seconds`
//! per configuration while neither changes: the answers are kept that long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;

use super::provider_configs::{ProviderConfigs, ReadAccounts};
use crate::credentials_health::{describe_rejection, Attention, Health, Verdict};
use crate::provider_config::Accounts;
use crate::providers::{ProviderError, Providers};

/// Per account (`facebook`, `twilio`), its verdict; empty without accounts.
pub(super) type AccountVerdicts = Vec<(&'static str, Verdict)>;

/// The last answers of each configuration's providers, kept `fresh_for` while the configuration
/// and its Secrets keep their versions.
pub(super) struct AccountChecks {
    fresh_for: Duration,
    /// By configuration uid: (its generation and Secrets' versions, when asked, the verdicts).
    last: Mutex<HashMap<String, (String, Instant, AccountVerdicts)>>,
}

impl AccountChecks {
    pub(super) fn new(fresh_for: Duration) -> Self {
        AccountChecks {
            fresh_for,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The verdicts on the accounts of configuration `uid` (`generation`), whose Secrets were
    /// `read`: the kept ones while fresh and unchanged, else its providers' answers.
    pub(super) async fn verdicts(
        &self,
        configs: &ProviderConfigs,
        uid: &str,
        generation: Option<i64>,
        accounts: &Accounts,
        read: ReadAccounts,
    ) -> AccountVerdicts {
        let version = format!("{}@{}", generation.unwrap_or_default(), read.versions());
        if let Some((v, at, kept)) = self.last.lock().expect("not poisoned").get(uid) {
            if *v == version && at.elapsed() < self.fresh_for {
                return kept.clone();
            }
        }
        let verdicts = account_health(&configs.with_accounts(read), accounts).await;
        let mut last = self.last.lock().expect("not poisoned");
        last.retain(|_, (_, at, _)| at.elapsed() < self.fresh_for);
        // Only answers are kept: a check that could not be made is made again at the next sweep.
        if verdicts.iter().all(|(_, v)| v.health != Health::Unchecked) {
            last.insert(uid.to_owned(), (version, Instant::now(), verdicts.clone()));
        }
        verdicts
    }
}

/// Each account of `accounts` as not checked, because of `why`.
pub(super) fn unchecked(accounts: &Accounts, why: &str) -> AccountVerdicts {
    let say = |what: &str| Verdict::of(Health::Unchecked, format!("{what} not checked: {why}"));
    let mut out = Vec::new();
    if accounts.facebook.is_some() {
        out.push(("facebook", say("the Facebook app's credentials were")));
    }
    if accounts.twilio.is_some() {
        out.push(("twilio", say("the Twilio account was")));
    }
    out
}

/// The verdict on each account of a configuration, asked of its provider (changing nothing).
async fn account_health(providers: &Providers, accounts: &Accounts) -> AccountVerdicts {
    let mut out = Vec::new();
    if let Some(app) = &accounts.facebook {
        let id = &app.app_id;
        let fix = "put the app's current secret in the Secret named by spec.facebook.appSecretRef";
        let verdict = match providers.facebook().debug_app_token().await {
            Ok(facts) if facts.valid => Verdict::of(
                Health::Valid,
                format!("the Facebook app {id} accepts its credentials"),
            ),
            Ok(facts) => Verdict::of(
                Health::Invalidated,
                format!(
                    "Facebook says the access token of app {id} is invalid ({}): {fix}",
                    describe_rejection(facts.subcode, facts.error.as_deref())
                ),
            ),
            Err(
                e @ (ProviderError::InvalidCredentials(_) | ProviderError::TokenRejected { .. }),
            ) => Verdict::of(
                Health::Invalidated,
                format!("Facebook refused the credentials of app {id} ({e}): {fix}"),
            ),
            Err(e) => Verdict::of(
                Health::Unchecked,
                format!("the credentials of the Facebook app {id} could not be checked: {e}"),
            ),
        };
        out.push(("facebook", verdict));
    }
    if let Some(account) = &accounts.twilio {
        let sid = &account.account_sid;
        let verdict = match providers.twilio().account_status().await {
            Some(Ok(status)) => match status.as_str() {
                "active" => Verdict::of(Health::Valid, format!("the Twilio account {sid} is active")),
                "suspended" => Verdict::of(
                    Health::AccountSuspended,
                    format!("the Twilio account {sid} is suspended: its numbers get no messages and no webhook can be set; resolve it with Twilio (billing, compliance)"),
                ),
                "closed" => Verdict::of(
                    Health::AccountClosed,
                    format!("the Twilio account {sid} is closed: configure another account in spec.twilio"),
                ),
                other => Verdict::of(
                    Health::Unchecked,
                    format!("the Twilio account {sid} reports the unknown status {other:?}"),
                ),
            },
            Some(Err(ProviderError::InvalidCredentials(e))) => Verdict::of(
                Health::Invalidated,
                format!("Twilio refused the auth token of account {sid} ({e}): put the account's current auth token in the Secret named by spec.twilio.authTokenRef"),
            ),
            Some(Err(e)) => Verdict::of(
                Health::Unchecked,
                format!("the Twilio account {sid} could not be checked: {e}"),
            ),
            None => Verdict::of(Health::Unchecked, format!("the Twilio account {sid} is not complete")),
        };
        out.push(("twilio", verdict));
    }
    out
}

/// The `CredentialsHealthy` condition of a configuration: the worst of its accounts; `None`
/// without accounts.
pub(super) fn condition(
    accounts: &AccountVerdicts,
    before: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    let verdicts = accounts.iter().map(|(_, v)| v.clone()).collect();
    Verdict::worst(verdicts).map(|worst| worst.condition(before, generation, now))
}

/// The accounts of `object` needing attention, for the metrics.
pub(super) fn attention<K: Resource<DynamicType = ()>>(
    object: &K,
    accounts: &AccountVerdicts,
) -> Vec<Attention> {
    let kind: &'static str = if K::kind(&()) == "ProviderConfig" {
        "ProviderConfig"
    } else {
        "ClusterProviderConfig"
    };
    accounts
        .iter()
        .filter(|(_, v)| v.health.is_unhealthy())
        .map(|(source, v)| Attention {
            kind,
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
            source: (*source).to_owned(),
            health: v.health,
            expires_at: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider_config::ProviderConfig;

    #[test]
    fn the_worst_account_is_the_credentials_condition_and_only_unhealthy_ones_are_metrics() {
        let accounts = vec![
            ("facebook", Verdict::of(Health::Valid, "app ok")),
            ("twilio", Verdict::of(Health::AccountSuspended, "suspended")),
        ];
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let c = condition(&accounts, &[], Some(1), &now).unwrap();
        assert_eq!(
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str()
            ),
            (
                "CredentialsHealthy",
                "False",
                "AccountSuspended",
                "suspended"
            )
        );
        assert_eq!(condition(&vec![], &[], Some(1), &now), None);
        let mut pc = ProviderConfig::new("default", Default::default());
        pc.metadata.namespace = Some("shop".into());
        let a = attention(&pc, &accounts);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (
                a[0].kind,
                a[0].namespace.as_str(),
                a[0].source.as_str(),
                a[0].health
            ),
            ("ProviderConfig", "shop", "twilio", Health::AccountSuspended)
        );
    }
}
