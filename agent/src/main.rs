//! `hostmesh-agent`: the daemon systemd runs on every VM or bare-metal host.
//!
//! Owns (as it grows): bootstrap from `/etc/hostmesh/agent.yaml`, the workload certificate and
//! its rotation, the nftables table `inet hostmesh`, the DNS proxy, the last-good-config store
//! under `/var/lib/hostmesh`, systemd notify and watchdog, and embedding `hostmesh-proxy`.
//! Today it gets and renews the host's certificate (`hostmesh-agent certificate`) and removes
//! the interception table (`hostmesh-agent cleanup`).
//!
//! Must not contain proxy logic: traffic handling lives in `hostmesh-proxy`.

mod certificate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hostmesh-agent", version, about = "The hostmesh host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Get this host's certificate (with the join token the first time), or renew it.
    Certificate(certificate::CertificateArgs),
    /// Remove the agent's nftables table (`inet hostmesh`); succeeds when it is not there.
    Cleanup(CleanupArgs),
}

#[derive(Debug, clap::Args)]
struct CleanupArgs {
    /// The nft executable to run.
    #[arg(long, default_value = "nft")]
    nft: std::path::PathBuf,
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
    let result = match cli.command {
        Command::Certificate(args) => certificate::run(args),
        Command::Cleanup(args) => {
            hostmesh_agent::nft::remove(&hostmesh_agent::nft::Nft::with_program(args.nft))
                .map_err(anyhow::Error::from)
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
