//! `hostmesh validate`: same parser as the control server, `file:line:` errors, exit status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn hostmesh(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hostmesh"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hostmesh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn good_file_prints_a_summary_and_exits_zero() {
    let (code, out) = hostmesh(&["validate", "tests/fixtures/bill.yaml"]);
    assert_eq!(out, "tests/fixtures/bill.yaml: OK (5 objects)\n");
    assert_eq!(code, 0);
}

#[test]
fn broken_file_prints_each_error_and_exits_non_zero() {
    let (code, out) = hostmesh(&[
        "validate",
        "tests/fixtures/bill.yaml",
        "tests/fixtures/broken.yaml",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "tests/fixtures/bill.yaml: OK (5 objects)",
            "tests/fixtures/broken.yaml:10: ServiceEntry demo/bill-service: spec.ports[0].number: 70000 is not a valid port",
            "tests/fixtures/broken.yaml:33: VirtualService demo/split: spec.http[0].route: the weights of the destinations add up to 110, not 100",
            "tests/fixtures/broken.yaml:47: DestinationRule demo/bill: spec.subsets[0].name: a subset needs a name",
            "tests/fixtures/broken.yaml:58: AuthorizationPolicy demo/allow-frontend: spec.action: \"PERMIT\" is not one of ALLOW, DENY, AUDIT, CUSTOM",
            "tests/fixtures/broken.yaml:70: WorkloadEntry demo/typo: spec.adress: unknown field `adress`, expected one of address, ports, labels, network, locality, weight, serviceAccount",
            "tests/fixtures/broken.yaml:77: illegal placement of ':' indicator",
        ]
    );
    assert_eq!(code, 1);
}

#[test]
fn duplicate_across_files_is_reported() {
    let (code, out) = hostmesh(&[
        "validate",
        "tests/fixtures/bill.yaml",
        "tests/fixtures/bill.yaml",
    ]);
    assert!(
        out.contains(
            "tests/fixtures/bill.yaml:2: ServiceEntry demo/bill-service: duplicate object"
        ),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn unreadable_file_is_an_error() {
    let (code, _) = hostmesh(&["validate", "tests/fixtures/does-not-exist.yaml"]);
    assert_eq!(code, 2);
}
