//! `hostmesh`: the operator's command line.
//!
//! `hostmesh validate FILE…` checks registry files with the same parser and validation as
//! the control server, prints each problem as `file:line: …`, and exits non-zero when any
//! document is invalid. `hostmesh status` lists the agents connected to a control server and
//! whether each runs the config it was sent, then the registry sources' health and the
//! merge's conflicts. `hostmesh describe service HOST` shows a merged service and where each
//! endpoint came from. `hostmesh demo` (root) builds a small mesh on this machine out of
//! network namespaces and shows a request crossing it over mutual TLS. Later: `config-dump`.

mod demo;
mod describe;
mod status;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hostmesh_registry::model::ObjectKey;
use hostmesh_registry::model::validate::Context;
use hostmesh_registry::sources::static_files::parse_file;
use hostmesh_registry::xds::server::http::SOURCES_PATH;

#[derive(Debug, Parser)]
#[command(name = "hostmesh", version, about = "Operate a hostmesh mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check registry files (Istio YAML) as the control server would load them.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show every connected agent and, per xDS type, whether it runs what was sent.
    Status {
        /// The control server's status API.
        #[arg(
            long,
            env = "HOSTMESH_STATUS_ADDRESS",
            default_value = "127.0.0.1:15014"
        )]
        address: String,
    },
    /// Describe a mesh object as the control server runs it.
    #[command(subcommand)]
    Describe(Describe),
    /// Build a small mesh on this machine (network namespaces; needs root) and show a request
    /// from `front` to `bill-service` answered by v1 and v2 over mutual TLS.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum Describe {
    /// A service's merged endpoints and where each came from.
    Service {
        /// The host name, e.g. web.service.consul.
        host: String,
        /// The control server's status API.
        #[arg(
            long,
            env = "HOSTMESH_STATUS_ADDRESS",
            default_value = "127.0.0.1:15014"
        )]
        address: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostmesh: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Status { address } => {
            print!("{}", status::render(&status::fetch(&address)?));
            // Older servers have no registry report; the agents' table stands alone then.
            if let Ok(report) = status::get(&address, SOURCES_PATH) {
                print!("{}", status::render_sources(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => Ok(if demo::run(args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Describe(Describe::Service { host, address }) => {
            print!("{}", describe::render(&describe::fetch(&address, &host)?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let ctx = Context::default();
    let mut failed = false;
    let mut seen: BTreeSet<ObjectKey> = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed = parse_file(file, &text, &ctx);
        let mut duplicates = 0;
        for o in &parsed.objects {
            let key = o.object.key();
            if !seen.insert(key.clone()) {
                println!("{}:{}: {key}: duplicate object", file.display(), o.line);
                duplicates += 1;
            }
        }
        for e in &parsed.errors {
            println!("{e}");
        }
        if parsed.errors.is_empty() && duplicates == 0 {
            println!(
                "{}: OK ({} {})",
                file.display(),
                parsed.objects.len(),
                if parsed.objects.len() == 1 {
                    "object"
                } else {
                    "objects"
                }
            );
        } else {
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
