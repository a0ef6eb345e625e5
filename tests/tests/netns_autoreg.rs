//! Auto-registration end to end on network-namespace hosts (root; fails, never skips, without
//! root, `ip`, `nft` or `curl`): the real `hostmesh-control` and `hostmesh-agent` binaries in a
//! `hostmesh-lab` (build them first: `cargo build --bins`). Host `vm` runs an agent whose
//! `agent.yaml` names the `WorkloadGroup` `vm-app` and has no `WorkloadEntry` anywhere; host
//! `front` calls `http://vm-app:8080/` by name. While `vm`'s agent is connected, `front` reaches
//! it and `hostmesh describe service` says the endpoint came from auto-registration; once the
//! agent stops, the endpoint stays for the grace period, then leaves `front`'s config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, HttpApp, Lab};

const GRACE: Duration = Duration::from_secs(6);
const CLUSTER: &str = "outbound|8080||vm-app.demo.svc.cluster.local";

const REGISTRY: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-app, namespace: demo}
spec:
  hosts: [vm-app.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm-app}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vm-app, namespace: demo}
spec:
  metadata: {labels: {app: vm-app}}
  template: {serviceAccount: vm-app, ports: {http: 8080}}
"#;
const RESOLV_CONF: &str =
    "nameserver 10.77.0.254\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\n";

/// The endpoints `front`'s agent holds for the vm-app cluster (admin `/clusters`).
fn front_endpoints(front: &Host) -> Vec<String> {
    let page = front
        .netns()
        .output("curl", &["-sS", "http://127.0.0.1:15000/clusters"])
        .unwrap();
    page.lines()
        .filter_map(|l| l.strip_prefix(&format!("{CLUSTER}::")))
        .filter_map(|rest| rest.split("::").next())
        .filter(|addr| *addr != "added_via_api")
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_auto_registered_host_appears_to_others_and_leaves_after_its_grace_period() {
    let bins = Binaries::locate().expect("the hostmesh binaries (cargo build --bins)");
    let mut lab = Lab::new("autoreg").expect("a lab (needs root, ip and nft)");
    let front = lab.add_host("front").unwrap();
    let vm = lab.add_host("vm").unwrap();
    for host in [&front, &vm] {
        host.netns().set_resolv_conf(RESOLV_CONF).unwrap();
    }
    let grace = format!("autoRegistration: {{gracePeriod: {}s}}\n", GRACE.as_secs());
    let control = Control::start_with_settings(&lab, &bins, REGISTRY, &grace).unwrap();
    let _app = HttpApp::start(vm.netns(), "0.0.0.0:8080".parse().unwrap(), "vm-app").unwrap();
    let front_spec = AgentSpec {
        namespace: "demo".into(),
        service_account: "front".into(),
        ..AgentSpec::default()
    };
    let _front_agent = Agent::start(&lab, &bins, &control, &front, &front_spec).unwrap();
    assert!(
        front_endpoints(&front).is_empty(),
        "no endpoint before the vm joins"
    );

    let vm_spec = AgentSpec {
        namespace: "demo".into(),
        service_account: "vm-app".into(),
        inbound_ports: vec![(8080, "http".into())],
        workload_group: Some("vm-app".into()),
        ..AgentSpec::default()
    };
    let mut vm_agent = Agent::start(&lab, &bins, &control, &vm, &vm_spec).unwrap();
    let vm_endpoint = format!("{}:8080", vm.ip());
    wait_for(
        "the vm's endpoint at front",
        Duration::from_secs(20),
        || front_endpoints(&front) == [vm_endpoint.clone()],
    );

    // Traffic by name, through both proxies: the app sees its local proxy and front's identity.
    let answer = front
        .netns()
        .output("curl", &["-sS", "--max-time", "10", "http://vm-app:8080/"])
        .unwrap();
    assert!(answer.starts_with("vm-app"), "{answer}");
    assert!(answer.contains("peer=127.0.0.1"), "{answer}");
    assert!(
        answer.contains("URI=spiffe://cluster.local/ns/demo/sa/front"),
        "{answer}"
    );

    // Provenance, as an operator asks for it on the control server.
    let hostmesh = bins.control.with_file_name("hostmesh");
    let describe = lab
        .switch()
        .output(
            hostmesh.to_str().unwrap(),
            &[
                "describe",
                "service",
                "vm-app.demo.svc.cluster.local",
                "--address",
                &control.status_address().to_string(),
            ],
        )
        .unwrap();
    assert!(describe.contains(&vm.ip().to_string()), "{describe}");
    assert!(describe.contains("auto-registration"), "{describe}");

    // The agent leaves: the endpoint stays for the grace period, then goes.
    // Timed from before the stop: the agent's stream ends while `stop` waits for it to exit.
    let stopped = Instant::now();
    vm_agent.stop().unwrap();
    std::thread::sleep(GRACE / 2);
    assert_eq!(
        front_endpoints(&front),
        std::slice::from_ref(&vm_endpoint),
        "kept during the grace period"
    );
    wait_for(
        "the vm's endpoint to leave",
        GRACE + Duration::from_secs(20),
        || front_endpoints(&front).is_empty(),
    );
    assert!(
        stopped.elapsed() >= GRACE,
        "removed after {:?}, before the grace period of {GRACE:?}",
        stopped.elapsed()
    );
    lab.teardown();
}
