//! The Channel controller: connects and disconnects channels with their providers.
//!
//! Built on `kube::runtime::Controller`: level-triggered reconciles of every Channel, re-triggered by
//! the Secrets it owns, by the credentials Secrets it references, and by the deletion of the owner
//! of a duplicated source channel id. See `plan` for the decisions (one step from the Channel and
//! what was observed), [`reconcile`] for what observes and executes them (`connect` and `undo`
//! for the steps that connect and undo, `adopt` for the adoption of what Airy Core made),
//! `record` and `entries` for what the operator records of its provider effects in the state
//! namespace, `in_use` for the protection of configurations in use, [`watch`] for what triggers
//! reconciles, `index` for what the controller keeps of each Channel (digests and a few facts,
//! not the object), `feed` for how due Channels reach the Controller (which reads each one from
//! the API server when its reconcile starts), `slots` for the per-source shares of the reconcile
//! slots, `leader` for leader election; the graceful shutdown is [`crate::runtime::Shutdown`]'s.

mod adopt;
mod connect;
mod context;
mod credentials;
mod entries;
mod error;
mod events;
mod feed;
mod guarded;
mod in_use;
mod index;
pub mod leader;
pub mod logic;
mod plan;
mod provider_config_health;
mod provider_config_status;
pub mod provider_configs;
pub mod reconcile;
mod record;
#[cfg(test)]
mod scenarios;
mod secrets;
mod slots;
mod status;
mod undo;
pub mod watch;

pub use record::name as record_name;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::crd::Channel;
use crate::metrics::{ChannelLabels, Metrics};
use crate::providers::{ProviderArgs, Providers};
use crate::runtime::{AbortOnDrop, Shutdown};
use watch::SecretAccess;

/// Flags of `channel-operator controller`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "controller")]
pub struct Args {
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// The chat plugin's name in channel ids: chat_plugin (the original API) or chatplugin (Airy
    /// Core since March 2021). The API must be given the same.
    #[arg(long, env = "CHATPLUGIN_NAMING", value_enum, default_value_t)]
    pub chatplugin_naming: crate::naming::ChatPluginNaming,
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
    /// The operator's namespace: where the leader-election Lease is (and, by default, the state
    /// namespace), whose Channels may use the flags' provider accounts, and where a
    /// ClusterProviderConfig's Secrets are read. `--lease-namespace` is an alias.
    #[arg(
        long,
        alias = "lease-namespace",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    pub operator_namespace: String,
    /// The namespace of the operator's private state, which neither tenants nor the API's
    /// identity may read: the claims of channel ids, each Channel's record of what it did at its
    /// provider (with the tokens its undo needs), the entries of shared provider effects.
    /// Default: the operator's namespace.
    #[arg(long, env = "STATE_NAMESPACE")]
    pub state_namespace: Option<String>,
    /// Identity of this replica in the Lease (default: the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Upper bound of the retry backoff, in seconds.
    #[arg(long, env = "MAX_BACKOFF_SECONDS", default_value_t = 300)]
    pub max_backoff_seconds: u64,
    /// First retry delay, in milliseconds (doubles per failure).
    #[arg(long, env = "MIN_BACKOFF_MILLIS", default_value_t = 1000, hide = true)]
    pub min_backoff_millis: u64,
    /// Seconds a standby waits, after it last saw the leader renew the Lease, before taking it
    /// (the time a crashed or partitioned leader blocks a standby).
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15.0)]
    pub lease_duration_seconds: f64,
    /// Seconds the leader keeps reconciling without a successful renewal; then it stops at once
    /// and stands by. Default 10 (two thirds of a shorter lease duration); less than the lease
    /// duration.
    #[arg(long, env = "RENEW_DEADLINE_SECONDS")]
    pub renew_deadline_seconds: Option<f64>,
    /// Seconds between the leader's renewals and a candidate's attempts. Default 2 (a fifth of a
    /// shorter renew deadline).
    #[arg(long, env = "RETRY_PERIOD_SECONDS")]
    pub retry_period_seconds: Option<f64>,
    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32, hide = true)]
    pub concurrency: u16,
    /// Comma-separated namespaces where the controller reads, watches (metadata only) and writes
    /// Secrets; `*` means every namespace. Default: the watch namespace, else `*`.
    #[arg(long, env = "SECRET_NAMESPACES", value_delimiter = ',')]
    pub secret_namespaces: Vec<String>,
    /// Comma-separated namespaces besides the operator's own (POD_NAMESPACE) whose Channels may
    /// use the provider accounts of the flags (the implicit ClusterProviderConfig `default`,
    /// replaced by a real one of that name). Default: none.
    #[arg(long, env = "DEFAULT_PROVIDER_NAMESPACES", value_delimiter = ',')]
    pub default_provider_namespaces: Vec<String>,
    /// Reconciles of one source that may be at its provider at once.
    #[arg(long, env = "PROVIDER_CONCURRENCY", default_value_t = 8)]
    pub provider_concurrency: usize,
    /// /readyz fails once the Channel watch has not been healthy for this many seconds.
    #[arg(long, env = "WATCH_UNHEALTHY_SECONDS", default_value_t = 60)]
    pub watch_unhealthy_seconds: u64,
    /// On SIGTERM/SIGINT, how long running reconciles may take to finish, in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 20)]
    pub shutdown_timeout_seconds: u64,
    /// Days before a token expires (or its data access does) from which its Channel reports
    /// CredentialsHealthy=False, reason ExpiringSoon (its Ready condition stays True).
    #[arg(long, env = "CREDENTIALS_WARNING_DAYS", default_value_t = crate::credentials_health::DEFAULT_WARNING_DAYS)]
    pub credentials_warning_days: u64,
    /// Seconds between sweeps of the index for Channels without a status for their generation,
    /// and between checks of the provider configurations' accounts.
    #[arg(long, env = "SWEEP_SECONDS", default_value_t = 30, hide = true)]
    pub sweep_seconds: u64,
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

    /// Lease duration, renew deadline and retry period from the flags (checked).
    pub fn lease_timing(&self) -> anyhow::Result<leader::Timing> {
        leader::Timing::from_flags(
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds,
        )
    }

    /// Whom the provider accounts of the flags admit: the operator's namespace and the listed ones.
    pub fn flags_default(&self) -> crate::provider_config::FlagsDefault {
        crate::provider_config::FlagsDefault {
            operator_namespace: self.operator_namespace.clone(),
            namespaces: self
                .default_provider_namespaces
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The state namespace: `--state-namespace`, else the operator's namespace.
    pub fn state_namespace(&self) -> String {
        self.state_namespace
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.operator_namespace)
            .to_owned()
    }

    /// Where Secrets are read, watched and written.
    pub fn secret_access(&self) -> SecretAccess {
        SecretAccess::from_flags(&self.secret_namespaces, &self.namespace)
    }
}

/// Runs the controller against the cluster of the current kubeconfig or service account, until
/// SIGTERM or SIGINT (then shuts down gracefully).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    let client = Client::try_default().await?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    run_until(client, args, listener, shutdown).await
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
    run_until(client, args, listener, Shutdown::new()).await
}

/// Like [`run_with_listener`], returning after a graceful shutdown once `shutdown` is triggered:
/// no new reconciles, running ones finish (within `--shutdown-timeout-seconds`), the Lease is
/// released.
pub async fn run_until(
    client: Client,
    args: Args,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::with_watch_unhealthy_limit(Duration::from_secs(
        args.watch_unhealthy_seconds.max(1),
    )));
    let server = AbortOnDrop(tokio::spawn(crate::metrics::serve(
        metrics.clone(),
        listener,
    )));
    let providers = Providers::new(&args.providers)?;
    let result = if args.leader_election {
        let candidacy = leader::Candidacy {
            namespace: args.operator_namespace.clone(),
            name: args.lease_name.clone(),
            identity: args.identity(),
            timing: args.lease_timing()?,
        };
        let controller = || {
            run_controller(
                client.clone(),
                args.clone(),
                providers.clone(),
                metrics.clone(),
                shutdown.clone(),
            )
        };
        leader::run_as_candidate(
            client.clone(),
            candidacy,
            metrics.clone(),
            shutdown.clone(),
            controller,
        )
        .await
    } else {
        run_controller(client, args, providers, metrics, shutdown).await
    };
    drop(server);
    result
}

/// Runs the Channel controller (as leader, or without leader election) until `shutdown`.
pub async fn run_controller(
    client: Client,
    args: Args,
    providers: Providers,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let channels: Api<Channel> = if args.namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &args.namespace)
    };
    // The index of the Channels (compact; the reconcile reads each Channel when it runs) and the
    // Controller's store, which holds only the Channels handed to it (`feed`).
    let (store, writer) = feed::channel_store(2 * usize::from(args.concurrency.max(1)));
    let (slots, turns) = slots::SourceSlots::new(args.provider_concurrency);
    let (provider_configs, config_writers) =
        provider_configs::ProviderConfigs::new(providers.clone(), args.flags_default());
    let config_triggers = provider_configs.triggers(
        client.clone(),
        &args.namespace,
        config_writers,
        store.clone(),
        metrics.clone(),
    );
    let provider_configs = Arc::new(provider_configs);
    let secret_access = args.secret_access();
    let triggers = futures::future::join4(
        watch::channel_triggers(channels, writer, store.clone(), metrics.clone()),
        watch::sweep(
            store.clone(),
            Duration::from_secs(args.sweep_seconds.max(1)),
        ),
        watch::secret_triggers(
            watch::secret_changes(client.clone(), &secret_access, metrics.clone()),
            store.clone(),
        ),
        config_triggers,
    );
    let shutdown_requested = shutdown.clone();
    let handed = futures::stream::select(store.handed(), slots.turns(turns, store.clone()));
    let controller = Controller::for_stream(handed.map(Ok), store.reader().clone())
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .graceful_shutdown_on(async move { shutdown_requested.requested().await });

    let (min_backoff, max_backoff) = backoff_bounds(&args);
    let config = reconcile::Config {
        min_backoff,
        max_backoff,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        secret_access: secret_access.clone(),
        naming: args.chatplugin_naming,
        state_namespace: args.state_namespace(),
        credentials_warning: Duration::from_secs(args.credentials_warning_days * 86_400),
    };
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        providers,
        reconcile::EventPublisher::new(client.clone(), args.identity()),
        metrics.clone(),
        store.clone(),
        config,
        provider_configs.clone(),
    ));

    let counter_store = store.clone();
    metrics.set_channel_counter(Some(Arc::new(move || count_channels(&counter_store))));
    let attention_store = store.clone();
    metrics.set_channel_credentials(Some(Arc::new(move || {
        channel_credentials(&attention_store)
    })));
    // Readiness follows the index's initial list (which readies the Controller's store). The
    // store's ready signal wakes only the last waiter, and the Controller waits on it too:
    // waiting in the same task (select! below) means whichever registers last wakes both.
    let ready_store = store.reader().clone();
    let ready_metrics = metrics.clone();
    let ready_shutdown = shutdown.clone();
    let ready = async move {
        if ready_store.wait_until_ready().await.is_ok() {
            info!("the Channel cache has synced; ready");
            ready_metrics.set_ready(true);
        }
        ready_shutdown.requested().await;
        ready_metrics.set_ready(false);
        futures::future::pending::<()>().await
    };
    info!(namespace = %if args.namespace.is_empty() { "<all>" } else { &args.namespace }, secrets = ?secret_access, "starting the Channel controller");
    let reconciles = store.clone();
    let missing = store.clone();
    let run = controller
        .run(
            move |r, ctx| {
                let (slots, store) = (slots.clone(), reconciles.clone());
                async move {
                    let key = feed::key_of_ref(&r);
                    let result = match store.start(&key) {
                        Some((key, source)) => {
                            let calls_out = ctx.providers.for_source(source).calls_out();
                            slots
                                .run(&key, source, calls_out, || {
                                    reconcile::reconcile_on_demand(r, ctx)
                                })
                                .await
                        }
                        // Gone from the index: deleted.
                        None => Ok(kube::runtime::controller::Action::await_change()),
                    };
                    store.finish(&key);
                    result
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(move |res| {
            match res {
                Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                    // A requeue (a retry, a re-check) of a Channel the Controller's store let go
                    // since: due again.
                    let key = index::key(obj.namespace.as_deref().unwrap_or_default(), &obj.name);
                    debug!(object = %key, "requeued; due again");
                    missing.mark_due([key.as_str()]);
                }
                Err(e) => debug!("reconcile failed: {e}"),
                Ok(_) => {}
            }
            std::future::ready(())
        });
    let readiness = provider_config_status::report(
        client.clone(),
        provider_configs,
        secret_access.clone(),
        args.state_namespace(),
        (
            Duration::from_secs(args.sweep_seconds.max(1)),
            Duration::from_secs(args.resync_seconds.max(1)),
        ),
        metrics.clone(),
    );
    let timeout = Duration::from_secs(args.shutdown_timeout_seconds);
    let overdue = async {
        shutdown.requested().await;
        info!("no new reconciles; waiting for the running ones");
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        () = run => {}
        _ = triggers => {}
        () = ready => {}
        () = readiness => {}
        () = overdue => warn!(timeout_seconds = timeout.as_secs(), "reconciles still running at the shutdown timeout; stopping them"),
    }
    metrics.set_channel_counter(None);
    metrics.set_channel_credentials(None);
    metrics.set_config_credentials(Vec::new());
    Ok(())
}

/// The Channels whose credentials need attention, as the index keeps them.
fn channel_credentials(store: &feed::ChannelStore) -> Vec<crate::credentials_health::Attention> {
    let mut out = Vec::new();
    store.for_each(|key, e| {
        if let Some(c) = &e.credentials {
            let (namespace, name) = index::split(key);
            out.push(crate::credentials_health::Attention {
                kind: "Channel",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: e.source.as_str().to_owned(),
                health: c.0,
                expires_at: c.1,
            });
        }
    });
    out
}

fn count_channels(store: &feed::ChannelStore) -> Vec<(ChannelLabels, i64)> {
    let mut counts = std::collections::BTreeMap::<(&'static str, &'static str), i64>::new();
    store.for_each(|_, e| {
        if let Some(state) = e.metric {
            *counts
                .entry((e.source.as_str(), state.as_str()))
                .or_default() += 1;
        }
    });
    counts
        .into_iter()
        .map(|((source, state), n)| {
            (
                ChannelLabels {
                    source: source.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_operator_namespace_is_also_taken_as_the_lease_namespace() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).unwrap().operator_namespace;
        assert_eq!(parse(&["controller", "--operator-namespace", "ops"]), "ops");
        assert_eq!(parse(&["controller", "--lease-namespace", "ops"]), "ops");
    }

    #[test]
    fn the_state_namespace_defaults_to_the_operator_namespace() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).unwrap().state_namespace();
        assert_eq!(parse(&["controller", "--operator-namespace", "ops"]), "ops");
        let own = [
            "controller",
            "--operator-namespace",
            "ops",
            "--state-namespace",
            "ops-state",
        ];
        assert_eq!(parse(&own), "ops-state");
    }
}
