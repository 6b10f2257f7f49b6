//! The flags of `channel-operator api`.

use std::net::SocketAddr;

use super::limits;
use crate::secret::SecretString;

/// Flags of `channel-operator api`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "api")]
pub struct Args {
    /// Address to serve the API (and /healthz, /readyz, /metrics, /openapi.json) on.
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// Comma-separated namespaces whose Channels the API reads and writes (default: the
    /// channels namespace). A connect for a channel id held by a Channel elsewhere answers 409.
    #[arg(long, env = "API_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Namespace new Channels are created in (default: $POD_NAMESPACE, else "default"); must be
    /// one of `--namespaces`.
    #[arg(long, env = "CHANNELS_NAMESPACE")]
    pub channels_namespace: Option<String>,
    /// How long connect and disconnect wait for the controller's verdict, in seconds.
    #[arg(long, env = "SYNC_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub sync_timeout_seconds: f64,
    /// Comma-separated static bearer tokens. With neither these nor --jwt-secret, auth is off.
    #[arg(
        long,
        env = "API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<SecretString>,
    /// Secret of HS256 JWTs (with a user_id claim) accepted as bearer tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// Seconds a Channel watch may fail (apiserver unreachable) before `/readyz` and every
    /// `channels.*` endpoint answer 503; until then reads are served from the cache. Writes
    /// answer 503 at once while a watch is failing.
    #[arg(long, env = "CACHE_STALE_SECONDS", default_value_t = 60.0)]
    pub cache_stale_seconds: f64,
    /// Comma-separated origins allowed by CORS (with credentials).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// The chat plugin's name in channel ids and answers: chat_plugin (the original API) or
    /// chatplugin (Airy Core since March 2021); the controller must be given the same. List
    /// filters and disconnect paths accept both names either way.
    #[arg(long, env = "CHATPLUGIN_NAMING", value_enum, default_value_t)]
    pub chatplugin_naming: crate::naming::ChatPluginNaming,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub providers: crate::providers::ProviderArgs,
}

impl Args {
    /// The namespace new Channels go to.
    pub fn channels_namespace(&self) -> String {
        self.channels_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The namespaces the API serves, the channels namespace among them.
    pub fn api_namespaces(&self) -> anyhow::Result<Vec<String>> {
        let channels = self.channels_namespace();
        let mut namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if namespaces.is_empty() {
            namespaces.push(channels.clone());
        }
        if let Some(bad) = namespaces.iter().find(|n| !crate::rules::is_namespace(n)) {
            anyhow::bail!("--namespaces: {bad:?} is not a namespace name");
        }
        if !namespaces.contains(&channels) {
            anyhow::bail!(
                "--namespaces must include the channels namespace {channels:?} (where new Channels are created)"
            );
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(namespaces)
    }
}
