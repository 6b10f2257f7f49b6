//! The Channel controller: connects and disconnects channels with their providers.

/// Flags of `channel-operator controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub providers: crate::providers::ProviderArgs,
}

/// Runs the controller until it is stopped.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the controller is not built yet (issue 3)")
}
