//! The channels HTTP API (spec section 3), served from the cluster state.

/// Flags of `channel-operator api`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub providers: crate::providers::ProviderArgs,
}

/// Runs the API server until it is stopped.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the HTTP API is not built yet (issue 4)")
}
