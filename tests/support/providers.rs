//! The provider tests' factory: `Providers` configured by the flags a user passes to
//! `channel-operator controller`, parsed by the same clap arguments.

use channel_operator::providers::{ProviderArgs, Providers};
use clap::Parser;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    providers: ProviderArgs,
}

/// The providers `flags` configure (e.g. `["--facebook-app-id", "app-1", ...]`).
pub fn providers(flags: &[&str]) -> Providers {
    let argv = std::iter::once("channel-operator").chain(flags.iter().copied());
    Providers::new(&Flags::parse_from(argv).providers).expect("the providers of valid flags")
}

/// The providers with the Facebook app `app-1` (secret `app_secret`) and the Graph API at
/// `graph_url`, and `more` flags.
pub fn graph_providers(graph_url: &str, app_secret: &str, more: &[&str]) -> Providers {
    let mut flags = vec![
        "--facebook-app-id",
        "app-1",
        "--facebook-app-secret",
        app_secret,
        "--facebook-graph-url",
        graph_url,
    ];
    flags.extend(more);
    providers(&flags)
}
