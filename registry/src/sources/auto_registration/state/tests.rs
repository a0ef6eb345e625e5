#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;
use crate::xds::NodeInfo;
use crate::xds::server::StreamEvent;

const GRACE: Duration = Duration::from_secs(10);

fn node(ip: &str, group: Option<&str>) -> NodeInfo {
    NodeInfo {
        id: format!("sidecar~{ip}~vm.demo~demo.svc.cluster.local"),
        identity: "spiffe://cluster.local/ns/demo/sa/vm".parse().unwrap(),
        ip: Some(ip.parse().unwrap()),
        labels: BTreeMap::from([("version".to_owned(), "v2".to_owned())]),
        workload_group: group.map(str::to_owned),
        workload_name: None,
        network: Some("net-1".to_owned()),
        locality: Some("eu/west".to_owned()),
    }
}

fn connect(r: &mut Registry, connection: u64, node: NodeInfo, now: Instant) -> bool {
    r.apply(StreamEvent::Connected { connection, node }, now)
}

fn disconnect(r: &mut Registry, connection: u64, now: Instant) -> bool {
    r.apply(StreamEvent::Disconnected { connection }, now)
}

fn entries(r: &Registry) -> Vec<String> {
    r.view()
        .view
        .registrations
        .iter()
        .map(|x| x.entry.to_string())
        .collect()
}

#[test]
fn a_workload_stays_for_its_grace_period_and_a_reconnect_keeps_it() {
    let t0 = Instant::now();
    let mut r = Registry::new(GRACE);
    assert!(connect(&mut r, 1, node("10.0.0.7", Some("vm")), t0));
    assert_eq!(entries(&r), ["WorkloadEntry demo/vm-10-0-0-7"]);
    let reg = r.view().view.registrations[0].clone();
    assert_eq!(reg.group.to_string(), "WorkloadGroup demo/vm");
    assert_eq!(reg.network.unwrap().as_str(), "net-1");
    assert_eq!(reg.locality.unwrap().to_string(), "eu/west");
    let revision = r.view().view.revision;

    // Gone: nothing changes until the grace period is over.
    assert!(!disconnect(&mut r, 1, t0));
    assert_eq!(r.next_expiry(), Some(t0 + GRACE));
    assert!(!r.expire(t0 + GRACE - Duration::from_millis(1)));
    assert_eq!(entries(&r).len(), 1);

    // Back within the period with the same claims: no change at all, no expiry pending.
    assert!(!connect(
        &mut r,
        2,
        node("10.0.0.7", Some("vm")),
        t0 + GRACE / 2
    ));
    assert_eq!(r.view().view.revision, revision);
    assert_eq!(r.next_expiry(), None);
    assert!(!r.expire(t0 + GRACE * 2));

    // Gone for good.
    let t1 = t0 + GRACE * 3;
    assert!(!disconnect(&mut r, 2, t1));
    assert!(r.expire(t1 + GRACE));
    assert!(entries(&r).is_empty());
    assert!(r.view().view.revision > revision);
}

#[test]
fn two_streams_of_one_node_keep_it_until_both_end() {
    let t0 = Instant::now();
    let mut r = Registry::new(GRACE);
    connect(&mut r, 1, node("10.0.0.7", Some("vm")), t0);
    connect(&mut r, 2, node("10.0.0.7", Some("vm")), t0);
    disconnect(&mut r, 1, t0);
    assert_eq!(r.next_expiry(), None);
    disconnect(&mut r, 2, t0);
    assert_eq!(r.next_expiry(), Some(t0 + GRACE));
}

#[test]
fn nodes_without_a_group_are_ignored_and_bad_claims_rejected_while_connected() {
    let t0 = Instant::now();
    let mut r = Registry::new(GRACE);
    assert!(!connect(&mut r, 1, node("10.0.0.8", None), t0));
    assert!(!disconnect(&mut r, 1, t0));
    assert!(connect(&mut r, 2, node("10.0.0.9", Some("Not_A_Name")), t0));
    let view = r.view();
    assert!(view.view.registrations.is_empty());
    assert_eq!(view.status.rejected, 1);
    assert!(
        view.view.rejected[0].reason.contains("Not_A_Name"),
        "{:?}",
        view.view.rejected
    );
    assert!(disconnect(&mut r, 2, t0));
    assert!(r.view().view.rejected.is_empty());
}
