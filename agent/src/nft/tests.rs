//! Snapshots of the generated batches: a change to the rules shows up as a reviewed diff.

#![allow(clippy::unwrap_used)]

use super::*;

fn full() -> InterceptionConfig {
    InterceptionSpec {
        skip_uid: Some(999),
        skip_mark: Some(DEFAULT_SKIP_MARK),
        excluded_ports: vec![22, 2222, 22],
        excluded_cidrs: vec![
            "192.168.1.0/24".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "169.254.169.254/32".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ],
        control_servers: vec![
            "10.77.0.1:15012".parse().unwrap(),
            "[fd00::1]:15012".parse().unwrap(),
        ],
        inbound_ports: vec![9090, 8080],
        dns_capture: true,
        dns_ipv6: true,
        ..InterceptionSpec::default()
    }
    .validate()
    .unwrap()
}

#[test]
fn default_replace_batch() {
    let config = InterceptionSpec::default().validate().unwrap();
    insta::assert_json_snapshot!(replace_batch(&config));
}

#[test]
fn full_replace_batch() {
    insta::assert_json_snapshot!(replace_batch(&full()));
}

#[test]
fn without_dns_or_inbound_ports() {
    let config = InterceptionSpec {
        skip_uid: Some(999),
        skip_mark: None,
        dns_capture: false,
        excluded_ports: vec![],
        ..InterceptionSpec::default()
    }
    .validate()
    .unwrap();
    insta::assert_json_snapshot!(replace_batch(&config));
}

#[test]
fn remove_batch_adds_then_deletes() {
    insta::assert_json_snapshot!(remove_batch());
}

#[test]
fn replace_batch_is_add_delete_then_the_table() {
    let batch = serde_json::to_value(replace_batch(&full())).unwrap();
    let objects = batch["nftables"].as_array().unwrap();
    let table = serde_json::json!({"family": "inet", "name": "hostmesh"});
    assert_eq!(objects[0], serde_json::json!({"add": {"table": table}}));
    assert_eq!(objects[1], serde_json::json!({"delete": {"table": table}}));
    assert_eq!(objects[2], serde_json::json!({"add": {"table": table}}));
    let tables_touched: Vec<_> = objects
        .iter()
        .filter_map(|o| o.as_object()?.values().next()?.as_object()?.values().next())
        .filter_map(|inner| inner.get("table").or_else(|| inner.get("name")))
        .collect();
    assert!(
        tables_touched.iter().all(|t| *t == "hostmesh"),
        "{tables_touched:?}"
    );
}
