//! `hostmesh-agent`: the daemon systemd runs on every VM or bare-metal host (`run`), and the
//! operator's helpers (`certificate`, `cleanup`, `doctor`). The daemon itself is composed in
//! `hostmesh_agent::app`; this file parses the command line and maps errors to exit codes.
//!
//! Must not contain proxy logic: traffic handling lives in `hostmesh-proxy`.

mod certificate;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hostmesh-agent", version, about = "The hostmesh host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: certificate, config from the control server, proxy, interception, DNS.
    Run(RunArgs),
    /// Get this host's certificate (with the join token the first time), or renew it.
    Certificate(certificate::CertificateArgs),
    /// Remove the agent's nftables table (`inet hostmesh`); succeeds when it is not there.
    Cleanup(CleanupArgs),
    /// Report what interception would meet on this host (rules, Docker, firewalld, resolver,
    /// SSH) and what would be captured or bypassed with the current settings. Changes nothing.
    Doctor(DoctorArgs),
    /// Write man pages and shell completions under DIR (used when packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Output folder.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct DoctorArgs {
    /// The settings file the agent would run with.
    #[arg(long, env = "HOSTMESH_CONFIG", default_value = hostmesh_agent::config::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The settings file (every key has a default; `HOSTMESH_…` variables override it).
    #[arg(long, env = "HOSTMESH_CONFIG", default_value = hostmesh_agent::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Check the settings, print the effective ones and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, clap::Args)]
struct CleanupArgs {
    /// The nft executable to run.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Certificate(args) => {
            init_plain_logs();
            certificate::run(args)
        }
        Command::Cleanup(args) => {
            init_plain_logs();
            hostmesh_agent::nft::remove(&hostmesh_agent::nft::Nft::with_program(args.nft))
                .map_err(anyhow::Error::from)
        }
        Command::Doctor(args) => doctor(args),
        Command::GenerateDocs { dir } => {
            hostmesh_ca::cli_docs::write(<Cli as clap::CommandFactory>::command(), &dir)
                .with_context(|| format!("writing the docs under {}", dir.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostmesh-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let required = args.config.as_os_str() != hostmesh_agent::config::DEFAULT_PATH;
    let config = hostmesh_agent::config::load_from_env(&args.config, required)
        .context("invalid settings")?;
    if args.check {
        println!("{config:#?}");
        return Ok(());
    }
    let (log, target) = hostmesh_agent::logging::init(&config.log_level);
    tracing::debug!(logs = target, "logging");
    let threads = config
        .proxy_threads
        .map_or_else(default_threads, NonZeroUsize::get);
    let mut runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    tracing::debug!(threads, "runtime");
    runtime
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(hostmesh_agent::app::run(config, log))
        .map_err(anyhow::Error::from)
}

/// Two threads, or one on a single-core machine: the agent shares its host with the
/// workloads it serves.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let required = args.config.as_os_str() != hostmesh_agent::config::DEFAULT_PATH;
    let config = hostmesh_agent::config::load_from_env(&args.config, required)
        .context("invalid settings")?;
    let findings =
        hostmesh_agent::doctor::examine(&config, &hostmesh_agent::doctor::HostPaths::default());
    print!("{}", hostmesh_agent::doctor::render(&findings));
    Ok(())
}

fn init_plain_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
