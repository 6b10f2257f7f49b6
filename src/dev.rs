//! `channel-operator dev`: the sandbox, the controller and the API in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser as _;
use kube::CustomResourceExt as _;

use kube_sandbox::Sandbox;

/// Flags of `channel-operator dev`.
#[derive(clap::Parser, Clone, Debug)]
pub struct Args {
    /// Where to write the kubeconfig for the sandbox.
    #[arg(long, default_value = "./.channel-operator/kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Address of the channels HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Address of the in-memory Kubernetes API sandbox (port 0: the OS picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sandbox_addr: SocketAddr,
    /// Address of the controller's metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
    /// The chat plugin's name in channel ids and answers, for the controller and the API.
    #[arg(long, env = "CHATPLUGIN_NAMING", value_enum, default_value_t)]
    pub chatplugin_naming: crate::naming::ChatPluginNaming,

    /// Serve only the sandbox (with the Channel CRD) and write its kubeconfig: no controller, no
    /// API. For running your own `controller` and `api` against it, e.g. from the container image.
    #[arg(long)]
    pub sandbox_only: bool,
    #[command(flatten)]
    pub providers: crate::providers::ProviderArgs,
}

/// A started dev environment: the sandbox with the Channel CRD and its kubeconfig.
pub struct Dev {
    pub sandbox: Sandbox,
    pub kubeconfig: PathBuf,
}

/// Starts the sandbox on `--sandbox-addr`, installs the Channel CRD and writes the kubeconfig.
pub async fn start(args: &Args) -> anyhow::Result<Dev> {
    anyhow::ensure!(
        args.sandbox_addr.ip().is_loopback(),
        "--sandbox-addr must be a loopback address (the sandbox has no authentication)"
    );
    let listener = tokio::net::TcpListener::bind(args.sandbox_addr)
        .await
        .with_context(|| format!("binding --sandbox-addr {}", args.sandbox_addr))?;
    let sandbox = Sandbox::serve(listener)?;
    sandbox
        .install_crd(&crate::crd::Channel::crd())
        .await
        .context("installing the Channel CRD")?;
    for crd in crate::provider_config::crds() {
        sandbox
            .install_crd(&crd)
            .await
            .context("installing the provider configuration CRDs")?;
    }
    sandbox.write_kubeconfig(&args.kubeconfig)?;
    Ok(Dev {
        sandbox,
        kubeconfig: args.kubeconfig.clone(),
    })
}

/// Fails when `path` is a kubeconfig whose server still answers, such as the one another
/// `channel-operator dev` wrote and still serves: overwriting it would silently point that
/// instance's users at this sandbox. A missing file, one that is not a kubeconfig, or one whose
/// server is gone (a dev that was stopped) is fine to overwrite.
async fn refuse_live_kubeconfig(path: &Path) -> anyhow::Result<()> {
    let Ok(config) = kube::config::Kubeconfig::read_from(path) else {
        return Ok(());
    };
    let current = config.current_context.as_deref();
    let cluster = config
        .contexts
        .iter()
        .find(|c| Some(c.name.as_str()) == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.as_str());
    let Some(server) = config
        .clusters
        .iter()
        .find(|c| Some(c.name.as_str()) == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
    else {
        return Ok(());
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    // Any HTTP answer, even 401/403, means a server still uses this kubeconfig; so does one that
    // accepted the connection but was too busy to answer. Only a refused connection means gone.
    let answered = match http.get(format!("{server}/version")).send().await {
        Ok(_) => true,
        Err(e) => !e.is_connect(),
    };
    if answered {
        anyhow::bail!(
            "{} belongs to a Kubernetes API that is still running at {server} (another \
             `channel-operator dev`?); stop that one, or give this one its own file with \
             --kubeconfig PATH",
            path.display()
        );
    }
    Ok(())
}

/// Runs until Ctrl-C: the sandbox, the controller (no leader election) and the HTTP API.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // A kubeconfig still in use by another dev is the first thing to refuse: its ports would be
    // the next conflict, and the message would not say that the file is the problem.
    refuse_live_kubeconfig(&args.kubeconfig).await?;
    if args.sandbox_only {
        return run_sandbox_only(&args).await;
    }
    // Bind the product's ports first, so a port in use fails before anything starts.
    let api_listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("binding --api-addr {}", args.api_addr))?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-addr {}", args.metrics_addr))?;
    let api_url = format!("http://{}", api_listener.local_addr()?);
    let metrics_url = format!("http://{}", metrics_listener.local_addr()?);

    let shutdown = crate::runtime::Shutdown::on_signals().context("handling Ctrl-C")?;
    let dev = start(&args).await?;
    let shown = std::path::absolute(&dev.kubeconfig).unwrap_or_else(|_| dev.kubeconfig.clone());

    let mut controller_args = crate::controller::Args::parse_from(["controller"]);
    controller_args.leader_election = false;
    controller_args.providers = args.providers.clone();
    controller_args.chatplugin_naming = args.chatplugin_naming;
    let mut controller = tokio::spawn(crate::controller::run_until(
        dev.sandbox.client(),
        controller_args,
        metrics_listener,
        shutdown.clone(),
    ));

    let mut api_args = crate::api::Args::parse_from(["api"]);
    api_args.channels_namespace = Some("default".to_owned());
    api_args.providers = args.providers.clone();
    api_args.chatplugin_naming = args.chatplugin_naming;
    let mut api = tokio::spawn(crate::api::serve_until(
        dev.sandbox.client(),
        api_args,
        api_listener,
        shutdown.clone(),
    ));

    // Announce the addresses only once both answer /readyz, so the printed commands work at once.
    let readiness = async {
        wait_ready(&format!("{metrics_url}/readyz")).await?;
        wait_ready(&format!("{api_url}/readyz")).await
    };
    tokio::select! {
        ready = readiness => ready?,
        ended = &mut controller => return ended_early(&shutdown, "controller", ended),
        ended = &mut api => return ended_early(&shutdown, "channels API", ended),
    }

    announce_sandbox(&dev, &shown);
    println!("controller running; metrics on {metrics_url}/metrics");
    println!("channels API listening on {api_url}");
    println!(
        "try: curl -s -X POST {api_url}/channels.chatplugin.connect -H 'Content-Type: application/json' -d '{{\"name\":\"website-identifier-42\"}}'"
    );
    println!("try: kubectl --kubeconfig {} get channels", shown.display());

    // Ctrl-C: the controller and the API shut down as in a cluster (running reconciles and
    // requests in flight finish), then the sandbox stops.
    let outcome = tokio::select! {
        biased; // both stop after a shutdown request: that is not a failure
        () = shutdown.requested() => Ok(()),
        ended = &mut controller => ended_early(&shutdown, "controller", ended),
        ended = &mut api => ended_early(&shutdown, "channels API", ended),
    };
    println!("shutting down");
    for task in [&mut controller, &mut api] {
        if outcome.is_err() {
            task.abort();
        } else if !task.is_finished() {
            // Still draining; one that ended (and was awaited above) is not polled again.
            let _ = task.await;
        }
    }
    dev.sandbox.shutdown().await;
    outcome
}

/// `dev --sandbox-only`: the sandbox and its kubeconfig until Ctrl-C.
async fn run_sandbox_only(args: &Args) -> anyhow::Result<()> {
    let shutdown = crate::runtime::Shutdown::on_signals().context("handling Ctrl-C")?;
    let dev = start(args).await?;
    let shown = std::path::absolute(&dev.kubeconfig).unwrap_or_else(|_| dev.kubeconfig.clone());
    announce_sandbox(&dev, &shown);
    shutdown.requested().await;
    println!("shutting down");
    dev.sandbox.shutdown().await;
    Ok(())
}

/// The sandbox's address and kubeconfig, as printed by every `dev`.
fn announce_sandbox(dev: &Dev, kubeconfig: &Path) {
    println!(
        "Kubernetes API sandbox listening on {} (in memory; everything is lost on exit)",
        dev.sandbox.url()
    );
    println!("kubeconfig written to {}", kubeconfig.display());
}

/// Polls a readiness URL until it answers 200 (at most 30 seconds).
async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{url} did not become ready within 30 seconds"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The error for a dev component that stopped on its own (they run until aborted).
/// A task that ended before the others: an error, unless it stopped cleanly because the
/// shutdown was requested (a Ctrl-C can wake this before the shutdown branch is looked at).
fn ended_early(
    shutdown: &crate::runtime::Shutdown,
    what: &str,
    ended: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match ended {
        Ok(Ok(())) if shutdown.is_requested() => Ok(()),
        other => Err(task_ended(what, other)),
    }
}

fn task_ended(
    what: &str,
    ended: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Error {
    match ended {
        Ok(Ok(())) => anyhow::anyhow!("the {what} stopped unexpectedly"),
        Ok(Err(e)) => e.context(format!("the {what} failed")),
        Err(e) => anyhow::anyhow!("the {what} crashed: {e}"),
    }
}
