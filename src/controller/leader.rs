//! Leader election over a coordination.k8s.io Lease (kube-lease-manager), with a hand-over that
//! does not wait for the Lease to expire.
//!
//! A leader that shuts down releases the Lease (clears its holder) after its last reconcile. A
//! standby re-reads the Lease twice a second: once it has no holder, the standby takes it at once
//! instead of sleeping until the old term would have expired (kube-lease-manager keeps the holder
//! it last saw until then, so the standby starts over with a fresh manager).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use std::sync::Arc;

use tracing::{info, warn};

use super::{run_controller, Args, Shutdown};
use crate::metrics::Metrics;
use crate::providers::Providers;

/// How often a standby looks whether the Lease was released.
const RELEASE_POLL: Duration = Duration::from_millis(500);

/// This replica's candidacy.
pub(crate) struct Candidate {
    manager: LeaseManager,
    client: Client,
    leases: Api<Lease>,
    lease_name: String,
    identity: String,
    duration: u64,
}

impl Candidate {
    pub(crate) async fn new(client: Client, args: &Args, identity: &str) -> anyhow::Result<Self> {
        let duration = args.lease_duration_seconds.max(2);
        let manager = Self::manager(&client, args, identity, duration).await?;
        Ok(Candidate {
            manager,
            leases: Api::namespaced(client.clone(), &args.lease_namespace),
            client,
            lease_name: args.lease_name.clone(),
            identity: identity.to_owned(),
            duration,
        })
    }

    async fn manager(
        client: &Client,
        args: &Args,
        identity: &str,
        duration: u64,
    ) -> anyhow::Result<LeaseManager> {
        Ok(LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&args.lease_namespace)
            .with_identity(identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await?)
    }

    /// Returns once this replica holds the Lease.
    pub(crate) async fn acquire(&mut self, args: &Args) -> anyhow::Result<()> {
        loop {
            let released = tokio::select! {
                leader = self.manager.changed() => if leader? { return Ok(()) } else { false },
                () = self.released() => true,
            };
            if released {
                // Released by its holder: take it now rather than at its old expiry.
                self.manager =
                    Self::manager(&self.client, args, &self.identity, self.duration).await?;
            }
        }
    }

    /// Renews the Lease; returns when it is lost.
    pub(crate) async fn hold(&self) -> anyhow::Result<()> {
        while self.manager.changed().await? {}
        Ok(())
    }

    /// Gives the Lease up if this replica holds it (a standby may take it at once).
    pub(crate) async fn release(&self) {
        if let Err(e) = self.manager.release().await {
            warn!(error = %e, "could not release the leader Lease; a standby takes over at its expiry");
        }
    }

    /// Resolves when the Lease exists without a holder.
    async fn released(&self) {
        loop {
            tokio::time::sleep(RELEASE_POLL).await;
            if let Ok(Some(lease)) = self.leases.get_opt(&self.lease_name).await {
                let holder = lease.spec.and_then(|s| s.holder_identity);
                if holder.is_none_or(|h| h.is_empty()) {
                    return;
                }
            }
        }
    }
}

/// Waits for the Lease, runs the controller while holding it, stands by otherwise; releases the
/// Lease when the controller ends.
pub(crate) async fn run_as_candidate(
    client: Client,
    args: Args,
    providers: Providers,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let identity = args.identity();
    let mut candidate = Candidate::new(client.clone(), &args, &identity).await?;
    info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting for the leader lease");
    loop {
        metrics.set_ready(true); // standing by is ready
        tokio::select! {
            acquired = candidate.acquire(&args) => acquired?,
            () = shutdown.requested() => return Ok(()),
        }
        info!(%identity, "became leader; starting the controller");
        metrics.set_ready(false);
        let controller = run_controller(
            client.clone(),
            args.clone(),
            providers.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        let ended = tokio::select! {
            r = controller => Some(r),
            lost = candidate.hold() => {
                lost?;
                None
            }
        };
        metrics.set_channel_counter(None);
        metrics.watches_stopped();
        match ended {
            Some(result) => {
                candidate.release().await;
                info!(%identity, "released the leader lease");
                return result;
            }
            None => warn!(%identity, "lost the leader lease; stopping the controller"),
        }
    }
}
