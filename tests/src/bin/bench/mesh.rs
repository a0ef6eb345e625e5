//! The mesh path: the real `hostmesh-control` (CA, registry folder, ADS) in the lab's switch
//! namespace and a real `hostmesh-agent run` on each host with nftables interception (started
//! by `hostmesh-lab`, ready at `READY=1`); host A's client reaches host B's service through
//! host A's outbound proxy, mTLS, and host B's inbound proxy.

use std::fmt::Write as _;

use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, Lab};

use crate::topology::{HOST_B, SERVICE_HOST, SERVICES, unintercepted_ports};

/// The running mesh: control server and both agents (the proxies measured).
#[derive(Debug)]
pub struct Mesh {
    pub control: Control,
    pub agent_a: Agent,
    pub agent_b: Agent,
    /// The agents' process ids, host A's first.
    pub pids: [u32; 2],
}

/// The static registry: host B's service on every benchmark port, plus `extra_services`
/// unrelated services so the proxies carry a larger route table (the 1,000-route
/// row: run with `--extra-services 1000`), plus scenario 8's route-table hosts when
/// `route_table`.
pub fn registry_yaml(extra_services: usize, route_table: bool) -> String {
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
    if route_table {
        yaml.push_str(&crate::route_table::registry_yaml());
    }
    yaml
}

fn spec(account: &str, host: &Host, inbound: bool) -> AgentSpec {
    let excluded: Vec<String> = unintercepted_ports().iter().map(u16::to_string).collect();
    AgentSpec {
        namespace: "bench".into(),
        service_account: account.into(),
        labels: vec![("app".into(), format!("bench-{account}"))],
        inbound_ports: if inbound {
            SERVICES
                .iter()
                .map(|s| (s.mesh, s.mesh_protocol().to_lowercase()))
                .collect()
        } else {
            Vec::new()
        },
        extra_yaml: format!(
            "hostIP: {ip}\nlogLevel: warn\n\
             interception:\n  excludedPorts: [{excluded}]\n  dnsCapture: false\n",
            ip = host.ip(),
            excluded = excluded.join(", "),
        ),
        ..AgentSpec::default()
    }
}

impl Mesh {
    /// The mesh's processes that are no longer running, with their exit status.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        let processes = [
            self.control.process(),
            self.agent_a.process(),
            self.agent_b.process(),
        ];
        for process in processes.into_iter().flatten() {
            if let Some(status) = process.try_wait() {
                gone.push((process.name().to_owned(), status.to_string()));
            }
        }
        gone
    }

    /// The control server with the benchmark's registry, then both agents, each ready
    /// (certificate, config, nftables table) before this returns.
    pub fn start(
        lab: &Lab,
        bins: &Binaries,
        hosts: [&Host; 2],
        extra_services: usize,
        route_table: bool,
    ) -> hostmesh_lab::Result<Mesh> {
        let yaml = registry_yaml(extra_services, route_table);
        let control = Control::start(lab, bins, &yaml)?;
        let mut agent_a = Agent::start(
            lab,
            bins,
            &control,
            hosts[0],
            &spec("client", hosts[0], false),
        )?;
        let mut agent_b = Agent::start(
            lab,
            bins,
            &control,
            hosts[1],
            &spec("server", hosts[1], true),
        )?;
        let pid = |agent: &mut Agent| agent.process().map_or(0, |p| p.pid());
        let pids = [pid(&mut agent_a), pid(&mut agent_b)];
        Ok(Mesh {
            control,
            agent_a,
            agent_b,
            pids,
        })
    }
}
