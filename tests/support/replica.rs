//! Controller replicas as child processes — the real binary, as a Deployment runs it — each
//! authenticating as its own sandbox user (so the sandbox can partition one of them), with
//! leader election at its defaults unless the flags say otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_sandbox::Sandbox;

use super::env::Env;
use super::fakes::APP_SECRET;
use super::wait::{consistently, eventually_ok};

/// The Lease the replicas elect their leader with (the default `--lease-name`).
pub const LEASE: &str = "channel-operator";

/// `channel-operator controller` as a process watching `default`, authenticating to `sb` as the
/// user `identity` (also its Lease identity; its kubeconfig is written to `dir`), with `extra`
/// flags and `vars` in its environment. `REPLICA_LOG` sets its `--log-level` (default `warn`).
pub fn spawn_replica(
    sb: &Sandbox,
    dir: &Path,
    identity: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> tokio::process::Child {
    let kubeconfig = dir.join(format!("kubeconfig-{identity}"));
    sb.write_kubeconfig_as(&kubeconfig, identity, &["system:masters"])
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .args([
            "--log-level",
            &std::env::var("REPLICA_LOG").unwrap_or_else(|_| "warn".into()),
            "controller",
            "--namespace",
            "default",
            "--identity",
            identity,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the controller starts")
}

/// The identity holding the Lease in `sb` now (None: no Lease, released, or unreachable).
pub async fn lease_holder(sb: &Sandbox) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(sb.client(), "default");
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits (at most `within`: the assertion is about that time) until `identity` holds the Lease
/// in `sb`; returns when it was first seen holding it.
pub async fn wait_holder(sb: &Sandbox, identity: &str, within: Duration) -> Instant {
    let what = format!("{identity} to hold the Lease");
    eventually_ok(within, what, || async {
        match lease_holder(sb).await {
            Some(h) if h == identity => Ok(Instant::now()),
            holder => Err(format!("holder {holder:?}")),
        }
    })
    .await
}

impl Env {
    /// [`spawn_replica`] with its Facebook provider at the Graph fake and short backoffs.
    pub fn replica(&self, identity: &str, extra: &[&str]) -> tokio::process::Child {
        let graph = format!("{}/v24.0", self.graph.uri());
        let mut args = vec!["--min-backoff-millis", "100", "--max-backoff-seconds", "2"];
        args.extend_from_slice(extra);
        spawn_replica(
            &self.sb,
            self.dir.path(),
            identity,
            &args,
            &[
                ("FACEBOOK_APP_ID", "app-1"),
                ("FACEBOOK_APP_SECRET", APP_SECRET),
                ("FACEBOOK_GRAPH_URL", &graph),
            ],
        )
    }

    /// The identity holding the Lease now (see [`lease_holder`]).
    pub async fn lease_holder(&self) -> Option<String> {
        lease_holder(&self.sb).await
    }

    /// See [`wait_holder`].
    pub async fn wait_holder(&self, identity: &str, within: Duration) -> Instant {
        wait_holder(&self.sb, identity, within).await
    }

    /// Fails the test unless `identity` holds the Lease throughout the next `period`.
    pub async fn holder_stays(&self, identity: &str, period: Duration, why: &str) {
        consistently(period, why, || async {
            self.lease_holder().await.as_deref() == Some(identity)
        })
        .await
    }
}

/// Fails the test if the replica has exited.
pub fn assert_running(replica: &mut tokio::process::Child, what: &str) {
    if let Some(status) = replica.try_wait().unwrap() {
        panic!("the controller exited ({status}) {what}");
    }
}
