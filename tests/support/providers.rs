//! The provider tests' factory: `Providers` configured by the flags a user passes to
//! `channel-operator controller`, parsed by the same clap arguments.

use channel_operator::crd::Channel;
use channel_operator::providers::{
    ConnectOutcome, Provider, ProviderArgs, ProviderError, Providers,
};
use channel_operator::secret::SecretString;
use clap::Parser;
use futures::future::BoxFuture;

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

/// A provider's calls for a whole connect and a whole disconnect, in the order the controller
/// makes them: the proof, then each of the Channel's effects made; each effect undone with the
/// configuration's current credential or, as the controller's record keeps it, the kept token.
pub trait Lifecycle {
    fn connect<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>>;

    fn disconnect<'a>(
        &'a self,
        channel: &'a Channel,
        kept: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}

impl Lifecycle for dyn Provider + '_ {
    fn connect<'a>(
        &'a self,
        channel: &'a Channel,
        credentials: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ProviderError>> {
        Box::pin(async move {
            let proof = self.prove(channel, credentials).await?;
            for effect in self.effects(channel) {
                self.make(channel, &effect, &proof).await?;
            }
            Ok(proof.outcome)
        })
    }

    fn disconnect<'a>(
        &'a self,
        channel: &'a Channel,
        kept: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            for effect in self.effects(channel) {
                let current = self.current_credential(&effect);
                self.undo(&effect, current.as_ref().or(kept)).await?;
            }
            Ok(())
        })
    }
}
