//! The Channel controller: connects and disconnects channels with their providers.
//!
//! Built on `kube::runtime::Controller`: level-triggered reconciles of every Channel, re-triggered by
//! the Secrets it owns (the Facebook token Secret), by the credentials Secrets it references, and by
//! the deletion of the owner of a duplicated source channel id. See [`reconcile`] for the decisions.

mod context;
mod error;
mod events;
pub mod logic;
mod plan;
pub mod reconcile;
#[cfg(test)]
mod scenarios;
mod secrets;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{PredicateConfig, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::crd::Channel;
use crate::metrics::{ChannelLabels, Metrics};
use crate::providers::{ProviderArgs, Providers};
use crate::reason::Reason;

/// The field manager and event reporter name.
pub const MANAGER: &str = "channel-operator";

/// Flags of `channel-operator controller`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "controller")]
pub struct Args {
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Seconds after which a connected channel is re-checked at its provider.
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Run only while holding the coordination.k8s.io Lease (two replicas: one active).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "channel-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity of this replica in the Lease (default: the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Upper bound of the retry backoff, in seconds.
    #[arg(long, env = "MAX_BACKOFF_SECONDS", default_value_t = 300)]
    pub max_backoff_seconds: u64,
    /// First retry delay, in milliseconds (doubles per failure).
    #[arg(long, env = "MIN_BACKOFF_MILLIS", default_value_t = 1000, hide = true)]
    pub min_backoff_millis: u64,
    /// Lease duration in seconds (the time a crashed leader blocks a standby).
    #[arg(
        long,
        env = "LEASE_DURATION_SECONDS",
        default_value_t = 15,
        hide = true
    )]
    pub lease_duration_seconds: u64,
    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32, hide = true)]
    pub concurrency: u16,
}

impl Args {
    fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| format!("channel-operator-{}", uuid::Uuid::new_v4()))
    }
}

/// Runs the controller against the cluster of the current kubeconfig or service account.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    run_with_client(client, args).await
}

/// Runs the controller with `client` until the future is dropped (which is safe at any point).
/// Binds `--metrics-addr`.
pub async fn run_with_client(client: Client, args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    run_with_listener(client, args, listener).await
}

/// Like [`run_with_client`], serving /metrics, /healthz and /readyz on `listener`.
pub async fn run_with_listener(
    client: Client,
    args: Args,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let server = AbortOnDrop(tokio::spawn(crate::metrics::serve(
        metrics.clone(),
        listener,
    )));
    let providers = Providers::new(&args.providers)?;
    let result = if args.leader_election {
        run_as_candidate(client, args, providers, metrics).await
    } else {
        run_controller(client, args, providers, metrics).await
    };
    drop(server);
    result
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for the Lease, runs the controller while holding it, stands by otherwise.
async fn run_as_candidate(
    client: Client,
    args: Args,
    providers: Providers,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let identity = args.identity();
    let duration = args.lease_duration_seconds.max(2);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await?;
    let (mut leader, _task) = manager.watch().await;
    info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting for the leader lease");
    loop {
        while !*leader.borrow_and_update() {
            metrics.set_ready(true); // standing by is ready
            leader
                .changed()
                .await
                .map_err(|_| anyhow::anyhow!("the leader election task ended"))?;
        }
        info!(%identity, "became leader; starting the controller");
        metrics.set_ready(false);
        let controller = run_controller(
            client.clone(),
            args.clone(),
            providers.clone(),
            metrics.clone(),
        );
        tokio::pin!(controller);
        let lost = async {
            loop {
                if leader.changed().await.is_err() {
                    return;
                }
                if !*leader.borrow() {
                    return;
                }
            }
        };
        tokio::select! {
            r = &mut controller => return r,
            () = lost => {
                warn!(%identity, "lost the leader lease; stopping the controller");
                metrics.set_channel_counter(None);
            }
        }
    }
}

/// Runs the Channel controller (as leader, or without leader election).
pub async fn run_controller(
    client: Client,
    args: Args,
    providers: Providers,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let (channels, secrets): (Api<Channel>, Api<KubeSecret>) = if args.namespace.is_empty() {
        (Api::all(client.clone()), Api::all(client.clone()))
    } else {
        (
            Api::namespaced(client.clone(), &args.namespace),
            Api::namespaced(client.clone(), &args.namespace),
        )
    };
    // Our own reflector so the cache can drop managedFields (a third of a Channel's size), and
    // only changes the reconcile acts on trigger it: not our own status writes.
    let (store, writer) = reflector::store::<Channel>();
    let channel_events = watcher(channels.clone(), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|c: &mut Channel| c.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());
    let controller = Controller::for_stream(channel_events, store.clone());

    let (min_backoff, max_backoff) = backoff_bounds(&args);
    let config = reconcile::Config {
        min_backoff,
        max_backoff,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
    };
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        providers,
        reconcile::EventPublisher::new(client.clone(), args.identity()),
        metrics.clone(),
        store.clone(),
        config,
    ));

    let counter_store = store.clone();
    metrics.set_channel_counter(Some(Arc::new(move || count_channels(&counter_store))));
    // Readiness follows the Channel cache's initial sync. The store's ready signal wakes only the
    // last waiter, and the Controller waits on it too: waiting in the same task (select! below)
    // means whichever registers last wakes both.
    let ready_store = store.clone();
    let ready_metrics = metrics.clone();
    let ready = async move {
        if ready_store.wait_until_ready().await.is_ok() {
            info!("the Channel cache has synced; ready");
            ready_metrics.set_ready(true);
        }
        futures::future::pending::<()>().await
    };
    let secret_store = store.clone();
    let duplicate_store = store.clone();
    info!(namespace = %if args.namespace.is_empty() { "<all>" } else { &args.namespace }, "starting the Channel controller");
    let run = controller
        .owns(
            secrets.clone(),
            watcher::Config::default()
                .labels("app.kubernetes.io/managed-by=channel-operator")
                .any_semantic(),
        )
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |s: KubeSecret| channels_referencing(&secret_store, &s),
        )
        .watches(
            channels,
            watcher::Config::default().any_semantic(),
            move |c: Channel| duplicates_of_released(&duplicate_store, &c),
        )
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("reconcile failed: {e}");
            }
        });
    tokio::select! {
        () = run => {}
        () = ready => {}
    }
    metrics.set_channel_counter(None);
    Ok(())
}

/// What a reconcile reacts to: the spec (generation), deletion, finalizers and annotations
/// (`airy.co/paused`). Status-only updates (our own writes) do not trigger a reconcile.
fn trigger_hash(ch: &Channel) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ch.metadata.generation.hash(&mut h);
    ch.metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    ch.metadata.finalizers.hash(&mut h);
    ch.metadata.annotations.hash(&mut h);
    Some(h.finish())
}

/// The Channels whose credentialsSecretRef names this Secret.
fn channels_referencing(store: &Store<Channel>, secret: &KubeSecret) -> Vec<ObjectRef<Channel>> {
    let ns = secret.namespace();
    let name = secret.name_any();
    store
        .state_filter(|c| {
            c.spec
                .credentials_secret_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
                && c.namespace() == ns
        })
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// When a Channel is being deleted, the others with its source channel id (one may take over).
fn duplicates_of_released(store: &Store<Channel>, ch: &Channel) -> Vec<ObjectRef<Channel>> {
    if ch.metadata.deletion_timestamp.is_none() {
        return Vec::new();
    }
    store
        .state_filter(|c| {
            c.spec.source == ch.spec.source
                && c.spec.source_channel_id == ch.spec.source_channel_id
                && c.metadata.uid != ch.metadata.uid
        })
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn count_channels(store: &Store<Channel>) -> Vec<(ChannelLabels, i64)> {
    let mut counts = std::collections::BTreeMap::<(String, &'static str), i64>::new();
    for c in store.state() {
        let state = match c.ready_condition() {
            Some(cond) if cond.status == "True" && cond.reason == Reason::Connected => "connected",
            Some(cond) if cond.status == "True" => "disconnected",
            Some(_) => "error",
            None => continue,
        };
        *counts
            .entry((c.spec.source.as_str().to_owned(), state))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((source, state), n)| {
            (
                ChannelLabels {
                    source,
                    state: state.into(),
                },
                n,
            )
        })
        .collect()
}

/// The retry delay bounds from the flags.
fn backoff_bounds(args: &Args) -> (Duration, Duration) {
    let max = Duration::from_secs(args.max_backoff_seconds.max(1));
    let min = Duration::from_millis(args.min_backoff_millis.max(1)).min(max);
    (min, max)
}
