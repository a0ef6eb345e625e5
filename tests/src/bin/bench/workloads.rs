//! The scenarios of issue 9, each measured on every path that came up, into the report.

use std::time::Duration;

use hostmesh_tests::bench::clients::Protocol;
use hostmesh_tests::bench::job::Job;
use hostmesh_tests::bench::latency::LatencySummary;
use hostmesh_tests::bench::openloop::{LoadReport, LoadSpec};
use hostmesh_tests::bench::tcp::{BulkReport, ConnectReport};

use crate::measure::Usage;
use crate::procs::{private_mib, rss_mib};
use crate::report::{Metric, Report};
use crate::scenarios::{RunArgs, Setup, load_errors, load_rows, target};
use crate::topology::{ECHO, GRPC, HTTP1, HTTP2, Mode, SINK, Service};

pub const S1: &str = "1. HTTP/1.1 1 KB, open loop";
pub const S2: &str = "2. HTTP/1.1 1 KB, saturation (closed loop)";
pub const S3: &str = "3. HTTP/2 and gRPC unary, open loop";
pub const S4: &str = "4. TCP echo round trip and bulk throughput";
pub const S5: &str = "5. new mTLS connections (one per round trip)";
pub const S6: &str = "6. proxy RSS with idle connections";
pub const S7: &str = "7. proxy CPU and RSS under load (HTTP/1.1, 1,000 rps, 16 connections)";

/// The hosts' proxies by name, host A's first.
const SIDES: [&str; 2] = ["host A", "host B"];

fn grid(args: &RunArgs) -> (Vec<u64>, Vec<usize>) {
    if args.quick {
        (vec![1000], vec![16])
    } else {
        (vec![500, 1000, 2000], vec![4, 16, 64])
    }
}

pub fn run(scenario: u8, args: &RunArgs, setup: &Setup, report: &mut Report) {
    match scenario {
        1 => open_loop(args, setup, report, S1, HTTP1, Protocol::Http1),
        2 => saturation(args, setup, report),
        3 => {
            open_loop(args, setup, report, S3, HTTP2, Protocol::Http2);
            open_loop(args, setup, report, S3, GRPC, Protocol::Grpc);
        }
        4 => tcp(args, setup, report),
        5 => connections(args, setup, report),
        6 => idle(args, setup, report),
        7 => cpu(args, setup, report),
        8 => crate::route_table::run(args, setup, report),
        _ => report.error(format!("there is no scenario {scenario} (1–8)")),
    }
}

/// Runs `job` on each path (its target made by `job_for`) and hands each result over.
fn each_mode<T: serde::de::DeserializeOwned>(
    setup: &Setup,
    report: &mut Report,
    what: &str,
    job_for: impl Fn(Mode) -> Job,
    record: impl FnMut(&mut Report, Mode, T, &[Usage]),
) {
    each_mode_watching(setup, report, what, job_for, |m| setup.proxies(m), record);
}

/// [`each_mode`], watching the processes `watch` names for each path.
fn each_mode_watching<T: serde::de::DeserializeOwned>(
    setup: &Setup,
    report: &mut Report,
    what: &str,
    job_for: impl Fn(Mode) -> Job,
    watch: impl Fn(Mode) -> Vec<u32>,
    mut record: impl FnMut(&mut Report, Mode, T, &[Usage]),
) {
    let client = match setup.client() {
        Ok(c) => c,
        Err(e) => return report.error(format!("{what}: {e:#}")),
    };
    for mode in setup.modes.clone() {
        eprintln!("bench:   {what} via {}", mode.name());
        let outcome = client
            .run(&job_for(mode), &watch(mode))
            .and_then(|(value, usage)| Ok((serde_json::from_value::<T>(value)?, usage)));
        match outcome {
            Ok((result, usage)) => record(report, mode, result, &usage),
            Err(e) => report.error(format!("{what} via {}: {e:#}", mode.name())),
        }
    }
}

fn open_loop(
    args: &RunArgs,
    setup: &Setup,
    report: &mut Report,
    scenario: &str,
    service: Service,
    protocol: Protocol,
) {
    let (rates, conns) = grid(args);
    for &rate in &rates {
        for &connections in &conns {
            let case = format!("{} {rate} rps × {connections} conn", protocol.name());
            let spec = LoadSpec {
                rate: Some(rate),
                connections,
                duration: args.duration(),
            };
            each_mode(
                setup,
                report,
                &case,
                |mode| Job::Load {
                    target: target(mode, service, protocol),
                    spec,
                },
                |report, mode, load: LoadReport, _| load_rows(report, scenario, &case, mode, &load),
            );
        }
    }
}

fn saturation(args: &RunArgs, setup: &Setup, report: &mut Report) {
    let connections = if args.quick { 16 } else { 32 };
    let case = format!("{connections} conn, closed loop");
    let spec = LoadSpec {
        rate: None,
        connections,
        duration: args.duration(),
    };
    each_mode(
        setup,
        report,
        &case,
        |mode| Job::Load {
            target: target(mode, HTTP1, Protocol::Http1),
            spec,
        },
        |report, mode, load: LoadReport, usage| {
            report.set(
                S2,
                &case,
                Metric::higher("throughput", "req/s"),
                mode,
                load.achieved_rps,
            );
            // At saturation a wake-up serves many requests: this is the proxy's own work.
            let thousands = load.completed as f64 / 1000.0;
            for (side, u) in SIDES.iter().zip(usage) {
                if thousands > 0.0 {
                    let metric = Metric::lower(cpu_per_thousand(side), "s");
                    report.set(S2, &case, metric, mode, u.cpu_s / thousands);
                }
            }
            report.set(
                S2,
                &case,
                Metric::lower("p50", "µs"),
                mode,
                load.latency.p50_us,
            );
            report.set(
                S2,
                &case,
                Metric::lower("p99", "µs"),
                mode,
                load.latency.p99_us,
            );
            load_errors(report, S2, &case, mode, &load);
        },
    );
}

fn tcp(args: &RunArgs, setup: &Setup, report: &mut Report) {
    let count = if args.quick { 2000 } else { 10_000 };
    for size in [1usize, 1024] {
        let case = format!("echo {size} B, {count} round trips");
        each_mode(
            setup,
            report,
            &case,
            |mode| Job::EchoRtt {
                addr: mode.address(ECHO),
                size,
                count,
            },
            |report, mode, rtt: LatencySummary, _| {
                report.set(S4, &case, Metric::lower("RTT p50", "µs"), mode, rtt.p50_us);
                report.set(S4, &case, Metric::lower("RTT p99", "µs"), mode, rtt.p99_us);
                report.set(
                    S4,
                    &case,
                    Metric::lower("RTT p99.9", "µs"),
                    mode,
                    rtt.p999_us,
                );
            },
        );
    }
    let case = "bulk, one stream";
    each_mode(
        setup,
        report,
        case,
        |mode| Job::Bulk {
            addr: mode.address(SINK),
            duration: args.duration(),
        },
        |report, mode, bulk: BulkReport, usage| {
            report.set(
                S4,
                case,
                Metric::higher("throughput", "Gbit/s"),
                mode,
                bulk.gbit_per_s,
            );
            for (side, u) in SIDES.iter().zip(usage) {
                let metric = Metric::lower(cpu_metric(side), "cores");
                report.set(S4, case, metric, mode, u.cpu_s / bulk.seconds);
            }
        },
    );
}

/// The bench server's CPU per 1,000 requests it answers: one wake-up per request, nothing
/// proxied; a floor for what a proxy (two wake-ups per request) can cost on the machine.
pub const SERVER_CPU: &str = "CPU s per 1,000 requests, the server (floor)";

fn cpu_per_thousand(side: &str) -> &'static str {
    if side == SIDES[0] {
        "CPU s per 1,000 requests, host A's proxy"
    } else {
        "CPU s per 1,000 requests, host B's proxy"
    }
}

fn cpu_metric(side: &str) -> &'static str {
    if side == SIDES[0] {
        "CPU of host A's proxy"
    } else {
        "CPU of host B's proxy"
    }
}

fn connections(args: &RunArgs, setup: &Setup, report: &mut Report) {
    let workers = 8;
    let case = format!("{workers} concurrent clients");
    each_mode(
        setup,
        report,
        &case,
        |mode| {
            settle_time_wait(&setup.hosts);
            Job::ConnectRate {
                addr: mode.address(ECHO),
                workers,
                duration: args.duration(),
            }
        },
        |report, mode, c: ConnectReport, _| {
            report.set(
                S5,
                &case,
                Metric::higher("connections", "per s"),
                mode,
                c.per_s,
            );
            report.set(
                S5,
                &case,
                Metric::lower("connect+RTT p50", "µs"),
                mode,
                c.latency.p50_us,
            );
            report.set(
                S5,
                &case,
                Metric::lower("connect+RTT p99", "µs"),
                mode,
                c.latency.p99_us,
            );
            report.set(
                S5,
                &case,
                Metric::lower("errors", "count"),
                mode,
                c.errors as f64,
            );
            let first = c.first_error.as_deref().unwrap_or_default();
            report.call_errors((S5, &case, mode), "connection", c.errors, first);
        },
    );
}

/// Connections in TIME_WAIT a host may hold when a path's connection rate is measured.
const TIME_WAIT_SETTLED: u64 = 1000;
/// The longest wait for them (the kernel keeps a connection in TIME_WAIT for 60 s).
const TIME_WAIT_PATIENCE: Duration = Duration::from_secs(65);

/// Waits until neither host holds more than [`TIME_WAIT_SETTLED`] connections in TIME_WAIT,
/// so every path's connection rate starts from the same kernel state: a path measured right
/// after another would otherwise pay for the ports the other left in TIME_WAIT (the direct
/// path leaves 100,000 or more).
fn settle_time_wait(hosts: &[hostmesh_lab::Host]) {
    let start = std::time::Instant::now();
    loop {
        let held: u64 = hosts.iter().filter_map(time_wait).sum();
        if held <= TIME_WAIT_SETTLED || start.elapsed() > TIME_WAIT_PATIENCE {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Connections in TIME_WAIT in the host's namespace (`tw` of `/proc/net/sockstat`).
fn time_wait(host: &hostmesh_lab::Host) -> Option<u64> {
    let read = || std::fs::read_to_string("/proc/thread-self/net/sockstat");
    let text = host.netns().run(read).ok()?.ok()?;
    let tcp = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    words.find(|w| *w == "tw")?;
    words.next()?.parse().ok()
}

/// The proxies' RSS right after the path came up (one probe request through it).
pub fn idle_at_start(setup: &Setup, report: &mut Report) {
    for mode in setup.modes.clone() {
        for (side, pid) in SIDES.iter().zip(setup.proxies(mode)) {
            let case = "at start (after one request)";
            if let Some(rss) = rss_mib(pid) {
                report.set(S6, case, Metric::lower(rss_metric(side), "MiB"), mode, rss);
            }
            if let Some(private) = private_mib(pid) {
                let metric = Metric::lower(private_metric(side), "MiB");
                report.set(S6, case, metric, mode, private);
            }
        }
    }
}

fn rss_metric(side: &str) -> &'static str {
    if side == SIDES[0] {
        "RSS of host A's proxy"
    } else {
        "RSS of host B's proxy"
    }
}

fn private_metric(side: &str) -> &'static str {
    if side == SIDES[0] {
        "private RSS of host A's proxy"
    } else {
        "private RSS of host B's proxy"
    }
}

fn idle(args: &RunArgs, setup: &Setup, report: &mut Report) {
    let wanted: &[usize] = if args.quick {
        &[0, 1000]
    } else {
        &[0, 1000, 10_000]
    };
    // A proxy holds two descriptors per connection; stay under the open-file limit.
    let fits = setup.file_limit.saturating_sub(1000) / 2 / 1000 * 1000;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX);
    let mut counts = Vec::new();
    for &n in wanted {
        if n > fits {
            report.error(format!(
                "{n} idle connections do not fit the open-file limit ({}): measured {fits}",
                setup.file_limit
            ));
        }
        counts.push(n.min(fits));
    }
    let client = match setup.client() {
        Ok(c) => c,
        Err(e) => return report.error(format!("idle: {e:#}")),
    };
    for mode in setup.modes.clone() {
        let proxies = setup.proxies(mode);
        if proxies.is_empty() {
            continue;
        }
        let mut baseline: Vec<f64> = Vec::new();
        for &n in &counts {
            eprintln!("bench:   {n} idle connections via {}", mode.name());
            let sample = || {
                // Let the proxies settle (handshakes done, buffers released) before reading.
                std::thread::sleep(Duration::from_secs(1));
                let of = |read: fn(u32) -> Option<f64>| {
                    proxies.iter().map(|p| read(*p).unwrap_or(0.0)).collect()
                };
                (of(rss_mib), of(private_mib))
            };
            let (rss, private): (Vec<f64>, Vec<f64>) =
                match client.hold(mode.address(ECHO), n, sample) {
                    Ok(sampled) => sampled,
                    Err(e) => {
                        report.error(format!("{n} idle connections via {}: {e:#}", mode.name()));
                        continue;
                    }
                };
            let case = format!("{n} idle connections");
            for ((side, value), private) in SIDES.iter().zip(&rss).zip(&private) {
                let metric = Metric::lower(rss_metric(side), "MiB");
                report.set(S6, &case, metric, mode, *value);
                let metric = Metric::lower(private_metric(side), "MiB");
                report.set(S6, &case, metric, mode, *private);
            }
            if n == 0 {
                baseline = rss;
            } else if let (Some(a0), Some(a)) = (baseline.first(), rss.first()) {
                let per = (a - a0) * 1024.0 / n as f64;
                report.set(
                    S6,
                    &case,
                    Metric::lower("per connection, host A's proxy", "KiB"),
                    mode,
                    per,
                );
            }
        }
    }
}

fn cpu(args: &RunArgs, setup: &Setup, report: &mut Report) {
    let rate = 1000;
    let case = "1,000 rps × 16 conn";
    let spec = LoadSpec {
        rate: Some(rate),
        connections: 16,
        duration: args.duration(),
    };
    let server = setup.server.pid();
    // The proxies, then the server: what one wake-up per request costs on this machine.
    let watch = |mode| {
        let mut pids = setup.proxies(mode);
        pids.push(server);
        pids
    };
    each_mode_watching(
        setup,
        report,
        case,
        |mode| Job::Load {
            target: target(mode, HTTP1, Protocol::Http1),
            spec,
        },
        watch,
        |report, mode, load: LoadReport, usage| {
            report.set(
                S7,
                case,
                Metric::higher("achieved", "req/s"),
                mode,
                load.achieved_rps,
            );
            let thousands = load.completed as f64 / 1000.0;
            let Some((server, proxies)) = usage.split_last() else {
                return;
            };
            if thousands > 0.0 {
                let metric = Metric::lower(SERVER_CPU, "s");
                report.set(S7, case, metric, mode, server.cpu_s / thousands);
            }
            for (side, u) in SIDES.iter().zip(proxies) {
                if thousands > 0.0 {
                    let metric = Metric::lower(cpu_per_thousand(side), "s");
                    report.set(S7, case, metric, mode, u.cpu_s / thousands);
                }
                let metric = Metric::lower(rss_metric(side), "MiB");
                report.set(S7, case, metric, mode, u.rss_max_mib);
                let metric = Metric::lower(private_metric(side), "MiB");
                report.set(S7, case, metric, mode, u.private_max_mib);
            }
        },
    );
}
