//! `hostmesh-control`: the central server of the mesh, and the operator's tool for its CA and
//! join tokens.

mod ca_cmd;
mod config;
mod registry;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The control server rebuilds tens of thousands of small objects on every registry change;
/// mimalloc keeps that cheaper and steadier than the system allocator (see ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default home of the CA files (Istio's plug-in layout).
const DEFAULT_CA_DIR: &str = "/var/lib/hostmesh/ca";
/// Default home of the join token key and the record of used tokens.
const DEFAULT_STATE_DIR: &str = "/var/lib/hostmesh/control";

#[derive(Debug, Parser)]
#[command(
    name = "hostmesh-control",
    version,
    about = "The hostmesh control server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control server: the certificate service on the xDS port.
    Run(Box<run::RunArgs>),
    /// Create or use the file-backed CA.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(ca_cmd::TokenCommand),
    /// Write man pages and shell completions under DIR (used when packaging).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

/// Where the control server keeps its state.
#[derive(Debug, Clone, clap::Args)]
struct StateArgs {
    /// Directory of the join token key and the record of used tokens.
    #[arg(long, env = "HOSTMESH_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

impl StateArgs {
    fn token_key(&self) -> PathBuf {
        self.state_dir.join("join-token.key")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Ca(cmd) => ca_cmd::ca(cmd),
        Command::Token(cmd) => ca_cmd::token(cmd),
        Command::GenerateDocs { dir } => {
            hostmesh_ca::cli_docs::write(<Cli as clap::CommandFactory>::command(), &dir)
                .map_err(|e| anyhow::anyhow!("writing the docs under {}: {e}", dir.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostmesh-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A control server holds one connection per agent: lift the soft limit on open files to the
/// hard limit (systemd's default soft limit of 1024 would cap the fleet).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
}
