//! The agent end to end on hosts made of network namespaces (root; fails, never skips, without
//! root, `ip`, `nft`, `curl` or `tcpdump`): the real `hostmesh-control` and `hostmesh-agent`
//! binaries in a `hostmesh-lab` (build them first: `cargo build --bins`, which
//! `cargo test --workspace` does). Each test has its own lab: a control server on the switch,
//! host `front` (10.77.0.1) and host `bill` (10.77.0.2, app on :9999, `bill-service` in the
//! registry), both with agents, and a table `inet other` made on `front` before its agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../agent/tests/support/dns.rs"]
#[allow(dead_code)]
mod dns;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, HttpApp, Lab, SWITCH_IP};

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
metadata: {name: bill, namespace: demo}
spec: {address: 10.77.0.2, serviceAccount: bill, labels: {app: bill-service}}
"#;
const RESOLV_CONF: &str =
    "nameserver 10.77.0.254\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\n";
const OTHER_TABLE: &str = "table inet other {\n  chain c {\n    type filter hook output priority 0; policy accept;\n  }\n}\n";
const FRONT_ID: &str = "spiffe://cluster.local/ns/demo/sa/front";

struct Mesh {
    front_agent: Agent,
    bill_agent: Agent,
    control: Control,
    front: Host,
    bill: Host,
    _apps: Vec<HttpApp>,
    bins: Binaries,
    lab: Lab,
}

impl Mesh {
    fn new(tag: &str) -> Self {
        for tool in ["curl", "tcpdump"] {
            let found = std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "`{tool}` is missing: run scripts/setup");
        }
        let bins = Binaries::locate().expect("the hostmesh binaries (cargo build --bins)");
        let mut lab = Lab::new(tag).expect("a lab (needs root, ip and nft)");
        let front = lab.add_host("front").unwrap();
        let bill = lab.add_host("bill").unwrap();
        for host in [&front, &bill] {
            host.netns().set_resolv_conf(RESOLV_CONF).unwrap();
        }
        nft_script(&front, OTHER_TABLE);
        let control = Control::start(&lab, &bins, REGISTRY).unwrap();
        let apps = [
            (9999, "bill-service"),
            (22, "ssh-port"),
            (2222, "port-2222"),
        ]
        .into_iter()
        .map(|(port, text)| {
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
            HttpApp::start(bill.netns(), addr, text).unwrap()
        })
        .collect();
        let bill_spec = AgentSpec {
            namespace: "demo".into(),
            service_account: "bill".into(),
            labels: vec![("app".into(), "bill-service".into())],
            inbound_ports: vec![(9999, "http".into())],
            ..AgentSpec::default()
        };
        let bill_agent = Agent::start(&lab, &bins, &control, &bill, &bill_spec).unwrap();
        let front_spec = AgentSpec {
            namespace: "demo".into(),
            service_account: "front".into(),
            ..AgentSpec::default()
        };
        let front_agent = Agent::start(&lab, &bins, &control, &front, &front_spec).unwrap();
        Self {
            front_agent,
            bill_agent,
            control,
            front,
            bill,
            _apps: apps,
            bins,
            lab,
        }
    }

    /// `curl URL` from `front` with extra arguments; the body, or the error.
    fn curl(&self, url: &str, extra: &[&str]) -> Result<String, String> {
        let mut args = vec!["-sS", "--max-time", "10"];
        args.extend_from_slice(extra);
        args.push(url);
        self.front
            .netns()
            .output("curl", &args)
            .map_err(|e| e.to_string())
    }

    /// A counter from `front`'s agent metrics (`hostmesh_proxy_connections_total`).
    fn front_connections(&self, outcome: &str) -> u64 {
        let page = self
            .front
            .netns()
            .output("curl", &["-sS", "http://127.0.0.1:15020/stats/prometheus"])
            .unwrap();
        page.lines()
            .filter(|l| l.starts_with("hostmesh_proxy_connections_total{"))
            .filter(|l| {
                l.contains("direction=\"Outbound\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

fn nft_script(host: &Host, script: &str) {
    use std::io::Write;
    let mut child = host
        .netns()
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused:\n{script}");
}

/// `nft -j list ruleset` on `host`, as (family, table name) → that table's objects in JSON.
fn tables(host: &Host) -> std::collections::BTreeMap<(String, String), Vec<serde_json::Value>> {
    let out = host
        .netns()
        .output("nft", &["-j", "list", "ruleset"])
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut tables = std::collections::BTreeMap::new();
    for object in json["nftables"].as_array().unwrap() {
        let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let (Some(family), Some(name)) = (
            body["family"].as_str(),
            body.get("table")
                .or(body.get("name"))
                .and_then(|n| n.as_str()),
        ) else {
            continue;
        };
        let key = (
            family.to_owned(),
            if kind == "table" {
                name
            } else {
                body["table"].as_str().unwrap()
            }
            .to_owned(),
        );
        let mut body = body.clone();
        // Handles are kernel bookkeeping, not content.
        if let Some(o) = body.as_object_mut() {
            o.remove("handle");
        }
        tables
            .entry(key)
            .or_insert_with(Vec::new)
            .push(serde_json::json!({ kind: body }));
    }
    tables
}

fn table_names(host: &Host) -> Vec<String> {
    tables(host)
        .keys()
        .map(|(f, n)| format!("{f} {n}"))
        .collect()
}

/// Retries `f` (bounded) until it returns `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn curl_reaches_bill_service_by_name_and_only_tls_crosses_the_wire() {
    let mesh = Mesh::new("e2ename");
    let pcap = mesh.lab.dir().join("bill.pcap");
    let mut capture = mesh
        .lab
        .spawn(
            mesh.lab.switch(),
            "tcpdump",
            "tcpdump".as_ref(),
            &[
                "-i",
                mesh.bill.switch_port(),
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                pcap.to_str().unwrap(),
                "tcp",
            ],
        )
        .unwrap();
    eventually("tcpdump listening", || {
        std::fs::read_to_string(capture.log_path())
            .ok()
            .filter(|log| log.contains("listening on"))
    });
    let marker = format!("plaintext-marker-{}", std::process::id());
    let answer = mesh
        .curl(
            &format!("http://bill-service:9999/{marker}"),
            &["-H", &format!("x-secret: {marker}")],
        )
        .unwrap();
    assert!(
        answer.starts_with("bill-service peer=127.0.0.1:"),
        "the app sees its local proxy: {answer:?}"
    );
    assert!(
        answer.contains(&format!("URI={FRONT_ID}")),
        "the caller's identity, verified over mTLS: {answer:?}"
    );
    // Packets reach the file as tcpdump sees them (-U, immediate mode): wait for the handshake.
    eventually("the TLS ClientHello in the capture", || {
        let bytes = std::fs::read(&pcap).ok()?;
        bytes
            .windows(14)
            .any(|w| w == b"istio-http/1.1")
            .then_some(())
    });
    capture.stop().unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"istio-http/1.1"),
        "no TLS ClientHello with Istio's ALPN in {} captured bytes",
        bytes.len()
    );
    assert!(
        has(&[0x17, 0x03, 0x03]),
        "no TLS application data record on the wire"
    );
    assert!(
        !has(marker.as_bytes()),
        "the request's plaintext crossed the wire"
    );
    assert!(
        !has(b"bill-service peer="),
        "the answer's plaintext crossed the wire"
    );
    assert_eq!(mesh.front_connections("Passthrough"), 0);
}

#[test]
fn the_hostmesh_table_is_there_while_running_and_gone_after_stop_and_after_kill9_and_cleanup() {
    let mut mesh = Mesh::new("e2enft");
    let other_before = tables(&mesh.front)[&("inet".to_owned(), "other".to_owned())].clone();
    assert_eq!(table_names(&mesh.front), ["inet hostmesh", "inet other"]);
    assert_eq!(table_names(&mesh.bill), ["inet hostmesh"]);

    mesh.front_agent.stop().unwrap();
    assert_eq!(
        table_names(&mesh.front),
        ["inet other"],
        "SIGTERM removes exactly its table"
    );

    mesh.front_agent.restart().unwrap();
    assert_eq!(table_names(&mesh.front), ["inet hostmesh", "inet other"]);
    mesh.front_agent.kill9().unwrap();
    assert_eq!(
        table_names(&mesh.front),
        ["inet hostmesh", "inet other"],
        "kill -9 leaves the table"
    );
    mesh.front_agent.cleanup().unwrap();
    assert_eq!(
        table_names(&mesh.front),
        ["inet other"],
        "cleanup removes exactly its table"
    );
    let other_after = tables(&mesh.front)[&("inet".to_owned(), "other".to_owned())].clone();
    assert_eq!(other_before, other_after, "the other table is intact");
    mesh.front_agent.cleanup().unwrap();
    assert_eq!(
        table_names(&mesh.front),
        ["inet other"],
        "cleanup is idempotent"
    );
}

#[test]
fn port_22_and_the_agents_own_connections_are_not_intercepted() {
    let mesh = Mesh::new("e2eskip");
    let before = mesh.front_connections("Passthrough");
    let answer = mesh.curl("http://10.77.0.2:22/", &[]).unwrap();
    assert!(answer.starts_with("ssh-port peer=10.77.0.1:"), "{answer:?}");
    assert_eq!(
        mesh.front_connections("Passthrough"),
        before,
        "port 22 went through the proxy"
    );
    // Control: any other port is captured (and passed through, the mesh allowing any).
    let answer = mesh.curl("http://10.77.0.2:2222/", &[]).unwrap();
    assert!(
        answer.starts_with("port-2222 peer=10.77.0.1:"),
        "{answer:?}"
    );
    assert_eq!(
        mesh.front_connections("Passthrough"),
        before + 1,
        "port 2222 was not captured"
    );
    // The proxy's own (marked) connection to bill is not captured again: one outbound
    // connection is counted per request, none passes through.
    let proxied = mesh.front_connections("Proxied");
    mesh.curl("http://bill-service:9999/", &[]).unwrap();
    assert_eq!(mesh.front_connections("Proxied"), proxied + 1);
    assert_eq!(mesh.front_connections("Passthrough"), before + 1);
    // The agent's own connection to the control server is up while the table is installed.
    let streams = mesh
        .lab
        .switch()
        .output("ss", &["-Htn", "state", "established", "sport", "= :15012"])
        .unwrap();
    assert!(
        streams.contains("10.77.0.1:"),
        "front's agent has no connection to the control server: {streams}"
    );
}

#[test]
fn without_the_control_server_traffic_flows_and_a_restarted_agent_serves_its_last_good_config() {
    let mut mesh = Mesh::new("e2elast");
    // An abrupt outage (SIGTERM waits for the agents' open streams, up to the lab's grace).
    mesh.control.kill9().unwrap();
    let answer = mesh.curl("http://bill-service:9999/", &[]).unwrap();
    assert!(
        answer.starts_with("bill-service peer=127.0.0.1:"),
        "{answer:?}"
    );
    for agent in [&mut mesh.front_agent, &mut mesh.bill_agent] {
        agent.stop().unwrap();
        let started = Instant::now();
        agent.restart().unwrap();
        let said = agent.process().unwrap().notifications().join(" | ");
        assert!(said.contains("from the last good config"), "{said}");
        // Generous on a loaded machine; the daemon's own test bounds it at one second.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "READY after {:?}",
            started.elapsed()
        );
    }
    let answer = mesh.curl("http://bill-service:9999/", &[]).unwrap();
    assert!(
        answer.starts_with("bill-service peer=127.0.0.1:"),
        "{answer:?}"
    );
    assert!(answer.contains(&format!("URI={FRONT_ID}")), "{answer:?}");
}

#[test]
fn a_name_outside_the_mesh_resolves_through_the_hosts_upstream_resolver() {
    let mesh = Mesh::new("e2edns");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let socket = mesh
        .lab
        .switch()
        .run(|| std::net::UdpSocket::bind((SWITCH_IP, 53)).unwrap())
        .unwrap();
    let upstream = dns::FakeUpstream::from_std(socket, Ipv4Addr::new(192, 0, 2, 7));
    let out = mesh
        .front
        .netns()
        .output("getent", &["ahostsv4", "outside.example.org"])
        .unwrap();
    assert!(out.starts_with("192.0.2.7 "), "{out:?}");
    assert!(
        upstream.asked().iter().any(|n| n == "outside.example.org."),
        "{:?}",
        upstream.asked()
    );
    // A mesh name is answered by the agent, never asked upstream.
    let out = mesh
        .front
        .netns()
        .output("getent", &["ahostsv4", "bill-service"])
        .unwrap();
    assert!(
        out.starts_with("240.240."),
        "bill-service's virtual address: {out:?}"
    );
    assert!(
        upstream
            .asked()
            .iter()
            .all(|n| !n.starts_with("bill-service")),
        "{:?}",
        upstream.asked()
    );
    let _ = (&mesh.bins, &mesh.control);
}

/// An agent whose liveness round is 0.5 s (`WATCHDOG_USEC` of 1 s) and `interception.failMode`.
fn liveness_agent(lab: &Lab, bins: &Binaries, control: &Control, host: &Host, mode: &str) -> Agent {
    let spec = AgentSpec {
        namespace: "demo".into(),
        service_account: host.name().into(),
        extra_yaml: format!("interception:\n  failMode: {mode}\n"),
        env: vec![("WATCHDOG_USEC".into(), "1000000".into())],
        ..AgentSpec::default()
    };
    Agent::start(lab, bins, control, host, &spec).unwrap()
}

#[test]
fn a_proxy_that_stops_answering_removes_the_table_fail_open_and_keeps_it_fail_closed() {
    let bins = Binaries::locate().expect("the hostmesh binaries (cargo build --bins)");
    let mut lab = Lab::new("e2efail").expect("a lab (needs root, ip and nft)");
    let open = lab.add_host("open").unwrap();
    let closed = lab.add_host("closed").unwrap();
    let control = Control::start(&lab, &bins, "").unwrap();
    let mut open_agent = liveness_agent(&lab, &bins, &control, &open, "open");
    let mut closed_agent = liveness_agent(&lab, &bins, &control, &closed, "closed");
    // The proxy "stops answering": its outbound listener's SYNs are dropped on the host.
    let block = "table inet block {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 15001 drop\n  }\n}\n";
    for host in [&open, &closed] {
        nft_script(host, block);
    }
    eventually("fail-open removes the table", || {
        (table_names(&open) == ["inet block"]).then_some(())
    });
    let log = |agent: &mut Agent| agent.process().unwrap().log_tail(400);
    eventually("fail-closed says so", || {
        log(&mut closed_agent)
            .contains("fail-closed: interception table kept")
            .then_some(())
    });
    assert_eq!(
        table_names(&closed),
        ["inet block", "inet hostmesh"],
        "fail-closed keeps it"
    );
    assert!(log(&mut open_agent).contains("fail-open: interception table removed"));
    // The proxy answers again: fail-open installs the table again.
    open.netns()
        .output("nft", &["delete", "table", "inet", "block"])
        .unwrap();
    eventually("the table installed again", || {
        (table_names(&open) == ["inet hostmesh"]).then_some(())
    });
}
