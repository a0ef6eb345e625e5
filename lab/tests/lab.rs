//! The lab itself (root; fails, never skips, without root, `ip` or `nft`): hosts reach each
//! other over the bridge, a process runs inside a host and stops on SIGTERM, a SIGKILLed one is
//! reported as such, and teardown leaves no namespace, `/etc/netns` folder or working folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use hostmesh_lab::{HttpApp, Lab, killed_by_sigkill};

fn namespaces() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn hosts_talk_over_the_bridge_and_teardown_removes_everything() {
    let mut lab = Lab::new("labself").expect("lab (needs root, ip, nft)");
    let a = lab.add_host("a").unwrap();
    let b = lab.add_host("b").unwrap();
    assert_eq!(a.ip().to_string(), "10.77.0.1");
    assert_eq!(b.ip().to_string(), "10.77.0.2");
    let app = HttpApp::start(b.netns(), "0.0.0.0:8080".parse().unwrap(), "hello-b").unwrap();
    let answer = a
        .netns()
        .output(
            "curl",
            &["-sS", "--max-time", "10", "http://10.77.0.2:8080/"],
        )
        .unwrap();
    assert!(answer.starts_with("hello-b peer=10.77.0.1:"), "{answer:?}");
    // The query asks for a status and a wait; the answer names the app and echoes the request;
    // arrivals are counted.
    let started = std::time::Instant::now();
    let asked = a
        .netns()
        .output(
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "-w",
                "%{http_code} %header{x-app} %header{x-app-target} %header{x-echo-test-a}\\n",
                "-H",
                "x-test-a: 1",
                "-o",
                "/dev/null",
                "http://10.77.0.2:8080/flaky?status=503&sleep_ms=300",
                "-o",
                "/dev/null",
                "http://10.77.0.2:8080/flaky?status=503&only=other",
            ],
        )
        .unwrap();
    assert_eq!(
        asked,
        "503 hello-b /flaky?status=503&sleep_ms=300 1\n200 hello-b /flaky?status=503&only=other 1\n"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(
        (app.hits("/flaky"), app.hits("/"), app.total_hits()),
        (2, 1, 3)
    );
    let resolv = std::fs::read_to_string(a.netns().etc_dir().join("resolv.conf")).unwrap();
    assert_eq!(resolv, "nameserver 10.77.0.254\n");

    let mut sleeper = lab
        .spawn(a.netns(), "sleeper", "sleep".as_ref(), &["600"])
        .unwrap();
    let pids = a
        .netns()
        .output("ip", &["netns", "identify", &sleeper.pid().to_string()])
        .unwrap();
    assert_eq!(
        pids.trim(),
        a.netns().name(),
        "the process runs in the host's namespace"
    );
    let status = sleeper.stop().unwrap();
    assert!(
        !status.success() && !killed_by_sigkill(&status),
        "SIGTERM ends sleep: {status:?}"
    );
    let mut other = lab
        .spawn(b.netns(), "other", "sleep".as_ref(), &["600"])
        .unwrap();
    assert!(killed_by_sigkill(&other.kill9().unwrap()));

    // A process still running at teardown is killed with its namespace.
    let mut left = lab
        .spawn(b.netns(), "left", "sleep".as_ref(), &["600"])
        .unwrap();
    let (dir, etc) = (lab.dir().to_owned(), a.netns().etc_dir());
    lab.teardown();
    let listed = namespaces();
    assert!(
        !listed.contains(a.netns().name()) && !listed.contains(b.netns().name()),
        "{listed}"
    );
    assert!(!listed.contains(lab.switch().name()), "{listed}");
    assert!(!etc.exists() && !dir.exists());
    let status = left.wait_exit(std::time::Duration::from_secs(10)).unwrap();
    assert!(
        killed_by_sigkill(&status),
        "the process left running was killed: {status:?}"
    );
}

/// The real control server and an agent start in the lab (the binaries must be built:
/// `cargo build --bins`, which `cargo test --workspace` does).
#[test]
fn a_control_server_and_an_agent_start() {
    let bins = hostmesh_lab::Binaries::locate().expect("hostmesh binaries");
    let mut lab = Lab::new("labmesh").expect("lab (needs root, ip, nft)");
    let host = lab.add_host("h").unwrap();
    let control = hostmesh_lab::Control::start(&lab, &bins, "").unwrap();
    let spec = hostmesh_lab::AgentSpec {
        namespace: "demo".into(),
        service_account: "h".into(),
        inbound_ports: vec![(9999, "http".into())],
        ..Default::default()
    };
    let mut agent = hostmesh_lab::Agent::start(&lab, &bins, &control, &host, &spec).unwrap();
    let tables = host.netns().output("nft", &["list", "tables"]).unwrap();
    assert_eq!(tables.trim(), "table inet hostmesh");
    assert!(agent.dir().join("state").join("cert-chain.pem").is_file());
    agent.stop().unwrap();
    let tables = host.netns().output("nft", &["list", "tables"]).unwrap();
    assert_eq!(tables.trim(), "", "SIGTERM removes the table");
    lab.teardown();
}

/// A lab killed without teardown (Ctrl-C on a test) leaves namespaces named after its pid; the
/// next lab with the same tag removes them, with their `/etc/netns` folders.
#[test]
fn a_new_lab_removes_what_a_dead_one_left_behind() {
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let stale = format!("hm-labstale-{}-0-front", dead.id());
    let ok = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(ok.success());
    let etc = std::path::Path::new("/etc/netns").join(&stale);
    std::fs::create_dir_all(&etc).unwrap();
    // A namespace of a live process with the same tag stays.
    let alive = format!("hm-labstale-{}-9-x", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &alive])
            .status()
            .unwrap()
            .success()
    );

    let lab = Lab::new("labstale").expect("lab (needs root, ip, nft)");
    let listed = namespaces();
    let _ = Command::new("ip")
        .args(["netns", "delete", &alive])
        .status();
    assert!(!listed.contains(&stale), "{listed}");
    assert!(!etc.exists());
    assert!(
        listed.contains(&alive),
        "a live lab's namespace was removed: {listed}"
    );
    drop(lab);
}
