#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use super::*;

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<AgentConfig, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load(&path, true, &|var| env.get(var).cloned()).map_err(|e| {
        ConfigErrors(
            e.0.into_iter()
                .map(|l| l.replace(&path.display().to_string(), "agent.yaml"))
                .collect(),
        )
    })
}

#[test]
fn an_empty_file_gives_every_default() {
    let c = load_text("", &[]).unwrap();
    assert_eq!(c.control_address.to_string(), "hostmesh-control:15012");
    assert_eq!(
        c.identity.to_string(),
        "spiffe://cluster.local/ns/default/sa/default"
    );
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/hostmesh"));
    assert_eq!(c.join_token_path, PathBuf::from("/etc/hostmesh/join-token"));
    assert_eq!(c.admin_addr().to_string(), "127.0.0.1:15000");
    assert_eq!(c.health_addr().to_string(), "0.0.0.0:15020");
    assert_eq!(c.listeners.outbound.to_string(), "0.0.0.0:15001");
    assert_eq!(c.dns.listen.to_string(), "127.0.0.1:15053");
    assert!(c.interception.enabled);
    assert_eq!(c.interception.excluded_ports, vec![22]);
    assert_eq!(c.interception.fail_mode, FailMode::Open);
    assert_eq!(c.interception.mark, Some(0x539));
    assert_eq!(c.first_config_timeout, Duration::from_millis(500));
    assert_eq!(c.proxy_threads, None, "the runtime's default: two threads");
}

#[test]
fn a_missing_file_is_fine_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    assert!(load(&path, false, &|_| None).is_ok());
    let err = load(&path, true, &|_| None).unwrap_err().to_string();
    assert!(err.contains("absent.yaml: No such file"), "{err}");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let err = load_text(
        "namespace: demo\ninterception:\n  enabled: true\n  failmode: open\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(
        err.0[0].starts_with("agent.yaml: line 4: unknown key `interception.failmode`; known keys here: enabled, excludedPorts"),
        "{err}"
    );
    let err = load_text("controlAdress: x:1\n", &[]).unwrap_err();
    assert!(
        err.0[0].starts_with("agent.yaml: line 1: unknown key `controlAdress`"),
        "{err}"
    );
}

#[test]
fn every_bad_setting_is_reported_at_once() {
    let err = load_text(
        "controlAddress: nowhere\nnamespace: Demo\ninboundPorts:\n  8080: http\n  0: tcp\n  9090: smtp\ninterception:\n  failMode: sideways\n  excludedPorts: [22, 70000]\n  mark: 0\ndns:\n  listen: 10.0.0.1:53\n",
        &[("HOSTMESH_ADMIN_PORT", "none")],
    )
    .unwrap_err();
    let expected = [
        "line 1 (controlAddress): \"nowhere\" is not HOST:PORT",
        "line 2 (namespace): \"Demo\" is not valid",
        "line 5 (inboundPorts): \"0\" is not a port",
        "line 6 (inboundPorts): \"smtp\" is not a protocol",
        "$HOSTMESH_ADMIN_PORT (adminPort): \"none\" is not a port",
        "line 9 (interception.excludedPorts): \"70000\" is not a port",
        "line 10 (interception.mark): \"0\" must not be 0",
        "line 8 (interception.failMode): \"sideways\" is neither open nor closed",
        "dns.listen: 10.0.0.1:53 must be on 127.0.0.1",
    ];
    for e in expected {
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with(&format!("agent.yaml: {e}"))),
            "missing {e:?} in\n{err}"
        );
    }
    assert_eq!(err.0.len(), expected.len(), "{err}");
}

#[test]
fn checks_between_keys_are_reported_once_the_values_are_good() {
    let err = load_text(
        "adminPort: 15020\ndns:\n  enabled: false\n  listen: 10.0.0.1:53\n",
        &[],
    )
    .unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|l| l.contains("adminPort and healthPort both use port 15020")),
        "{err}"
    );
    assert!(
        err.0
            .iter()
            .any(|l| l.contains("interception.dnsCapture needs dns.enabled")),
        "{err}"
    );
    assert!(
        err.0
            .iter()
            .any(|l| l.contains("dns.listen: 10.0.0.1:53 must be on 127.0.0.1")),
        "{err}"
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let c = load_text(
        "namespace: demo\nlabels: {app: bill}\ninterception:\n  excludedPorts: [22]\n",
        &[
            ("HOSTMESH_NAMESPACE", "prod"),
            ("HOSTMESH_LABELS", "app=bill,version=v2"),
            ("HOSTMESH_INTERCEPTION_EXCLUDED_PORTS", "22, 2222"),
            ("HOSTMESH_INTERCEPTION_FAIL_MODE", "closed"),
            ("HOSTMESH_HOST_IP", "10.0.0.5"),
        ],
    )
    .unwrap();
    assert_eq!(c.identity.namespace(), "prod");
    assert_eq!(c.labels.get("version").map(String::as_str), Some("v2"));
    assert_eq!(c.interception.excluded_ports, vec![22, 2222]);
    assert_eq!(c.interception.fail_mode, FailMode::Closed);
    assert_eq!(c.host_ip, Some("10.0.0.5".parse().unwrap()));
}

#[test]
fn the_example_file_parses_and_says_what_it_sets() {
    let text = include_str!("../../agent.example.yaml");
    let c = load_text(text, &[]).unwrap();
    assert_eq!(c.identity.namespace(), "demo");
    assert_eq!(c.inbound_ports.get(&9999), Some(&AppProtocol::Http));
    assert_eq!(c.workload_group.as_deref(), Some("bill-service"));
    assert_eq!(c.locality.as_deref(), Some("eu-west/zone-a"));
}

#[test]
fn a_locality_has_one_to_three_parts() {
    let err = load_text(
        "namespace: demo
locality: eu//a
",
        &[],
    )
    .unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|l| l.starts_with("agent.yaml: line 2 (locality): \"eu//a\" is not a locality")),
        "{err}"
    );
    let c = load_text(
        "namespace: demo
locality: eu/a/b
",
        &[],
    )
    .unwrap();
    assert_eq!(c.locality.as_deref(), Some("eu/a/b"));
}

#[test]
fn proxy_threads_is_a_small_positive_number() {
    let c = load_text("proxyThreads: 1\n", &[]).unwrap();
    assert_eq!(c.proxy_threads.map(NonZeroUsize::get), Some(1));
    let c = load_text("", &[("HOSTMESH_PROXY_THREADS", "4")]).unwrap();
    assert_eq!(c.proxy_threads.map(NonZeroUsize::get), Some(4));
    for bad in ["0", "257", "many"] {
        let errors = load_text(&format!("proxyThreads: {bad}\n"), &[]).unwrap_err();
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.contains("(proxyThreads)") && e.contains("from 1 to 256")),
            "{errors:?}"
        );
    }
}
