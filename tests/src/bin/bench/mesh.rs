//! The mesh path: the real `hostmesh-control` (CA, registry folder, ADS) on host A and a real
//! `hostmesh-agent run` on each host with nftables interception; host A's client reaches
//! host B's service through host A's outbound proxy, mTLS, and host B's inbound proxy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::lab::Lab;
use crate::procs::{Supervised, wait_for};
use crate::topology::{CONTROL_PORT, HOST_A, HOST_B, SERVICE_HOST, SERVICES, unintercepted_ports};

/// The real binaries the mesh runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub control: PathBuf,
    pub agent: PathBuf,
}

/// The running mesh: control server and both agents (the proxies measured).
#[derive(Debug)]
pub struct Mesh {
    pub control: Supervised,
    pub agent_a: Supervised,
    pub agent_b: Supervised,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The static registry: host B's service on every benchmark port, plus `extra_services`
/// unrelated services so the proxies carry a larger route table (the 1,000-route
/// row: run with `--extra-services 1000`).
pub fn registry_yaml(extra_services: usize) -> String {
    let mut ports = String::new();
    for s in SERVICES {
        let _ = writeln!(
            ports,
            "  - {{number: {}, name: {}, protocol: {}}}",
            s.mesh,
            s.name,
            s.mesh_protocol()
        );
    }
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bench-server, namespace: bench}}
spec:
  hosts: [{SERVICE_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
{ports}  workloadSelector:
    labels: {{app: bench-server}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bench-server, namespace: bench}}
spec:
  address: {HOST_B}
  labels: {{app: bench-server}}
  serviceAccount: server
"
    );
    for i in 0..extra_services {
        let _ = write!(
            yaml,
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: extra-{i}, namespace: bench}}
spec:
  hosts: [extra-{i}.bench.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  endpoints: [{{address: 10.214.{}.{}}}]
",
            i / 250,
            i % 250 + 1
        );
    }
    yaml
}

fn agent_yaml(
    dir: &Path,
    host: &str,
    account: &str,
    ip: std::net::Ipv4Addr,
    inbound: bool,
) -> String {
    let inbound_ports = if inbound {
        let list: Vec<String> = SERVICES
            .iter()
            .map(|s| format!("{}: {}", s.mesh, s.mesh_protocol().to_lowercase()))
            .collect();
        format!("inboundPorts: {{{}}}\n", list.join(", "))
    } else {
        String::new()
    };
    let excluded: Vec<String> = unintercepted_ports().iter().map(u16::to_string).collect();
    format!(
        "controlAddress: {HOST_A}:{CONTROL_PORT}\nnamespace: bench\nserviceAccount: {account}\n\
         workloadName: bench-{host}\nlabels: {{app: bench-{host}}}\nhostIP: {ip}\n{inbound_ports}\
         stateDir: {state}\njoinTokenPath: {token}\nrootCertPath: {root}\nlogLevel: warn\n\
         interception:\n  excludedPorts: [{excluded}]\n  dnsCapture: false\n\
         dns:\n  resolvConf: {resolv}\n",
        state = dir.join(host).join("state").display(),
        token = dir.join(host).join("join-token").display(),
        root = dir.join("ca").join("root-cert.pem").display(),
        excluded = excluded.join(", "),
        resolv = dir.join("resolv.conf").display(),
    )
}

impl Mesh {
    /// CA, tokens, registry, control server, then both agents. Readiness is checked by the
    /// caller with a request through the mesh.
    pub fn start(
        lab: &Lab,
        dir: &Path,
        bins: &Binaries,
        extra_services: usize,
    ) -> anyhow::Result<Mesh> {
        let ca = dir.join("ca");
        let state = dir.join("control");
        let registry = dir.join("registry.d");
        std::fs::create_dir_all(&registry)?;
        std::fs::write(registry.join("bench.yaml"), registry_yaml(extra_services))?;
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
        run(Command::new(&bins.control)
            .args(["ca", "init", "--dir"])
            .arg(&ca))?;
        let control = Lab::command(&lab.a, &bins.control)
            .args(["run", "--listen", &format!("{HOST_A}:{CONTROL_PORT}")])
            .args(["--status-listen", "127.0.0.1:15014"])
            .arg("--ca-dir")
            .arg(&ca)
            .arg("--state-dir")
            .arg(&state)
            .arg("--registry-dir")
            .arg(&registry)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting hostmesh-control")?;
        let control = Supervised::new("hostmesh-control", control);

        let mut agents = Vec::new();
        for (host, account, ip, inbound, ns) in [
            ("client", "client", HOST_A, false, &lab.a),
            ("server", "server", HOST_B, true, &lab.b),
        ] {
            let home = dir.join(host);
            std::fs::create_dir_all(&home)?;
            let token = run(Command::new(&bins.control)
                .args([
                    "token",
                    "create",
                    "--namespace",
                    "bench",
                    "--service-account",
                    account,
                ])
                .arg("--state-dir")
                .arg(&state))?;
            std::fs::write(home.join("join-token"), token)?;
            let config = home.join("agent.yaml");
            std::fs::write(&config, agent_yaml(dir, host, account, ip, inbound))?;
            let child = Lab::command(ns, &bins.agent)
                .arg("run")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .env_remove("NOTIFY_SOCKET")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting hostmesh-agent")?;
            agents.push(Supervised::new(format!("hostmesh-agent ({host})"), child));
        }
        let agent_b = agents.pop().context("two agents")?;
        let agent_a = agents.pop().context("two agents")?;
        Ok(Mesh {
            control,
            agent_a,
            agent_b,
        })
    }

    /// Waits until both agents have installed their nftables table (so no request can reach
    /// the server around the proxies) and are still running.
    pub fn wait_intercepting(&mut self, lab: &Lab, timeout: Duration) -> anyhow::Result<()> {
        for ns in [&lab.a, &lab.b] {
            let installed = wait_for(timeout, || {
                Lab::command(ns, "nft")
                    .args(["list", "table", "inet", "hostmesh"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if !installed {
                bail!("no nftables table `inet hostmesh` in {ns} after {timeout:?}");
            }
        }
        for agent in [&mut self.agent_a, &mut self.agent_b, &mut self.control] {
            if !agent.alive() {
                bail!("{} exited", agent.name);
            }
        }
        Ok(())
    }
}
