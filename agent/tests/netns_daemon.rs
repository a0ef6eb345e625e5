//! The real daemon in a network namespace (root) with interception on: the `inet hostmesh`
//! table is there once the agent says READY, and gone after SIGTERM. Fails, never skips,
//! without root, `ip` or `nft`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::agent::Agent;
use support::control::{Control, Pki};
use support::netns::{Netns, require_root_and_tools};

const REGISTRY: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-service, namespace: demo}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9999, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.5}]
"#;

fn tables(ns: &Netns) -> Vec<(String, String)> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-j", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("table"))
        .map(|t| {
            (
                t["family"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_is_installed_while_running_and_removed_on_sigterm() {
    require_root_and_tools();
    let ns = Netns::new("agent");
    ns.nft_script("table inet other {\n  chain c {\n    type filter hook output priority 0; policy accept;\n  }\n}\n");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    // The control server's socket is made inside the namespace; it serves from this process.
    let listener = ns.run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let control = Control::start_on(listener, &pki, REGISTRY, Duration::from_secs(3600)).await;
    std::fs::write(dir.path().join("join-token"), pki.token("demo", "bill")).unwrap();
    std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "controlAddress: {control}\nnamespace: demo\nserviceAccount: bill\n\
             inboundPorts: {{9999: http}}\nstateDir: {state}\njoinTokenPath: {token}\n\
             rootCertPath: {root}\ndns:\n  resolvConf: {resolv}\n",
            control = control.addr,
            state = dir.path().join("state").display(),
            token = dir.path().join("join-token").display(),
            root = pki.root_cert().display(),
            resolv = dir.path().join("resolv.conf").display(),
        ),
    )
    .unwrap();

    let mut agent = Agent::start_in(Some(ns.name()), &config, dir.path());
    agent.wait_notification("READY=1").await;
    let running = tables(&ns);
    assert!(
        running.contains(&("inet".into(), "hostmesh".into())),
        "{running:?}"
    );
    assert!(
        running.contains(&("inet".into(), "other".into())),
        "{running:?}"
    );

    assert!(agent.terminate().success(), "SIGTERM exits 0");
    let stopped = tables(&ns);
    assert_eq!(stopped, vec![("inet".to_owned(), "other".to_owned())]);
    control.stop().await;
}
