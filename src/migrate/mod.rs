//! `channel-operator migrate`: moves a running Airy Core installation's channels onto Channels,
//! keeping every channel id (docs/migration.md).
//!
//! It reads Airy Core's `channels.list` ([`airy`]), plans one Channel per channel — named
//! `<source>-<source channel id>` ([`names`]), pinning Airy Core's id in `spec.channelId` where it
//! is not the deterministic one, with the page token in a credentials Secret ([`plan`]) — and
//! either prints the Channels (`--dry-run -o yaml`, no cluster needed) or writes them to the
//! cluster of the current kubeconfig (`--apply`, [`apply`]), then reports ([`report`]). It makes
//! no provider call.
//!
//! With `--state-namespace`, it also writes an adoption record per connected Facebook and
//! Instagram channel in the operator's state namespace ([`adopt`]): the admin's word that Airy
//! Core subscribed its app (`--facebook-app-id`) to the page, on which the controller adopts the
//! Channel without a provider call.
//!
//! What it writes carries the label [`MIGRATED_LABEL`] (`"true"`) and the annotation
//! [`MIGRATED_FROM`] (the Airy Core API it was read from): the mark that lets a later run touch
//! it, and what marks a Channel whose provider resources Airy Core set up (`spec.connected` is
//! Airy Core's connected state).

pub mod adopt;
pub mod airy;
pub mod apply;
pub mod names;
pub mod plan;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::naming::ChatPluginNaming;
use crate::secret::SecretString;

/// Label on the Channels and Secrets migrate writes (value `"true"`).
pub const MIGRATED_LABEL: &str = "airy.co/migrated";
/// Annotation on the Channels and Secrets migrate writes: the Airy Core API they were read from.
pub const MIGRATED_FROM: &str = "airy.co/migrated-from";
/// migrate's field manager.
pub const FIELD_MANAGER: &str = "channel-operator-migrate";

/// What `--output` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The Channels as YAML documents, on stdout.
    Yaml,
}

/// Flags of `channel-operator migrate`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["dry_run", "apply"])))]
pub struct Args {
    /// Base URL of the running Airy Core's API (channels.list is POSTed to <url>/channels.list).
    #[arg(long, value_name = "URL")]
    pub from: url::Url,
    /// Airy Core's API token (its system token or a JWT), sent as a bearer token.
    #[arg(long, env = "AIRY_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// A file holding Airy Core's API token (surrounding whitespace is ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Namespace the Channels and their credentials Secrets are written to.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Read Airy Core and print what would be written; no cluster is read or written.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the Channels and Secrets to the cluster of the current kubeconfig.
    #[arg(long)]
    pub apply: bool,
    /// Print the Channels (yaml) on stdout.
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<Output>,
    /// The chat plugin naming of the installation the Channels go to (chat_plugin or chatplugin,
    /// as its controller and API are given): chat plugin ids that differ from its deterministic
    /// ones are pinned.
    #[arg(long, env = "CHATPLUGIN_NAMING", value_enum, default_value_t)]
    pub chatplugin_naming: ChatPluginNaming,
    /// The operator's state namespace (the controller's --state-namespace): with it, `--apply`
    /// writes there the adoption records of the connected Facebook and Instagram channels, so
    /// the controller adopts what Airy Core made instead of connecting them again (needs get,
    /// create and update of Secrets there).
    #[arg(long, env = "STATE_NAMESPACE")]
    pub state_namespace: Option<String>,
    /// The Facebook app Airy Core is configured with (its app id), which subscribed its pages:
    /// what the adoption records say made the subscriptions.
    #[arg(long, value_name = "APP_ID")]
    pub facebook_app_id: Option<String>,
    /// How long Airy Core may take to answer channels.list, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub airy_timeout_seconds: f64,
    /// Seconds between progress lines while writing.
    #[arg(long, default_value_t = 2.0)]
    pub progress_seconds: f64,
}

/// The token, from `--token-file`, else `--token` / `AIRY_TOKEN`.
fn token(args: &Args) -> anyhow::Result<SecretString> {
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            SecretString::new(raw.trim())
        }
        (None, Some(t)) => t.clone(),
        (None, None) => bail!("no Airy Core token: give --token, --token-file or AIRY_TOKEN"),
    };
    if token.is_empty() {
        bail!("the Airy Core token is empty");
    }
    Ok(token)
}

/// The Airy Core URL without user, password, query or fragment: what is printed and recorded.
fn public_url(url: &url::Url) -> url::Url {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// Runs the command; the exit code says whether every Airy Core channel is (or, in a dry run,
/// would be) in the namespace.
pub async fn main(args: Args) -> ExitCode {
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if !crate::rules::is_namespace(&args.namespace) {
        bail!("--namespace {:?} is not a namespace name", args.namespace);
    }
    if let Some(state) = args
        .state_namespace
        .as_deref()
        .filter(|s| !crate::rules::is_namespace(s))
    {
        bail!("--state-namespace {state:?} is not a namespace name");
    }
    let token = token(&args)?;
    let from = public_url(&args.from);
    let from_text = from.as_str().trim_end_matches('/').to_owned();
    let timeout = Duration::from_secs_f64(args.airy_timeout_seconds.max(0.001));
    let (channels, unreadable) = airy::list(&from, &token, timeout).await?;
    eprintln!(
        "migrate: read {} channels from Airy Core at {from_text}",
        channels.len() + unreadable.len()
    );
    if args.chatplugin_naming == ChatPluginNaming::ChatPlugin
        && channels
            .iter()
            .any(|c| c.source == crate::naming::CHATPLUGIN)
    {
        eprintln!(
            "note: Airy Core calls its chat plugins \"chatplugin\" (release 0.13 or later): run the \
             controller and the API with --chatplugin-naming chatplugin, and give it here too, so \
             channels.list answers the same source"
        );
    }
    let ctx = plan::Context {
        namespace: args.namespace.clone(),
        naming: args.chatplugin_naming,
        from: from_text.clone(),
    };
    let (planned, skipped) = plan::plan_all(&channels, &unreadable, &ctx);
    let mut report = report::Report::new(&planned, skipped);
    let print_yaml = || {
        if args.output == Some(Output::Yaml) {
            print!("{}", report::yaml(&from_text, &planned));
        }
    };
    if args.dry_run {
        for p in &planned {
            report.moved(p, true);
            if args.state_namespace.is_some() {
                report.vouched(p, adopt::would_vouch(p, args.facebook_app_id.as_deref()));
            }
        }
        if args.state_namespace.is_none() {
            report.unvouched();
        }
        print_yaml();
        eprint!("{}", report.summary(&args.namespace, &planned, true));
        return Ok(report.complete());
    }
    let client = kube::Client::try_default()
        .await
        .context("cannot use the cluster of the current kubeconfig")?;
    let cluster = apply::Cluster::new(
        client.clone(),
        &args.namespace,
        args.chatplugin_naming,
        &from_text,
    );
    let unreachable = || "cannot read the cluster of the current kubeconfig";
    if !cluster.namespace_exists().await.context(unreachable())? {
        bail!("the namespace {} does not exist", args.namespace);
    }
    let holders = cluster.holders().await.context(unreachable())?;
    if holders.partial {
        eprintln!(
            "note: Channels of other namespaces cannot be listed with these credentials: a channel \
             id held there is not seen here (its Channel here would report Duplicate)"
        );
    }
    let vouching = args.state_namespace.as_ref().map(|state| adopt::Vouching {
        client: client.clone(),
        state: state.clone(),
        namespace: args.namespace.clone(),
        naming: args.chatplugin_naming,
        from: from_text.clone(),
        app: args.facebook_app_id.clone(),
    });
    let every = Duration::from_secs_f64(args.progress_seconds.max(0.0));
    for p in &planned {
        let outcome = cluster.write(p, &holders).await;
        let moved = matches!(
            outcome.channel,
            apply::Verdict::Written | apply::Verdict::Unchanged
        );
        report.record(p, outcome, every);
        if let (Some(v), true) = (&vouching, moved) {
            report.vouched(p, v.write(p).await);
        }
    }
    if vouching.is_none() {
        report.unvouched();
    }
    print_yaml();
    eprint!("{}", report.summary(&args.namespace, &planned, false));
    Ok(report.complete())
}
