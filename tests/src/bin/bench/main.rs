//! `bench`: the mesh path against the direct path and an HAProxy pair, on two hosts made of
//! network namespaces joined by a veth, in one run. Prints a table per scenario and writes
//! JSON (`--json PATH`). It reports figures; it never fails on a slow one. See
//! `tests/bench/README.md` for the method.
//!
//! The same binary is also the server (`serve`, on host B) and the client (`client JOB`,
//! `hold`, on host A) that the harness starts inside the namespaces.

mod goals;
mod haproxy;
mod measure;
mod mesh;
mod procs;
mod report;
mod route_table;
mod scenarios;
mod topology;
mod workloads;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Command line: the run's options, or one of the roles the harness starts in a namespace.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "hostmesh benchmark: direct vs hostmesh vs HAProxy pair"
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: scenarios::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// (internal) The servers of host B on the mesh, direct and HAProxy back-end ports.
    #[command(hide = true)]
    Serve,
    /// (internal) Run one client job (JSON) and print its result (JSON).
    #[command(hide = true)]
    Client { job: String },
    /// (internal) Hold N idle connections to ADDR until standard input closes.
    #[command(hide = true)]
    Hold {
        addr: std::net::SocketAddr,
        n: usize,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.role {
        None => scenarios::run(cli.run),
        Some(Role::Serve) => runtime().and_then(|rt| rt.block_on(topology::serve())),
        Some(Role::Client { job }) => runtime().and_then(|rt| rt.block_on(client(&job))),
        Some(Role::Hold { addr, n }) => runtime().and_then(|rt| rt.block_on(hold(addr, n))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn client(job: &str) -> anyhow::Result<()> {
    let job: hostmesh_tests::bench::job::Job =
        serde_json::from_str(job).context("the job is not valid JSON")?;
    let result = hostmesh_tests::bench::job::run(job).await?;
    println!("{result}");
    Ok(())
}

async fn hold(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let held = hostmesh_tests::bench::tcp::hold_idle(addr, n)
        .await
        .with_context(|| format!("opening {n} connections to {addr}"))?;
    println!("held {}", held.len());
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await?;
    drop(held);
    Ok(())
}
