//! The `channel-operator` command: one binary for the controller, the HTTP API, the CRD and the
//! no-cluster development mode.

#[cfg(feature = "dev")]
use channel_operator::dev;
use channel_operator::{api, controller, migrate, telemetry};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "channel-operator",
    version,
    about = "Kubernetes operator for messaging channels, serving the Airy Core channels HTTP API"
)]
struct Cli {
    #[command(flatten)]
    log: telemetry::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Channel CustomResourceDefinition as YAML (the file in crds/).
    Crd {
        /// Print the ProviderConfig and ClusterProviderConfig CRDs instead
        /// (crds/provider-config.yaml).
        #[arg(long)]
        provider_configs: bool,
    },
    /// Run an in-memory Kubernetes API sandbox with the Channel CRD, the controller and the HTTP
    /// API in one process: the product on a machine without a cluster.
    #[cfg(feature = "dev")]
    Dev(dev::Args),
    /// Run the Channel controller against the cluster of the current kubeconfig or service account.
    Controller(controller::Args),
    /// Run the channels HTTP API against the cluster of the current kubeconfig or service account.
    Api(api::Args),
    /// Move a running Airy Core's channels onto Channels in a namespace, keeping their ids
    /// (docs/migration.md).
    Migrate(migrate::Args),
}

fn main() -> std::process::ExitCode {
    channel_operator::runtime::malloc::one_arena();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(run())
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Crd { provider_configs } = cli.command {
        if provider_configs {
            print!("{}", channel_operator::provider_config::crds_yaml());
        } else {
            print!("{}", channel_operator::crd::crd_yaml());
        }
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(e) = telemetry::init(&cli.log) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Crd { .. } => unreachable!("handled above"),
        // A command line tool: it prints its own report and errors.
        Command::Migrate(args) => return migrate::main(args).await,
        #[cfg(feature = "dev")]
        Command::Dev(args) => dev::run(args).await,
        Command::Controller(args) => controller::run(args).await,
        Command::Api(args) => api::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Logged once, in the chosen format: a plain line would break JSON logs.
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
