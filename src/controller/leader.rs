//! Leader election over a coordination.k8s.io/v1 Lease, with client-go's semantics.
//!
//! - A candidate takes the Lease when it has no holder (released on shutdown: taken at once), when
//!   it names this replica, or when its record (resourceVersion) has not changed for the lease
//!   duration *as observed on this replica's clock*: another holder's renewTime is never compared
//!   with the local clock, so clock skew cannot hand the Lease to two replicas.
//! - The leader renews every retry period. When no renewal succeeded for the renew deadline
//!   (measured from when the last successful renewal was *sent*), the controller future is
//!   dropped at once — every reconcile in flight with it, their requests cancelled before they are
//!   answered — and the replica is a candidate again. The renew deadline is shorter than the
//!   lease duration, and a standby counts the lease duration from when it *saw* that renewal, so
//!   the old leader has stopped before any standby can take over.
//! - Every write is guarded by the resourceVersion read just before (a merge patch carrying it):
//!   of two replicas acting on the same record, one gets a conflict.
//! - Errors talking to the apiserver (down, refusing, hanging) are logged and retried, never fatal:
//!   a replica started while the apiserver is down waits for it.
//!
//! Why not kube-lease-manager (used before): it judges expiry by comparing the holder's renewTime
//! with the local clock, has no renew deadline (a partitioned leader kept reconciling), and
//! returns apiserver errors to the caller, which ended the process.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::runtime::Shutdown;

/// How often a candidate reads the Lease at most: a released Lease is taken within this.
const CANDIDATE_POLL: Duration = Duration::from_millis(500);

/// Lease duration, renew deadline and retry period (client-go's names and meaning).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// How long a standby waits, after it last saw the Lease change, before taking it.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews (and a candidate retries).
    pub retry_period: Duration,
}

impl Timing {
    /// From the flags: the renew deadline defaults to 10 s, or two thirds of a shorter lease
    /// duration; the retry period to 2 s, or a fifth of a shorter renew deadline.
    pub fn from_flags(
        lease_duration: f64,
        renew_deadline: Option<f64>,
        retry_period: Option<f64>,
    ) -> anyhow::Result<Timing> {
        let secs = |name: &str, v: f64| {
            anyhow::ensure!(
                v.is_finite() && v > 0.0,
                "--{name} must be a positive number of seconds"
            );
            Ok(Duration::from_secs_f64(v))
        };
        let lease_duration = secs("lease-duration-seconds", lease_duration)?;
        let renew_deadline = secs(
            "renew-deadline-seconds",
            renew_deadline.unwrap_or((lease_duration.as_secs_f64() * 2.0 / 3.0).min(10.0)),
        )?;
        let retry_period = secs(
            "retry-period-seconds",
            retry_period.unwrap_or((renew_deadline.as_secs_f64() / 5.0).min(2.0)),
        )?;
        anyhow::ensure!(
            lease_duration > renew_deadline,
            "--lease-duration-seconds ({lease_duration:?}) must be greater than --renew-deadline-seconds ({renew_deadline:?})"
        );
        anyhow::ensure!(
            renew_deadline > retry_period.mul_f64(1.2),
            "--renew-deadline-seconds ({renew_deadline:?}) must be greater than 1.2 × --retry-period-seconds ({retry_period:?})"
        );
        Ok(Timing {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }
}

/// What the last attempt found.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// This replica holds the Lease (acquired or renewed).
    Held,
    /// Another replica holds it and was seen renewing within the lease duration.
    HeldByOther(String),
    /// Another replica wrote first (a conflict); try again.
    Lost,
}

/// This replica's view of the Lease.
pub(crate) struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// resourceVersion of the record last seen, and when (local clock) it was first seen.
    observed: Option<(String, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX)
}

impl Elector {
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Elector {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: None,
        }
    }

    /// Notes the record's resourceVersion; the local time it changed starts its expiry.
    fn observe(&mut self, lease: &Lease) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, Instant::now()));
        }
    }

    /// One try to acquire or renew the Lease (client-go's `tryAcquireOrRenew`).
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let Some(lease) = self.leases.get_opt(&self.name).await? else {
            let mut lease = Lease::default();
            lease.metadata.name = Some(self.name.clone());
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds(self.timing.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            });
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if !holder.is_empty() && holder != self.identity {
            let duration = spec
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(self.timing.lease_duration);
            let seen = self.observed.as_ref().map(|(_, at)| *at);
            if seen.is_some_and(|at| at.elapsed() < duration) {
                return Ok(Attempt::HeldByOther(holder));
            }
        }
        let taking = holder != self.identity;
        let transitions = spec.lease_transitions.unwrap_or(0);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": seconds(self.timing.lease_duration),
                "renewTime": now(),
                "acquireTime": if taking { Some(now()) } else { spec.acquire_time },
                "leaseTransitions": if taking { transitions + 1 } else { transitions },
            }
        });
        match self
            .leases
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(renewed) => {
                self.observe(&renewed);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
            Err(e) => Err(e),
        }
    }

    /// One attempt, given up (its request cancelled) at `deadline`.
    async fn attempt_until(&mut self, deadline: Instant, failing: &mut bool) -> Option<Attempt> {
        match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
            Ok(Ok(attempt)) => {
                if std::mem::take(failing) {
                    info!(lease = %self.name, "the Lease is reachable again");
                }
                Some(attempt)
            }
            Ok(Err(e)) => {
                if !std::mem::replace(failing, true) {
                    warn!(lease = %self.name, error = %e, "reading or writing the leader Lease failed; retrying");
                } else {
                    debug!(lease = %self.name, error = %e, "the leader Lease is still unreachable");
                }
                None
            }
            Err(_) => {
                if !std::mem::replace(failing, true) {
                    warn!(lease = %self.name, "the apiserver did not answer about the leader Lease in time; retrying");
                }
                None
            }
        }
    }

    /// Returns once this replica holds the Lease, with when the winning request was sent.
    pub(crate) async fn acquire(&mut self) -> Instant {
        let poll = self.timing.retry_period.min(CANDIDATE_POLL);
        let mut failing = false;
        let mut standing_by_for = None;
        loop {
            let sent = Instant::now();
            match self
                .attempt_until(sent + self.timing.renew_deadline, &mut failing)
                .await
            {
                Some(Attempt::Held) => return sent,
                Some(Attempt::HeldByOther(holder)) => {
                    if standing_by_for.as_ref() != Some(&holder) {
                        info!(%holder, "another replica leads; standing by");
                        standing_by_for = Some(holder);
                    }
                }
                Some(Attempt::Lost) | None => {}
            }
            tokio::time::sleep_until(sent + poll).await;
        }
    }

    /// Renews the Lease every retry period; returns once a renewal did not succeed within the
    /// renew deadline (counted from `renewed`, when the last successful one was sent) or another
    /// replica holds the Lease.
    pub(crate) async fn hold(&mut self, mut renewed: Instant) {
        let mut failing = false;
        loop {
            let deadline = renewed + self.timing.renew_deadline;
            tokio::time::sleep_until((Instant::now() + self.timing.retry_period).min(deadline))
                .await;
            let sent = Instant::now();
            if sent >= deadline {
                warn!(lease = %self.name, deadline = ?self.timing.renew_deadline, "could not renew the leader Lease within the renew deadline");
                return;
            }
            match self.attempt_until(deadline, &mut failing).await {
                Some(Attempt::Held) => renewed = sent,
                Some(Attempt::HeldByOther(holder)) => {
                    warn!(%holder, "another replica holds the leader Lease");
                    return;
                }
                Some(Attempt::Lost) | None => {}
            }
        }
    }

    /// Gives the Lease up if this replica holds it, so that a standby takes it at once.
    pub(crate) async fn release(&mut self) {
        let result = async {
            let Some(lease) = self.leases.get_opt(&self.name).await? else {
                return Ok(());
            };
            let holder = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref());
            if holder != Some(self.identity.as_str()) {
                return Ok(());
            }
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": null, "renewTime": now()},
            });
            self.leases
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.timing.renew_deadline, result).await {
            Ok(Ok(())) => info!(identity = %self.identity, "released the leader lease"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the leader Lease; a standby takes over at its expiry")
            }
            Err(_) => {
                warn!("releasing the leader Lease timed out; a standby takes over at its expiry")
            }
        }
    }
}

/// The Lease a replica is a candidate for, and as whom.
pub(crate) struct Candidacy {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// Lease duration, renew deadline and retry period.
    pub timing: Timing,
}

/// Waits for the Lease, runs `controller()` while holding it, stands by otherwise; releases the
/// Lease when the controller ends (shutdown).
pub(crate) async fn run_as_candidate<F, C>(
    client: Client,
    candidacy: Candidacy,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    mut controller: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> C,
    C: std::future::Future<Output = anyhow::Result<()>>,
{
    let Candidacy {
        namespace,
        name,
        identity,
        timing,
    } = candidacy;
    let mut elector = Elector::new(client, &namespace, &name, &identity, timing);
    info!(lease = %name, %namespace, %identity, ?timing, "waiting for the leader lease");
    loop {
        metrics.set_ready(true); // standing by is ready
        let renewed = tokio::select! {
            sent = elector.acquire() => sent,
            () = shutdown.requested() => return Ok(()),
        };
        info!(%identity, "became leader; starting the controller");
        metrics.set_ready(false);
        let running = controller();
        // Losing the Lease drops the controller future here: the reconciles in flight stop at
        // once, their requests cancelled.
        let ended = tokio::select! {
            r = running => Some(r),
            () = elector.hold(renewed) => None,
        };
        metrics.set_channel_counter(None);
        metrics.watches_stopped();
        match ended {
            Some(result) => {
                elector.release().await;
                return result;
            }
            None => warn!(%identity, "lost the leader lease; stopping the controller"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_defaults_follow_client_go_and_shrink_with_a_short_lease() {
        let t = Timing::from_flags(15.0, None, None).unwrap();
        assert_eq!(
            (t.lease_duration, t.renew_deadline, t.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        let short = Timing::from_flags(3.0, None, None).unwrap();
        assert_eq!(short.renew_deadline, Duration::from_secs(2));
        assert_eq!(short.retry_period, Duration::from_millis(400));
        assert!(Timing::from_flags(10.0, Some(10.0), None).is_err());
        assert!(Timing::from_flags(15.0, Some(10.0), Some(9.0)).is_err());
        assert!(Timing::from_flags(0.0, None, None).is_err());
    }
}
