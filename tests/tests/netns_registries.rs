//! The three registries end to end on network-namespace hosts (root; fails, never skips,
//! without root, `ip`, `nft` or `curl`): the real `hostmesh-control` and `hostmesh-agent`
//! binaries in a `hostmesh-lab` (build them first: `cargo build --bins`), the control server
//! reading a static file, the Consul emulator and the Kubernetes API server emulator
//! (`hostmesh-emulators`).
//!
//! Host `front` runs an agent (nftables interception, its DNS) and calls, by name with an
//! unmodified `curl`, `web.service.consul` (Consul), `shop.retail.svc.cluster.local`
//! (Kubernetes) and `bill-service.demo.svc.cluster.local` (static file). Their endpoints are
//! plaintext apps on agentless hosts `a` and `b`; each answer names the service and host, so
//! the test sees which endpoint a request reached. Asserted: each name is reached; an update
//! in each source reaches `front` (Consul's instance moves from `a` to `b`, a Kubernetes
//! endpoint on `b` joins the one on `a`, the static endpoint moves to `b`); with Consul
//! stopped `hostmesh status` says it is unhealthy and `web` still answers from its last
//! endpoint, and after Consul comes back a change made meanwhile arrives; a host defined in
//! the static file and in Consul is served from the static file's endpoint and `hostmesh
//! describe` names both sources; `hostmesh describe service` shows each service's provenance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hostmesh_emulators::Listen;
use hostmesh_emulators::consul::{ConsulEmulator, Instance};
use hostmesh_emulators::kube::{KubeEmulator, Res, service, slice};
use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, HttpApp, Lab, Netns};

const WEB: &str = "http://web.service.consul:8080/";
const SHOP: &str = "http://shop.retail.svc.cluster.local/";
const BILL: &str = "http://bill-service.demo.svc.cluster.local:9999/";
const CLASH: &str = "http://clash.service.consul:7070/";
/// How long any change may take to reach `front` on a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

/// The static registry: bill-service on `ENDPOINT`, and the host `clash.service.consul`
/// that Consul defines too (the static file wins).
const STATIC: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-service, namespace: demo}
spec: {hosts: [bill-service.demo.svc.cluster.local], location: MESH_INTERNAL, resolution: STATIC,
  ports: [{number: 9999, name: http, protocol: HTTP}], endpoints: [{address: ENDPOINT}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: clash-override, namespace: demo}
spec: {hosts: [clash.service.consul], location: MESH_INTERNAL, resolution: STATIC,
  ports: [{number: 7070, name: http, protocol: HTTP}], endpoints: [{address: 10.77.0.2}]}
";

/// The EndpointSlice of Kubernetes service `retail/shop`: its pods at `addresses`, port 8081.
fn shop_slice(addresses: &[&str]) -> serde_json::Value {
    slice("retail", "shop-1", "shop", addresses, &[("http", 8081)])
}

fn static_registry(bill_endpoint: Ipv4Addr) -> String {
    STATIC.replace("ENDPOINT", &bill_endpoint.to_string())
}

/// `curl URL` on `front`: the body, or the error.
fn curl(front: &Host, url: &str) -> Result<String, String> {
    front
        .netns()
        .output("curl", &["-sS", "--max-time", "10", url])
        .map_err(|e| e.to_string())
}

/// Polls `curl URL` on `front` until the answer starts with `want`; returns it.
fn wait_answer(front: &Host, url: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let answer = curl(front, url);
        if let Ok(a) = &answer
            && a.starts_with(want)
        {
            return a.clone();
        }
        assert!(
            start.elapsed() < BOUND,
            "{url} from front: never {want:?} within {BOUND:?}; last {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `hostmesh ARGS… --address STATUS` in the switch namespace: its output.
fn hostmesh(lab: &Lab, bins: &Binaries, control: &Control, args: &[&str]) -> String {
    let bin = bins.control.with_file_name("hostmesh");
    let address = control.status_address().to_string();
    let mut all = args.to_vec();
    all.extend(["--address", &address]);
    lab.switch().output(bin.to_str().unwrap(), &all).unwrap()
}

/// The `consul` row of `hostmesh status` says healthy (`yes`) or not (`NO`).
fn consul_healthy(status: &str) -> Option<bool> {
    let row = status.lines().find(|l| l.starts_with("consul "))?;
    Some(!row.contains(" NO "))
}

/// Polls `hostmesh status` until the `consul` row says `healthy`; returns the status.
fn wait_consul_health(lab: &Lab, bins: &Binaries, control: &Control, healthy: bool) -> String {
    let start = Instant::now();
    loop {
        let status = hostmesh(lab, bins, control, &["status"]);
        if consul_healthy(&status) == Some(healthy) {
            return status;
        }
        assert!(
            start.elapsed() < BOUND,
            "Consul never healthy={healthy}: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the emulators listen. `hostmesh-control` runs in the lab's switch namespace, so
/// 127.0.0.1 of the test's own namespace is out of its reach, and the bridge address
/// 10.77.0.254 exists only inside the switch namespace. So each emulator's socket is bound
/// on 127.0.0.1 *inside the switch namespace*, by a thread that entered it
/// ([`Netns::run`]); a socket stays in the namespace it was made in, so the emulator serves
/// it from the test's Tokio runtime, and binds there again when it resumes after an outage.
fn in_switch(switch: &Netns) -> Listen {
    let switch = switch.clone();
    Listen::with(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), move |address| {
        switch
            .run(|| std::net::TcpListener::bind(address))
            .map_err(std::io::Error::other)?
    })
}

#[test]
fn consul_kubernetes_and_static_services_reach_a_meshed_host_by_name() {
    hostmesh_lab::require_tool("curl", "install curl (scripts/setup)").unwrap();
    let bins = Binaries::locate().expect("the hostmesh binaries (cargo build --bins)");
    let mut lab = Lab::new("registries").expect("a lab (needs root, ip and nft)");
    let front = lab.add_host("front").unwrap();
    let a = lab.add_host("a").unwrap();
    let b = lab.add_host("b").unwrap();
    // Plaintext apps on the agentless hosts; each answer says which service and host.
    let mut apps = Vec::new();
    for (host, name) in [(&a, "a"), (&b, "b")] {
        for (port, service) in [
            (8080, "web"),
            (8081, "shop"),
            (9999, "bill"),
            (7070, "clash"),
        ] {
            let text = format!("{service}@{name}");
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            apps.push(HttpApp::start(host.netns(), addr, &text).unwrap());
        }
    }

    // The emulators, serving in the switch namespace from this runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let consul = runtime.block_on(ConsulEmulator::start_on(in_switch(lab.switch()), None));
    consul.register("web", Instance::new("web-1", &a.ip().to_string(), 8080));
    consul.register("clash", Instance::new("clash-1", &b.ip().to_string(), 7070));
    let kube = runtime.block_on(KubeEmulator::start_on(in_switch(lab.switch()), false));
    kube.apply(
        Res::Services,
        service("retail", "shop", "10.96.0.20", &[("http", 80)]),
    );
    let a_ip = a.ip().to_string();
    let b_ip = b.ip().to_string();
    kube.apply(Res::EndpointSlices, shop_slice(&[&a_ip]));
    let kubeconfig = kube.write_kubeconfig(&lab.subdir("kube").unwrap());
    let settings = format!(
        "consul:\n  address: {}\n  wait: 2m\nkubernetes:\n  kubeconfig: {}\n  namespaces: [retail]\n",
        consul.url(),
        kubeconfig.display()
    );
    let control =
        Control::start_with_settings(&lab, &bins, &static_registry(a.ip()), &settings).unwrap();
    let spec = AgentSpec {
        namespace: "demo".into(),
        service_account: "front".into(),
        ..AgentSpec::default()
    };
    let _front_agent = Agent::start(&lab, &bins, &control, &front, &spec).unwrap();

    // Each source's service, by name, through front's agent.
    wait_answer(&front, WEB, "web@a");
    wait_answer(&front, SHOP, "shop@a");
    let answer = wait_answer(&front, BILL, "bill@a");
    // Plaintext (the endpoint has no agent): no client certificate forwarded.
    assert!(answer.contains("client=-"), "{answer}");
    // Static beats Consul for the host both define: the static endpoint (on a) answers.
    wait_answer(&front, CLASH, "clash@a");

    // An update in each source reaches front.
    consul.register("web", Instance::new("web-1", &b_ip, 8080));
    wait_answer(&front, WEB, "web@b");
    kube.apply(Res::EndpointSlices, shop_slice(&[&a_ip, &b_ip]));
    wait_answer(&front, SHOP, "shop@b");
    wait_answer(&front, SHOP, "shop@a");
    control
        .write_registry("mesh.yaml", &static_registry(b.ip()))
        .unwrap();
    wait_answer(&front, BILL, "bill@b");

    // Provenance of each, as an operator asks for it.
    let describe = |host: &str| hostmesh(&lab, &bins, &control, &["describe", "service", host]);
    let out = describe("web.service.consul");
    assert!(
        out.contains("From:      consul: consul service web"),
        "{out}"
    );
    assert_endpoint(&out, &format!("{b_ip}:8080"), "consul", "instance web-1");
    let out = describe("shop.retail.svc.cluster.local");
    assert!(
        out.contains("From:      kubernetes: Service retail/shop"),
        "{out}"
    );
    for ip in [&a_ip, &b_ip] {
        assert_endpoint(
            &out,
            &format!("{ip}:8081"),
            "kubernetes",
            "EndpointSlice retail/shop-1",
        );
    }
    let out = describe("bill-service.demo.svc.cluster.local");
    assert!(
        out.contains("From:      static: ServiceEntry demo/bill-service"),
        "{out}"
    );
    assert_endpoint(
        &out,
        &format!("{b_ip}:9999"),
        "static",
        "ServiceEntry demo/bill-service",
    );
    assert!(!out.contains(&format!("{a_ip}:9999")), "moved away: {out}");
    let out = describe("clash.service.consul");
    assert!(
        out.contains("Host clash.service.consul: static (ServiceEntry demo/clash-override) kept over consul (consul service clash)"),
        "{out}"
    );
    assert!(!out.contains(&format!("{b_ip}:7070")), "{out}");

    // Consul goes away: status says so, and web keeps answering from its last endpoint.
    let status = hostmesh(&lab, &bins, &control, &["status"]);
    assert_eq!(consul_healthy(&status), Some(true), "{status}");
    consul.stop();
    let status = wait_consul_health(&lab, &bins, &control, false);
    assert!(status.contains("cannot reach Consul"), "{status}");
    for _ in 0..3 {
        let answer = curl(&front, WEB);
        assert!(
            answer.as_ref().is_ok_and(|a| a.starts_with("web@b")),
            "web during the Consul outage: {answer:?}"
        );
    }
    // A change made while the control server could not see it arrives once Consul is back.
    consul.register("web", Instance::new("web-1", &a_ip, 8080));
    runtime.block_on(consul.resume());
    wait_answer(&front, WEB, "web@a");
    // Healthy again once every query (the catalog's and each service's) has been answered.
    wait_consul_health(&lab, &bins, &control, true);

    drop(apps);
    lab.teardown();
}

/// The `describe` row of endpoint `address` names `source` and contains `object`.
fn assert_endpoint(out: &str, address: &str, source: &str, object: &str) {
    let row = out
        .lines()
        .find(|l| l.contains(address))
        .unwrap_or_else(|| panic!("no endpoint {address}:\n{out}"));
    assert!(row.split_whitespace().any(|w| w == source), "{row}");
    assert!(row.contains(object), "{row}");
}
