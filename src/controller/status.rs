//! The Channel's status: what a step reports, the kstatus conditions it implies, and writing it.
//!
//! Every reason decides the conditions ([`Reason::state`]): `Ready` always (True only for
//! `Connected` and `Disconnected`), `Reconciling` while a change is in progress or retried,
//! `Stalled` for failures that retrying cannot fix. `Reconciling` and `Stalled` are written only
//! while True (kstatus treats absent and False alike), each with the observed generation.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{debug, warn};

use super::context::Context;
use super::error::Error;
use super::events::EventType;
use crate::crd::{Channel, ChannelStatus, READY, RECONCILING, STALLED};
use crate::ownership::MANAGER;
use crate::reason::{Reason, State};

/// The conditions for `reason`, carrying over each one's `lastTransitionTime` from `previous`
/// while its status is unchanged.
pub fn conditions(
    previous: &[Condition],
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let state = reason.state();
    let condition = |type_: &str, status: &str| {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message: message.chars().take(32 * 1024).collect(),
            observed_generation: generation,
            last_transition_time,
        }
    };
    let mut out = vec![condition(
        READY,
        if state == State::Ready {
            "True"
        } else {
            "False"
        },
    )];
    match state {
        State::Ready => {}
        State::Reconciling => out.push(condition(RECONCILING, "True")),
        State::Stalled => out.push(condition(STALLED, "True")),
    }
    out
}

/// Reports a Channel's status during one reconcile, keeping what it last wrote (later writes of
/// the same reconcile start from there).
pub struct Reporter<'a> {
    ctx: &'a Context,
    ch: &'a Channel,
    current: ChannelStatus,
}

impl<'a> Reporter<'a> {
    pub fn new(ctx: &'a Context, ch: &'a Channel) -> Self {
        Reporter {
            ctx,
            ch,
            current: ch.status.clone().unwrap_or_default(),
        }
    }

    /// The status as last read or written.
    pub fn current(&self) -> &ChannelStatus {
        &self.current
    }

    /// The Channel it reports on.
    pub fn channel(&self) -> &'a Channel {
        self.ch
    }

    /// Writes `next` (its id, generation and conditions filled in from `reason` and `message`),
    /// unless the Channel already says exactly that.
    pub async fn write(
        &mut self,
        mut next: ChannelStatus,
        reason: Reason,
        message: &str,
    ) -> Result<(), kube::Error> {
        let generation = self.ch.metadata.generation;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        next.id = Some(self.ch.channel_id(self.ctx.config.naming));
        next.observed_generation = generation;
        let health = super::credentials::kept(&next, &self.current);
        next.conditions = conditions(&self.current.conditions, reason, message, generation, &now);
        next.conditions.extend(health);
        if next == self.current {
            return Ok(());
        }
        self.apply(&next).await?;
        self.current = next;
        Ok(())
    }

    /// Writes the status by server-side apply. Retries conflicts a few times: losing a status
    /// write after a provider call would mean calling again.
    async fn apply(&self, status: &ChannelStatus) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "apiVersion": Channel::api_version(&()),
            "kind": Channel::kind(&()),
            "status": status,
        });
        let api = self.ctx.channels(self.ch);
        let params = PatchParams::apply(MANAGER).force();
        let mut attempt = 0u32;
        loop {
            match api
                .patch_status(&self.ch.name_any(), &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 4 && is_retriable(&e) => {
                    attempt += 1;
                    debug!("status write failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The reason of the Ready condition, if the status reports on the Channel's generation.
    pub fn verdict_now(&self) -> Option<&str> {
        let ready = self.current.conditions.iter().find(|c| c.type_ == READY);
        let generation = self.ch.metadata.generation.unwrap_or(0);
        crate::channel_state::verdict_at(self.current.observed_generation, ready, generation)
            .map(|c| c.reason.as_str())
    }

    /// Whether the Ready condition already says `reason` with `message`.
    pub fn says(&self, reason: Reason, message: &str) -> bool {
        self.current
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == reason && c.message == message)
    }

    /// Publishes an Event about the Channel.
    pub async fn event(&self, type_: EventType, why: Reason, action: &str, note: String) {
        self.ctx
            .events
            .publish(self.ch, type_, why, action, note)
            .await;
    }

    /// Reports a failure of `action` (keeping what the status knows of the provider) with a
    /// Warning Event when it is news, and returns the error for the retry policy.
    pub async fn fail(&mut self, action: &str, err: Error) -> Result<Action, Error> {
        self.fail_with(action, err, self.current.clone()).await
    }

    /// Like [`Reporter::fail`], reporting `status` with the failure.
    pub async fn fail_with(
        &mut self,
        action: &str,
        err: Error,
        status: ChannelStatus,
    ) -> Result<Action, Error> {
        let why = err.reason();
        let message = format!("{action} failed: {err}");
        warn!(reason = why.as_str(), "{message}");
        let news = !self.says(why, &message);
        if let Err(e) = self.write(status, why, &message).await {
            warn!("cannot write the failure to the status: {e}");
        }
        if news {
            self.event(EventType::Warning, why, action, message).await;
        }
        Err(err)
    }
}

fn is_retriable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 429 || s.code >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn get<'a>(cs: &'a [Condition], ty: &str) -> Option<&'a Condition> {
        cs.iter().find(|c| c.type_ == ty)
    }

    #[test]
    fn each_reason_sets_exactly_one_true_condition() {
        for r in Reason::ALL {
            let cs = conditions(&[], r, "m", Some(3), &at(1));
            let trues: Vec<&str> = cs
                .iter()
                .filter(|c| c.status == "True")
                .map(|c| c.type_.as_str())
                .collect();
            let want = match r.state() {
                State::Ready => READY,
                State::Reconciling => RECONCILING,
                State::Stalled => STALLED,
            };
            assert_eq!(trues, [want], "{r}");
            assert!(cs
                .iter()
                .all(|c| c.observed_generation == Some(3) && c.reason == r && c.message == "m"));
            assert_eq!(
                get(&cs, READY).unwrap().status == "True",
                r.state() == State::Ready
            );
        }
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let c1 = conditions(&[], Reason::ProviderError, "x", Some(1), &at(1));
        let c2 = conditions(&c1, Reason::InvalidCredentials, "y", Some(2), &at(2));
        // Ready stayed False; Stalled is new.
        assert_eq!(get(&c2, READY).unwrap().last_transition_time, at(1));
        assert_eq!(get(&c2, STALLED).unwrap().last_transition_time, at(2));
        assert!(get(&c2, RECONCILING).is_none());
        let c3 = conditions(&c2, Reason::Connected, "", Some(2), &at(3));
        assert_eq!(get(&c3, READY).unwrap().last_transition_time, at(3));
        assert_eq!(get(&c3, READY).unwrap().status, "True");
        assert_eq!(c3.len(), 1);
    }
}
