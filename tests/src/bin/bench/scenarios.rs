//! The run: options, setup of the three paths, the scenarios of issue 9 in order, the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use hostmesh_tests::bench::clients::{HttpTarget, Protocol};
use hostmesh_tests::bench::job::Job;
use hostmesh_tests::bench::openloop::LoadReport;

use hostmesh_lab::{Binaries, Host, Lab, Process};

use crate::haproxy::{self, HaproxyPair};
use crate::measure::Client;
use crate::mesh::Mesh;
use crate::procs::rss_mib;
use crate::report::{Machine, Report};
use crate::topology::{HOST_A, HOST_B, HTTP1, Mode, SERVICE_HOST, Service};
use crate::{goals, workloads};

/// Options of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Scenarios to run (1–8, comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<u8>,
    /// Shorter runs and fewer points (one rate, one connection count): a few minutes.
    #[arg(long)]
    pub quick: bool,
    /// Paths to measure.
    #[arg(long, value_delimiter = ',', default_value = "direct,hostmesh,haproxy")]
    pub modes: Vec<Mode>,
    /// Seconds per load point (default 10, 4 with --quick).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Extra unrelated services in the registry, so the proxies carry a larger route table
    /// (the 1,000-route row: `--extra-services 1000`).
    #[arg(long, default_value_t = 0)]
    pub extra_services: usize,
    /// Open-loop rate of scenario 8 (the route table), requests per second.
    #[arg(long, default_value_t = 1000)]
    pub route_table_rate: u64,
    /// `hostmesh-control` binary (default: `$HOSTMESH_BIN_DIR`, beside this one, `PATH`).
    #[arg(long)]
    pub control_bin: Option<PathBuf>,
    /// `hostmesh-agent` binary (default: as for `--control-bin`).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    #[arg(long, default_value = "haproxy")]
    pub haproxy_bin: PathBuf,
}

impl RunArgs {
    pub fn wants(&self, scenario: u8) -> bool {
        self.scenario.is_empty() || self.scenario.contains(&scenario)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(if self.quick { 4 } else { 10 }))
    }
}

/// Everything running, dropped before the namespaces (field order).
#[derive(Debug)]
pub struct Setup {
    pub mesh: Option<Mesh>,
    pub haproxy: Option<HaproxyPair>,
    pub server: Process,
    /// Host A (client) and host B (server).
    pub hosts: [Host; 2],
    pub lab: Lab,
    /// The paths that came up.
    pub modes: Vec<Mode>,
    /// Open files each process may have (a proxy holds two per connection).
    pub file_limit: u64,
}

impl Setup {
    /// The proxies of a path (host A's first), whose CPU and memory the report shows.
    pub fn proxies(&self, mode: Mode) -> Vec<u32> {
        match mode {
            Mode::Direct => Vec::new(),
            Mode::Hostmesh => self
                .mesh
                .as_ref()
                .map(|m| m.pids.to_vec())
                .unwrap_or_default(),
            Mode::Haproxy => self
                .haproxy
                .as_ref()
                .map(|h| vec![h.a.pid(), h.b.pid()])
                .unwrap_or_default(),
        }
    }

    pub fn client(&self) -> anyhow::Result<Client<'_>> {
        Ok(Client {
            host: &self.hosts[0],
            exe: std::env::current_exe().context("this binary's path")?,
        })
    }
}

pub fn target(mode: Mode, service: Service, protocol: Protocol) -> HttpTarget {
    HttpTarget {
        addr: mode.address(service),
        authority: SERVICE_HOST.to_owned(),
        protocol,
    }
}

/// Raises the open-file limit to its hard limit (inherited by every process the harness
/// starts); returns it.
fn raise_file_limit() -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(1 << 20);
    limit.current = Some(hard);
    setrlimit(Resource::Nofile, limit).context("raising the open-file limit")?;
    Ok(hard)
}

/// Sets a host up as a machine that opens thousands of connections a second to one peer
/// would be (the same for every path): a new outgoing connection may take the port of one in
/// TIME_WAIT (`tcp_tw_reuse = 1`), from a wide ephemeral range. Without this, scenario 5 soon
/// measures the kernel's search for a free port rather than the proxies.
fn tune(host: &Host) -> anyhow::Result<()> {
    let settings = [
        ("/proc/sys/net/ipv4/tcp_tw_reuse", "1"),
        ("/proc/sys/net/ipv4/ip_local_port_range", "10000 65000"),
    ];
    for (path, value) in settings {
        host.netns()
            .run(|| std::fs::write(path, value))?
            .with_context(|| format!("setting {path} to {value} on host {}", host.name()))?;
    }
    Ok(())
}

/// One request through `mode` until it answers (the path is up).
fn probe(setup: &Setup, mode: Mode, timeout: Duration) -> anyhow::Result<()> {
    let job = Job::Probe {
        target: target(mode, HTTP1, Protocol::Http1),
        timeout,
    };
    setup.client()?.run(&job, &[]).map(|_| ())
}

fn binaries(args: &RunArgs) -> anyhow::Result<Binaries> {
    if let (Some(control), Some(agent)) = (&args.control_bin, &args.agent_bin) {
        return Ok(Binaries {
            control: control.clone(),
            agent: agent.clone(),
        });
    }
    let mut found = Binaries::locate().context(
        "hostmesh-control and hostmesh-agent: cargo build --release -p hostmesh-agent -p hostmesh-registry --bins",
    )?;
    found.control = args.control_bin.clone().unwrap_or(found.control);
    found.agent = args.agent_bin.clone().unwrap_or(found.agent);
    Ok(found)
}

fn start(args: &RunArgs, report: &mut Report) -> anyhow::Result<Setup> {
    let file_limit = raise_file_limit()?;
    let mut lab = Lab::new("bench")?;
    let hosts = [lab.add_host("a")?, lab.add_host("b")?];
    if hosts[0].ip() != HOST_A || hosts[1].ip() != HOST_B {
        bail!(
            "the lab gave the hosts {} and {}, not {HOST_A} and {HOST_B}",
            hosts[0].ip(),
            hosts[1].ip()
        );
    }
    for host in &hosts {
        tune(host)?;
    }
    let exe = std::env::current_exe()?;
    let server = lab.spawn(hosts[1].netns(), "servers", &exe, &["serve"])?;
    let mut setup = Setup {
        mesh: None,
        haproxy: None,
        server,
        hosts,
        lab,
        modes: Vec::new(),
        file_limit,
    };
    for mode in &args.modes {
        let started = match mode {
            Mode::Direct => probe(&setup, Mode::Direct, Duration::from_secs(10)),
            Mode::Haproxy => {
                let hosts = [&setup.hosts[0], &setup.hosts[1]];
                HaproxyPair::start(&setup.lab, hosts, &args.haproxy_bin, setup.file_limit).and_then(
                    |pair| {
                        setup.haproxy = Some(pair);
                        probe(&setup, Mode::Haproxy, Duration::from_secs(20))
                    },
                )
            }
            Mode::Hostmesh => binaries(args).and_then(|bins| {
                let hosts = [&setup.hosts[0], &setup.hosts[1]];
                let mesh =
                    Mesh::start(&setup.lab, &bins, hosts, args.extra_services, args.wants(8))?;
                setup.mesh = Some(mesh);
                probe(&setup, Mode::Hostmesh, Duration::from_secs(30))
            }),
        };
        match started {
            Ok(()) => setup.modes.push(*mode),
            Err(e) => report.error(format!("{} path not measured: {e:#}", mode.name())),
        }
    }
    Ok(setup)
}

fn versions(args: &RunArgs) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("hostmesh".into(), env!("CARGO_PKG_VERSION").to_owned());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output();
    if let Ok(out) = commit
        && out.status.success()
    {
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        v.insert("commit".into(), hash);
    }
    v.insert(
        "haproxy".into(),
        haproxy::version(&args.haproxy_bin).unwrap_or_else(|| "not installed".into()),
    );
    v
}

/// The whole run.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut report = Report::new(Machine::detect());
    report.versions = versions(&args);
    report
        .settings
        .insert("quick".into(), args.quick.to_string());
    report.settings.insert(
        "seconds per point".into(),
        args.duration().as_secs().to_string(),
    );
    report
        .settings
        .insert("extra services".into(), args.extra_services.to_string());
    let mut setup = start(&args, &mut report)?;
    workloads::idle_at_start(&setup, &mut report);
    // 7 first: its RSS is then the proxies' at a steady 1,000 rps, not what the bursts of the
    // other scenarios (thousands of connections) left allocated.
    for scenario in [7, 1, 2, 3, 4, 5, 6, 8] {
        if args.wants(scenario) {
            eprintln!("bench: scenario {scenario}");
            workloads::run(scenario, &args, &setup, &mut report);
        }
    }
    if setup.server.try_wait().is_some() {
        report.error("the servers on host B exited during the run".into());
    }
    if let Some(mesh) = setup.mesh.as_mut() {
        for (name, exited) in mesh.exited() {
            report.error(format!("{name} exited during the run: {exited}"));
        }
        for (name, pid) in ["host A", "host B"].into_iter().zip(mesh.pids) {
            if let Some(rss) = rss_mib(pid) {
                report.settings.insert(
                    format!("hostmesh-agent RSS at end, {name} (MiB)"),
                    format!("{rss:.1}"),
                );
            }
        }
    }
    report.goals = goals::check(&report);
    let text = report.render();
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if std::env::var_os("HOSTMESH_LAB_KEEP").is_some() {
        eprintln!("bench: logs in {}", setup.lab.dir().display());
    }
    drop(setup);
    Ok(())
}

/// Latency and throughput rows of one load report.
pub fn load_rows(report: &mut Report, scenario: &str, case: &str, mode: Mode, load: &LoadReport) {
    use crate::report::Metric;
    let rows = [
        (Metric::lower("p50", "µs"), load.latency.p50_us),
        (Metric::lower("p90", "µs"), load.latency.p90_us),
        (Metric::lower("p99", "µs"), load.latency.p99_us),
        (Metric::lower("p99.9", "µs"), load.latency.p999_us),
        (Metric::higher("achieved", "req/s"), load.achieved_rps),
        (Metric::lower("unserved", "count"), load.abandoned as f64),
    ];
    for (metric, value) in rows {
        report.set(scenario, case, metric, mode, value);
    }
    report.call_errors(
        (scenario, case, mode),
        "unserved",
        load.abandoned,
        "still queued 5 s after the last intended send: the path (or the generator) did not keep up",
    );
    load_errors(report, scenario, case, mode, load);
}

/// The "errors" row (failed calls) of one load report, and what it counted by kind with the
/// first message of each.
pub fn load_errors(report: &mut Report, scenario: &str, case: &str, mode: Mode, load: &LoadReport) {
    use crate::report::Metric;
    let errors = Metric::lower("errors", "count");
    report.set(scenario, case, errors, mode, load.errors as f64);
    for (kind, e) in &load.error_kinds {
        report.call_errors((scenario, case, mode), kind, e.count, &e.first);
    }
}
