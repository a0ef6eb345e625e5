//! State of the world: wildcard and named subscriptions, pushes, ACK, NACK, stale nonces.

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use hostmesh_registry::xds::server::Mode;
use hostmesh_registry::xds::type_url;

use crate::harness::*;

fn request(
    type_url: &str,
    names: &[String],
    previous: Option<&DiscoveryResponse>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names: names.to_vec(),
        version_info: previous.map(|p| p.version_info.clone()).unwrap_or_default(),
        response_nonce: previous.map(|p| p.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

fn acked(env: &Env, type_url: &str, version: &str) -> bool {
    env.ads
        .status()
        .iter()
        .any(|n| n.types.get(type_url).and_then(|t| t.acked.as_deref()) == Some(version))
}

#[tokio::test]
async fn subscriptions_pushes_acks_and_nacks() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"]), ("b", &["10.1.0.2"])])).await;
    let mut first = request(type_url::CLUSTER, &[], None);
    first.node = Some(node(NODE_ID, "demo"));
    let mut client = SotwClient::open(env.agent_channel().await, first)
        .await
        .unwrap();

    // Wildcard CDS: every cluster.
    let cds = client.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    assert_eq!(sotw_names(&cds), [host("a"), host("b")]);
    client
        .send(request(type_url::CLUSTER, &[], Some(&cds)))
        .await;
    env.wait_status("CDS ACKed", |_| {
        acked(&env, type_url::CLUSTER, &cds.version_info)
    })
    .await;
    let status = env.ads.status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].id, NODE_ID);
    assert_eq!(status[0].identity, "spiffe://cluster.local/ns/demo/sa/bill");
    assert_eq!(status[0].mode, Mode::StateOfTheWorld);
    assert!(status[0].address.is_some());

    // Named EDS: only what was asked for.
    client
        .send(request(type_url::ENDPOINT, &[host("a")], None))
        .await;
    let eds = client.recv().await;
    assert_eq!(sotw_names(&eds), [host("a")]);
    client
        .send(request(type_url::ENDPOINT, &[host("a")], Some(&eds)))
        .await;

    // LDS: the node's own inbound listener.
    client.send(request(type_url::LISTENER, &[], None)).await;
    let lds = client.recv().await;
    assert_eq!(sotw_names(&lds), ["inbound|10.0.0.5"]);
    client
        .send(request(type_url::LISTENER, &[], Some(&lds)))
        .await;

    // A changed list of names is answered with the new set.
    let both = [host("a"), host("b")];
    client
        .send(request(type_url::ENDPOINT, &both, Some(&eds)))
        .await;
    let eds = client.recv().await;
    assert_eq!(sotw_names(&eds), both);
    client
        .send(request(type_url::ENDPOINT, &both, Some(&eds)))
        .await;
    env.wait_status("EDS ACKed", |_| {
        acked(&env, type_url::ENDPOINT, &eds.version_info)
    })
    .await;

    // A new snapshot: b goes, c comes. CDS carries the full new set, EDS what is left of
    // its subscription; LDS did not change and is not sent.
    env.publish(snapshot(2, &[("a", &["10.1.0.1"]), ("c", &["10.1.0.3"])]));
    let cds2 = client.recv().await;
    assert_eq!(cds2.type_url, type_url::CLUSTER);
    assert_eq!(sotw_names(&cds2), [host("a"), host("c")]);
    assert_ne!(cds2.version_info, cds.version_info);
    let eds2 = client.recv().await;
    assert_eq!(eds2.type_url, type_url::ENDPOINT);
    assert_eq!(sotw_names(&eds2), [host("a")]);
    client
        .send(request(type_url::ENDPOINT, &both, Some(&eds2)))
        .await;

    // The node rejects the clusters: NACKed with the message, still running the old version.
    let mut rejection = request(type_url::CLUSTER, &[], Some(&cds2));
    rejection.version_info = cds.version_info.clone();
    rejection.error_detail = nack("cluster c: unsupported load balancer");
    client.send(rejection).await;
    env.wait_status("CDS NACKed", |s| {
        s.iter().any(|n| {
            n.types.get(type_url::CLUSTER).is_some_and(|t| {
                t.nack.as_ref().is_some_and(|n| {
                    n.version == cds2.version_info
                        && n.message == "cluster c: unsupported load balancer"
                }) && t.acked.as_deref() == Some(cds.version_info.as_str())
            })
        })
    })
    .await;

    // A request with a stale nonce is ignored, even with other names.
    let mut stale = request(type_url::ENDPOINT, &[host("c")], Some(&eds));
    stale.response_nonce = eds.nonce.clone();
    client.send(stale).await;

    // An endpoint-only change: the next message is that EDS push, not the NACKed clusters
    // again, nor an answer to the stale request.
    env.publish(snapshot(3, &[("a", &["10.1.0.9"]), ("c", &["10.1.0.3"])]));
    let eds3 = client.recv().await;
    assert_eq!(eds3.type_url, type_url::ENDPOINT);
    assert_eq!(sotw_names(&eds3), [host("a")]);
    client
        .send(request(type_url::ENDPOINT, &both, Some(&eds3)))
        .await;

    // A real cluster change is sent, with a new version.
    env.publish(snapshot(4, &[("a", &["10.1.0.9"]), ("d", &["10.1.0.4"])]));
    let cds4 = client.recv().await;
    assert_eq!(cds4.type_url, type_url::CLUSTER);
    assert_eq!(sotw_names(&cds4), [host("a"), host("d")]);
    assert_ne!(cds4.version_info, cds2.version_info);
    client
        .send(request(type_url::CLUSTER, &[], Some(&cds4)))
        .await;
    env.wait_status("CDS ACKed again", |_| {
        acked(&env, type_url::CLUSTER, &cds4.version_info)
    })
    .await;

    drop(client);
    env.wait_status("disconnected", |s| s.is_empty()).await;
    env.stop();
}

#[tokio::test]
async fn bursts_of_snapshots_end_in_the_latest() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"])])).await;
    let mut first = request(type_url::CLUSTER, &[], None);
    first.node = Some(node(NODE_ID, "demo"));
    let mut client = SotwClient::open(env.agent_channel().await, first)
        .await
        .unwrap();
    let cds = client.recv().await;
    client
        .send(request(type_url::CLUSTER, &[], Some(&cds)))
        .await;
    for v in 2..=20u64 {
        let name = format!("s{v}");
        env.publish(snapshot(v, &[("a", &["10.1.0.1"]), (&name, &["10.1.0.2"])]));
    }
    // Whatever intermediate versions were sent, the last one is the latest snapshot.
    let latest = host("s20");
    loop {
        let response = client.recv().await;
        client
            .send(request(type_url::CLUSTER, &[], Some(&response)))
            .await;
        if sotw_names(&response) == [host("a"), latest.clone()] {
            break;
        }
    }
    // Bursts coalesce: at most one generation per snapshot.
    assert!(env.ads.generation() <= 20);
    env.stop();
}
