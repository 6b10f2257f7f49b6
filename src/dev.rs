//! `channel-operator dev`: the sandbox, the controller and the API in one process.

/// Flags of `channel-operator dev`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Where to write the kubeconfig for the sandbox.
    #[arg(long, default_value = "./.channel-operator/kubeconfig")]
    pub kubeconfig: std::path::PathBuf,
    /// Address of the channels HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api_addr: std::net::SocketAddr,
}

/// Runs until Ctrl-C.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("dev is not built yet (issue 2)")
}
