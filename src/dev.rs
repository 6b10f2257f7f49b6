//! `channel-operator dev`: the sandbox, the controller and the API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use kube::CustomResourceExt as _;

use crate::sandbox::Sandbox;

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
    sandbox.write_kubeconfig(&args.kubeconfig)?;
    Ok(Dev {
        sandbox,
        kubeconfig: args.kubeconfig.clone(),
    })
}

/// Runs until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dev = start(&args).await?;
    let shown = std::path::absolute(&dev.kubeconfig).unwrap_or_else(|_| dev.kubeconfig.clone());
    println!(
        "Kubernetes API sandbox listening on {} (in memory; everything is lost on exit)",
        dev.sandbox.url()
    );
    println!("kubeconfig written to {}", shown.display());
    println!("try: kubectl --kubeconfig {} get channels", shown.display());
    // Hook point: the lead starts the controller (crate::controller::run_with_client with
    // dev.sandbox.client()) and the HTTP API (crate::api::serve on --api-addr) here, as tasks
    // that are aborted on shutdown below.
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("shutting down");
    dev.sandbox.shutdown().await;
    Ok(())
}
