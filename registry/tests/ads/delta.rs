//! Delta: wildcard and named subscriptions, only changed resources, removals,
//! `initial_resource_versions`, ACK and NACK.

use std::collections::HashMap;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use hostmesh_registry::xds::server::Mode;
use hostmesh_registry::xds::type_url;

use crate::harness::*;

fn subscribe(type_url: &str, names: &[String]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_subscribe: names.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn only_changes_and_removals_are_sent() {
    let env = Env::start(snapshot(
        1,
        &[
            ("a", &["10.1.0.1"]),
            ("b", &["10.1.0.2"]),
            ("c", &["10.1.0.3"]),
        ],
    ))
    .await;
    let mut first = subscribe(type_url::CLUSTER, &[]);
    first.node = Some(node(NODE_ID, "demo"));
    let mut client = DeltaClient::open(env.agent_channel().await, first)
        .await
        .unwrap();

    // Wildcard CDS (empty first subscribe).
    let cds = client.recv().await;
    assert_eq!(delta_names(&cds), [host("a"), host("b"), host("c")]);
    assert!(cds.removed_resources.is_empty());
    assert!(cds.resources.iter().all(|r| !r.version.is_empty()));
    client.ack(&cds).await;

    // Named EDS, one of which does not exist: it comes back as removed at once.
    client
        .send(subscribe(
            type_url::ENDPOINT,
            &[host("a"), host("b"), host("nope")],
        ))
        .await;
    let eds = client.recv().await;
    assert_eq!(delta_names(&eds), [host("a"), host("b")]);
    assert_eq!(eds.removed_resources, [host("nope")]);
    client.ack(&eds).await;
    env.wait_status("EDS ACKed", |s| {
        s.len() == 1
            && s[0].mode == Mode::Delta
            && s[0]
                .types
                .get(type_url::ENDPOINT)
                .and_then(|t| t.acked.as_deref())
                == Some(eds.system_version_info.as_str())
    })
    .await;

    // One endpoint changes: one response, with that one resource.
    env.publish(snapshot(
        2,
        &[
            ("a", &["10.1.0.9"]),
            ("b", &["10.1.0.2"]),
            ("c", &["10.1.0.3"]),
        ],
    ));
    let change = client.recv().await;
    assert_eq!(change.type_url, type_url::ENDPOINT);
    assert_eq!(delta_names(&change), [host("a")]);
    assert!(change.removed_resources.is_empty());
    let old_a = &eds.resources[0];
    assert_ne!(change.resources[0].version, old_a.version);
    client.ack(&change).await;

    // A service goes away: its cluster and its endpoints are removed, nothing else is sent.
    env.publish(snapshot(3, &[("a", &["10.1.0.9"]), ("c", &["10.1.0.3"])]));
    let cds3 = client.recv().await;
    assert_eq!(cds3.type_url, type_url::CLUSTER);
    assert!(cds3.resources.is_empty());
    assert_eq!(cds3.removed_resources, [host("b")]);
    let eds3 = client.recv().await;
    assert_eq!(eds3.type_url, type_url::ENDPOINT);
    assert!(eds3.resources.is_empty());
    assert_eq!(eds3.removed_resources, [host("b")]);
    client.ack(&cds3).await;

    // NACK: recorded with its message, not resent.
    let mut rejection = DeltaDiscoveryRequest {
        type_url: type_url::ENDPOINT.to_owned(),
        response_nonce: eds3.nonce.clone(),
        ..Default::default()
    };
    rejection.error_detail = nack("endpoints of b: still in use");
    client.send(rejection).await;
    env.wait_status("EDS NACKed", |s| {
        s[0].types.get(type_url::ENDPOINT).is_some_and(|t| {
            t.nack.as_ref().is_some_and(|n| {
                n.version == eds3.system_version_info && n.message == "endpoints of b: still in use"
            }) && t.acked.as_deref() == Some(change.system_version_info.as_str())
        })
    })
    .await;

    // Drop a, subscribe to d (which does not exist yet: answered as removed, which also
    // tells us the server has applied the change).
    client
        .send(DeltaDiscoveryRequest {
            type_url: type_url::ENDPOINT.to_owned(),
            resource_names_subscribe: vec![host("d")],
            resource_names_unsubscribe: vec![host("a")],
            ..Default::default()
        })
        .await;
    let eds4 = client.recv().await;
    assert!(eds4.resources.is_empty());
    assert_eq!(eds4.removed_resources, [host("d")]);

    // a changes, c goes, d comes: clusters d and -c; endpoints d only (a is unsubscribed).
    env.publish(snapshot(4, &[("a", &["10.1.0.7"]), ("d", &["10.1.0.4"])]));
    let cds5 = client.recv().await;
    assert_eq!(cds5.type_url, type_url::CLUSTER);
    assert_eq!(delta_names(&cds5), [host("d")]);
    assert_eq!(cds5.removed_resources, [host("c")]);
    let eds5 = client.recv().await;
    assert_eq!(eds5.type_url, type_url::ENDPOINT);
    assert_eq!(delta_names(&eds5), [host("d")]);
    assert!(eds5.removed_resources.is_empty());
    env.stop();
}

#[tokio::test]
async fn initial_resource_versions_suppress_resends() {
    let services: &[(&str, &[&str])] = &[
        ("a", &["10.1.0.1"]),
        ("b", &["10.1.0.2"]),
        ("c", &["10.1.0.3"]),
    ];
    let env = Env::start(snapshot(1, services)).await;
    let mut first = subscribe(type_url::CLUSTER, &["*".to_owned()]);
    first.node = Some(node(NODE_ID, "demo"));
    let mut client = DeltaClient::open(env.agent_channel().await, first.clone())
        .await
        .unwrap();
    let cds = client.recv().await;
    assert_eq!(cds.resources.len(), 3);
    let mut versions: HashMap<String, String> = cds
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(client);

    // Reconnect holding a and c at the current version, b at an old one, and a cluster that
    // no longer exists.
    versions.insert(host("b"), "old".to_owned());
    versions.insert(host("gone"), "old".to_owned());
    first.initial_resource_versions = versions;
    let mut client = DeltaClient::open(env.agent_channel().await, first)
        .await
        .unwrap();
    let cds = client.recv().await;
    assert_eq!(delta_names(&cds), [host("b")]);
    assert_eq!(cds.removed_resources, [host("gone")]);

    // Named subscriptions with current versions: an empty first response.
    let eds_versions = {
        let mut probe = DeltaClient::open(env.agent_channel().await, {
            let mut r = subscribe(type_url::ENDPOINT, &[host("a")]);
            r.node = Some(node(NODE_ID, "demo"));
            r
        })
        .await
        .unwrap();
        let eds = probe.recv().await;
        eds.resources
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect::<HashMap<_, _>>()
    };
    let mut resumed = subscribe(type_url::ENDPOINT, &[host("a")]);
    resumed.initial_resource_versions = eds_versions;
    client.send(resumed).await;
    let eds = client.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    assert!(eds.resources.is_empty(), "{:?}", delta_names(&eds));
    assert!(eds.removed_resources.is_empty());
    env.stop();
}
