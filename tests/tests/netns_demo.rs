//! `hostmesh demo --requests 6` as a user runs it (root; fails, never skips, without root):
//! both versions answer `front`, every answer carries front's identity as verified by the
//! bill host's proxy over mutual TLS, it exits 0, and it leaves no namespace, `/etc/netns`
//! folder or working folder behind. Needs `hostmesh`, `hostmesh-control` and `hostmesh-agent`
//! built (`cargo build --bins`; `cargo test --workspace` does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_demo_shows_v1_and_v2_answering_over_mutual_tls_and_cleans_up() {
    hostmesh_lab::require_root_and_tools().expect("the demo needs root, ip and nft");
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let hostmesh = bin_dir.join("hostmesh");
    assert!(
        hostmesh.is_file(),
        "{} is missing: cargo build --bins",
        hostmesh.display()
    );
    let out = Command::new(&hostmesh)
        .args(["demo", "--requests", "6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let answers: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("front → http://bill-service:9999/"))
        .collect();
    assert_eq!(answers.len(), 6, "{stdout}");
    for version in ["v1", "v2"] {
        assert!(
            answers
                .iter()
                .any(|a| a.contains(&format!("←  bill-service {version}  (app saw 127.0.0.1:"))),
            "{version} never answered:\n{stdout}"
        );
    }
    assert!(
        answers
            .iter()
            .all(|a| a.contains("caller spiffe://cluster.local/ns/demo/sa/front)")),
        "an answer without the mTLS caller identity:\n{stdout}"
    );
    assert!(
        stdout.contains("ip netns exec hm-demo-"),
        "where-to-look commands:\n{stdout}"
    );
    let after = stdout.split("hm-demo-").nth(1).unwrap();
    let pid: String = after.chars().take_while(char::is_ascii_digit).collect();
    let prefix = format!("hm-demo-{pid}");
    let listed = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !listed.contains(&prefix),
        "namespaces left behind: {listed}"
    );
    let etc: Vec<_> = std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        etc.iter().all(|e| !e.starts_with(&prefix)),
        "/etc/netns left behind: {etc:?}"
    );
    assert!(
        !std::env::temp_dir().join(format!("{prefix}-0")).exists(),
        "working folder left behind"
    );
}

#[test]
fn without_root_the_demo_says_what_it_needs_and_fails() {
    let exe = std::env::current_exe().unwrap();
    let built = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("hostmesh");
    // A copy nobody can run, whatever the checkout's permissions.
    let hostmesh = std::env::temp_dir().join(format!("hostmesh-nobody-{}", std::process::id()));
    std::fs::copy(&built, &hostmesh).unwrap();
    std::fs::set_permissions(
        &hostmesh,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&hostmesh)
        .args(["demo", "--requests", "1"])
        .output()
        .expect("setpriv (util-linux) runs the demo as nobody");
    let _ = std::fs::remove_file(&hostmesh);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root"), "{stderr}");
}
