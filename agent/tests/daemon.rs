//! `hostmesh-agent run` as a process on 127.0.0.1 (interception off), against an in-process
//! control server with a real CA: a first start with a join token, the pages, the state
//! directory, a restart with the control server gone, an expired certificate, bad settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::agent::{Agent, eventually, free_port, get, request};
use support::control::{Control, Pki};

/// A loopback address of this test process (`127.3.<pid>.<host>`).
fn ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        3,
        (std::process::id() % 251) as u8,
        host,
    ))
}

/// An HTTP/1.1 app on 127.0.0.1 that answers every request with `x-app: bill`.
fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || serve_app(tcp));
        }
    });
    addr
}

fn serve_app(mut tcp: std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        let answer = b"HTTP/1.1 200 OK\r\nx-app: bill\r\ncontent-length: 8\r\n\r\nfrom app";
        if tcp.write_all(answer).is_err() {
            return;
        }
    }
}

fn registry(vip: SocketAddr, workload: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bill-service, namespace: demo}}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  addresses: [{vip_ip}]
  location: MESH_INTERNAL
  ports: [{{number: {vip_port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: bill-service}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-v1, namespace: demo}}
spec:
  address: {w_ip}
  ports: {{http: {w_port}}}
  labels: {{app: bill-service}}
  serviceAccount: bill
"#,
        vip_ip = vip.ip(),
        vip_port = vip.port(),
        w_ip = workload.ip(),
        w_port = workload.port(),
    )
}

/// One host: its files, ports and addresses.
struct Host {
    dir: tempfile::TempDir,
    pki: Pki,
    app: SocketAddr,
    vip: SocketAddr,
    admin: SocketAddr,
    health: SocketAddr,
}

impl Host {
    /// Files and addresses for host number `n` (distinct per test).
    fn new(n: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        Self {
            pki,
            app: app(),
            vip: SocketAddr::new(ip(n * 10), free_port()),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            health: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir,
        }
    }

    fn workload(&self, n: u8) -> SocketAddr {
        SocketAddr::new(ip(n * 10 + 1), self.app.port())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `agent.yaml` for control server `control` and returns its path.
    fn config(&self, n: u8, control: SocketAddr) -> PathBuf {
        let workload = self.workload(n);
        let yaml = format!(
            "controlAddress: {control}\nnamespace: demo\nserviceAccount: bill\nworkloadName: bill-v1\n\
             hostIP: {host_ip}\nlabels: {{app: bill-service}}\ninboundPorts: {{{port}: http}}\n\
             stateDir: {state}\njoinTokenPath: {token}\nrootCertPath: {root}\n\
             firstConfigTimeout: 300ms\nadminPort: {admin}\nhealthPort: {health}\n\
             listeners:\n  outbound: {vip}\n  inbound: {workload}\n\
             interception:\n  enabled: false\n\
             dns:\n  listen: 127.0.0.1:{dns}\n  resolvConf: {resolv}\n",
            host_ip = workload.ip(),
            port = workload.port(),
            state = self.path("state").display(),
            token = self.path("join-token").display(),
            root = self.pki.root_cert().display(),
            admin = self.admin.port(),
            health = self.health.port(),
            vip = self.vip,
            dns = free_port(),
            resolv = self.path("resolv.conf").display(),
        );
        let path = self.path("agent.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// The health page binds every address; the test reaches it on loopback.
fn health(host: &Host, path: &str) -> (u16, String) {
    get(host.health, path, "localhost")
}

/// A control server with the registry that points host `n`'s service at its workload.
async fn control_for(host: &Host, n: u8) -> Control {
    Control::start(
        &host.pki,
        &registry(host.vip, host.workload(n)),
        Duration::from_secs(3600),
    )
    .await
}

fn through_mesh(host: &Host) -> (u16, String) {
    get(host.vip, "/", "bill-service.demo.svc.cluster.local")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_joins_serves_and_restarts_from_its_last_good_config() {
    let n = 1;
    let host = Host::new(n);
    let control = control_for(&host, n).await;
    std::fs::write(host.path("join-token"), host.pki.token("demo", "bill")).unwrap();
    let config = host.config(n, control.addr);

    // First start: join token → certificate → config → ready.
    let mut agent = Agent::start(&config, host.dir.path());
    let ready = agent.wait_notification("READY=1").await;
    assert!(
        ready.contains("STATUS=ready: serving the config from the control server"),
        "{ready}"
    );
    assert!(
        agent
            .notifications
            .iter()
            .any(|n| n.contains("STATUS=obtaining this host's certificate")),
        "{:?}",
        agent.notifications
    );
    assert_eq!(health(&host, "/healthz/ready").0, 200);
    let (status, body) = through_mesh(&host);
    assert_eq!(
        (status, body.as_str()),
        (200, "from app"),
        "outbound → mTLS → inbound → app"
    );

    // The pages.
    let (status, dump) = get(host.admin, "/config_dump", "localhost");
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["source"], "control server");
    let clusters = dump["clusters"].to_string();
    assert!(clusters.contains("outbound|"), "{clusters}");
    assert!(
        clusters.contains("bill-service.demo.svc.cluster.local"),
        "{clusters}"
    );
    assert!(
        dump["names"]["bill-service.demo.svc.cluster.local"].is_array(),
        "{dump}"
    );
    let (_, certs) = get(host.admin, "/certs", "localhost");
    let certs: serde_json::Value = serde_json::from_str(&certs).unwrap();
    assert_eq!(certs["identity"], "spiffe://cluster.local/ns/demo/sa/bill");
    let left = certs["secondsUntilExpiry"].as_u64().unwrap();
    assert!((3000..=3600).contains(&left), "{certs}");
    let (_, clusters) = get(host.admin, "/clusters", "localhost");
    assert!(
        clusters.contains(&format!("::{}::health_flags::healthy", host.workload(n))),
        "{clusters}"
    );
    let (_, stats) = health(&host, "/stats/prometheus");
    assert!(
        stats.contains(
            "hostmesh_proxy_requests_total{direction=\"Outbound\",response_code=\"200\"} 1"
        ),
        "{stats}"
    );
    let (status, said) = request(host.admin, "POST", "/logging?level=debug", "localhost");
    assert_eq!((status, said.as_str()), (200, "log filter set to debug\n"));

    // The state directory holds the certificate, the config and the name table.
    let state = host.path("state");
    for file in [
        "key.pem",
        "cert-chain.pem",
        "xds-resources.pb",
        "dns-names.json",
    ] {
        eventually(&format!("{file} stored"), || {
            state.join(file).exists().then_some(())
        });
    }
    let names = std::fs::read_to_string(state.join("dns-names.json")).unwrap();
    assert!(
        names.contains("bill-service.demo.svc.cluster.local"),
        "{names}"
    );

    assert!(agent.terminate().success(), "SIGTERM exits 0");
    agent.wait_notification("STOPPING=1").await;
    drop(agent);

    // Control server gone: the restart serves the last good config within a second.
    control.stop().await;
    std::fs::remove_file(host.path("join-token")).unwrap();
    let started = Instant::now();
    let mut agent = Agent::start(&config, host.dir.path());
    let ready = agent.wait_notification("READY=1").await;
    let (status, body) = through_mesh(&host);
    let elapsed = started.elapsed();
    assert!(ready.contains("from the last good config"), "{ready}");
    assert_eq!((status, body.as_str()), (200, "from app"));
    assert!(elapsed < Duration::from_secs(1), "served after {elapsed:?}");
    let (_, dump) = get(host.admin, "/config_dump", "localhost");
    assert!(dump.contains("\"source\": \"last good config\""), "{dump}");
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_host_waits_for_enrolment_and_then_joins() {
    let n = 3;
    let host = Host::new(n);
    let control = control_for(&host, n).await;
    let config = host.config(n, control.addr);

    // As after a package install: no certificate and no join token yet.
    let mut agent = Agent::start(&config, host.dir.path());
    let waiting = agent.wait_notification("waiting for enrolment").await;
    assert!(
        waiting.contains(&host.path("join-token").display().to_string()),
        "{waiting}"
    );
    assert!(
        !agent.notifications.iter().any(|n| n.contains("READY=1")),
        "{:?}",
        agent.notifications
    );
    assert!(
        !host.path("state").join("cert-chain.pem").exists(),
        "nothing obtained before enrolment"
    );

    std::fs::write(host.path("join-token"), host.pki.token("demo", "bill")).unwrap();
    let ready = agent.wait_notification("READY=1").await;
    assert!(ready.contains("from the control server"), "{ready}");
    assert!(host.path("state").join("cert-chain.pem").exists());
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_without_a_token_exits_with_the_rejoin_message() {
    let n = 2;
    let host = Host::new(n);
    write_expired_certificate(&host.pki, &host.path("state"));
    // No control server is needed: nothing can be asked without a credential.
    let config = host.config(n, SocketAddr::from(([127, 0, 0, 1], free_port())));
    let output = Command::new(env!("CARGO_BIN_EXE_hostmesh-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the stored certificate expired at"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hostmesh-control token create --namespace demo --service-account bill"),
        "{stderr}"
    );
}

#[test]
fn bad_settings_are_all_reported_and_the_agent_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "namespace: Demo\nadminPort: 0\ninterception:\n  failMode: maybe\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hostmesh-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("HOSTMESH_HEALTH_PORT", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "line 1 (namespace): \"Demo\"",
        "line 2 (adminPort): \"0\" is not a port",
        "line 4 (interception.failMode): \"maybe\"",
        "$HOSTMESH_HEALTH_PORT (healthPort): \"x\" is not a port",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
    std::fs::write(&config, "namespace: demo\ninterception:\n  enable: true\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hostmesh-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3: unknown key `interception.enable`"),
        "{stderr}"
    );
}

/// A certificate for demo/bill, signed by the CA, that expired yesterday.
fn write_expired_certificate(pki: &Pki, state: &Path) {
    let ca_dir = pki.dir.join("ca");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca-key.pem")).unwrap())
            .unwrap();
    let ca_cert = std::fs::read_to_string(ca_dir.join("ca-cert.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://cluster.local/ns/demo/sa/bill".try_into().unwrap(),
    )];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now - time::Duration::days(1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(state).unwrap();
    let chain = format!(
        "{}{}",
        cert.pem(),
        std::fs::read_to_string(ca_dir.join("cert-chain.pem")).unwrap_or(ca_cert)
    );
    std::fs::write(state.join("cert-chain.pem"), chain).unwrap();
    std::fs::write(state.join("key.pem"), key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        state.join("key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}
