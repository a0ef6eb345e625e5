//! `hostmesh demo`: a small mesh on this machine, made of network namespaces (root only).
//!
//! A control server with a fresh CA in the lab's switch namespace; hosts `front`, `bill-v1` and
//! `bill-v2`, each with a real `hostmesh-agent`; a tiny HTTP app on the two bill hosts that
//! answers with its version. `front` calls `http://bill-service:9999/` with an unmodified
//! `curl`: the name is answered by front's agent (DNS capture), the connection is redirected
//! by its nftables table to its proxy, and crosses to a bill host over mutual TLS. Everything
//! is removed at the end, on Ctrl-C and on SIGTERM. Owns no mesh logic: it composes the lab.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, HttpApp, Lab};

/// The demo's registry: the service and its two workloads, in Istio's YAML.
const REGISTRY: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-service, namespace: demo}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9999, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: bill-service}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bill-v1, namespace: demo}
spec: {address: 10.77.0.2, serviceAccount: bill, labels: {app: bill-service, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bill-v2, namespace: demo}
spec: {address: 10.77.0.3, serviceAccount: bill, labels: {app: bill-service, version: v2}}
"#;

/// What `front` resolves names with: the switch as upstream, the mesh namespace's domains.
const RESOLV_CONF: &str =
    "nameserver 10.77.0.254\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\n";
const URL: &str = "http://bill-service:9999/";
const FRONT_ID: &str = "spiffe://cluster.local/ns/demo/sa/front";

/// `hostmesh demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Send this many requests, print the answers and exit (0 when both versions answered
    /// over mutual TLS); without it, one request a second until Ctrl-C.
    #[arg(long)]
    requests: Option<u32>,
}

/// The running mesh; stopped in order (agents, control server, lab) on drop.
struct Demo {
    lab: Lab,
    control: Control,
    agents: Vec<Agent>,
    front: Host,
    _apps: Vec<HttpApp>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.stop();
        }
        let _ = self.control.stop();
        self.lab.teardown();
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<bool> {
    hostmesh_lab::require_root_and_tools()
        .context("hostmesh demo builds network namespaces and nftables tables on this machine")?;
    let curl = std::process::Command::new("curl").arg("--version").output();
    if !curl.is_ok_and(|o| o.status.success()) {
        bail!("hostmesh demo needs `curl` (apt-get install curl, or scripts/setup)");
    }
    let bins = Binaries::locate()?;
    let stop = stop_on_signals()?;
    println!("hostmesh demo: building a mesh on this machine (takes a few seconds)…");
    let demo = build(&bins, &stop)?;
    print_layout(&demo);
    let ok = match args.requests {
        Some(n) => {
            let answers: Vec<String> = (1..=n)
                .map_while(|i| (!stop.load(Ordering::Relaxed)).then(|| request(&demo, i)))
                .collect();
            let saw = |v: &str| {
                answers
                    .iter()
                    .any(|a| a.starts_with(&format!("bill-service {v} ")))
            };
            let mtls = answers.iter().all(|a| a.contains(FRONT_ID));
            println!(
                "\nresult: v1 answered: {}, v2 answered: {}, every answer over mutual TLS from {FRONT_ID}: {mtls}",
                saw("v1"),
                saw("v2")
            );
            saw("v1") && saw("v2") && mtls
        }
        None => {
            println!("\nCtrl-C stops the demo and removes everything.\n");
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                request(&demo, i);
                i += 1;
                for _ in 0..10 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            true
        }
    };
    println!("\nhostmesh demo: stopping agents and the control server, removing namespaces…");
    drop(demo);
    println!("hostmesh demo: done, nothing left behind.");
    Ok(ok)
}

fn build(bins: &Binaries, stop: &AtomicBool) -> anyhow::Result<Demo> {
    let interrupted = || {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };
    let mut lab = Lab::new("demo")?;
    let front = lab.add_host("front")?;
    let v1 = lab.add_host("bill-v1")?;
    let v2 = lab.add_host("bill-v2")?;
    for host in [&front, &v1, &v2] {
        host.netns().set_resolv_conf(RESOLV_CONF)?;
    }
    let control = Control::start(&lab, bins, REGISTRY)?;
    let mut demo = Demo {
        lab,
        control,
        agents: Vec::new(),
        front: front.clone(),
        _apps: Vec::new(),
    };
    interrupted()?;
    for (host, version) in [(&v1, "v1"), (&v2, "v2")] {
        demo._apps.push(HttpApp::start(
            host.netns(),
            "0.0.0.0:9999".parse()?,
            &format!("bill-service {version}"),
        )?);
        let spec = AgentSpec {
            namespace: "demo".into(),
            service_account: "bill".into(),
            labels: vec![
                ("app".into(), "bill-service".into()),
                ("version".into(), version.into()),
            ],
            inbound_ports: vec![(9999, "http".into())],
            ..AgentSpec::default()
        };
        demo.agents
            .push(Agent::start(&demo.lab, bins, &demo.control, host, &spec)?);
        interrupted()?;
    }
    let spec = AgentSpec {
        namespace: "demo".into(),
        service_account: "front".into(),
        labels: vec![("app".into(), "front".into())],
        ..AgentSpec::default()
    };
    demo.agents
        .push(Agent::start(&demo.lab, bins, &demo.control, &front, &spec)?);
    interrupted()?;
    Ok(demo)
}

/// One request from `front` with curl; prints and returns the answer (or the error).
fn request(demo: &Demo, i: u32) -> String {
    let answer = demo
        .front
        .netns()
        .output("curl", &["-sS", "--max-time", "10", URL])
        .map(|a| a.trim().to_owned())
        .unwrap_or_else(|e| format!("request failed: {e}"));
    println!("  {i:>3}  front → {URL}  ←  {}", summary(&answer));
    answer
}

/// `bill-service v1 peer=127.0.0.1:4711 client=By=…;URI=spiffe://…` → the version, the peer
/// and the caller's identity; anything else as it is.
fn summary(answer: &str) -> String {
    let Some((text, rest)) = answer.split_once(" peer=") else {
        return answer.to_owned();
    };
    let peer = rest.split(' ').next().unwrap_or_default();
    let caller = rest
        .split(';')
        .find_map(|part| part.strip_prefix("URI="))
        .unwrap_or("none (not mutual TLS)");
    format!("{text}  (app saw {peer}; caller {caller})")
}

fn print_layout(demo: &Demo) {
    let ns = |name: &str| {
        demo.lab
            .hosts()
            .iter()
            .find(|h| h.name() == name)
            .map(|h| h.netns().name().to_owned())
            .unwrap_or_default()
    };
    let hostmesh = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "hostmesh".into());
    let front = ns("front");
    let switch = demo.lab.switch().name();
    println!(
        "\nThe mesh (network namespaces, bridge 10.77.0.0/24):\n\
         \x20 control  {control}  hostmesh-control: CA, registry {registry}, xDS + certificates\n\
         \x20 front    10.77.0.1          hostmesh-agent, identity {FRONT_ID}\n\
         \x20 bill-v1  10.77.0.2          hostmesh-agent + app \"bill-service v1\" on :9999\n\
         \x20 bill-v2  10.77.0.3          hostmesh-agent + app \"bill-service v2\" on :9999\n\
         \nWhere to look (as root, while the demo runs):\n\
         \x20 status:       ip netns exec {switch} {hostmesh} status --address {status}\n\
         \x20 metrics:      ip netns exec {front} curl -s http://127.0.0.1:15020/stats/prometheus\n\
         \x20 config dump:  ip netns exec {front} curl -s http://127.0.0.1:15000/config_dump\n\
         \x20 inside front: ip netns exec {front} bash   (then: curl {URL})\n\
         \x20 logs:         {logs}\n\
         \nEach answer names the instance, the peer the app saw (its own proxy) and the\n\
         caller's identity its proxy verified over mutual TLS:",
        control = demo.control.address(),
        registry = Path::new(&demo.lab.dir())
            .join("control/registry.d")
            .display(),
        status = demo.control.status_address(),
        logs = demo.lab.dir().join("logs").display(),
    );
}

/// Sets the returned flag on SIGINT or SIGTERM (handlers installed before it returns).
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal thread")?;
    let (mut int, mut term) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    });
    Ok(stop)
}
