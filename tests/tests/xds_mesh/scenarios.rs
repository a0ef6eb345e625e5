//! front → bill-service (v1 and v2 hosts) through both proxies, configured over ADS.

use std::sync::atomic::Ordering;

use hostmesh_registry::xds::type_url;

use crate::mesh::*;
use crate::world::World;

#[tokio::test]
async fn a_50_50_split_over_mtls_holds_over_1000_requests() {
    let world = World::new((50, 50)).await;
    let (v1, v2) = world.count(1000).await;
    assert_eq!(v1 + v2, 1000);
    // Binomial(1000, 0.5): σ ≈ 15.8; ±5σ.
    assert!((421..=579).contains(&v1), "v1 got {v1} of 1000");
}

#[tokio::test]
async fn a_new_snapshot_moves_traffic_and_is_acked() {
    let mut world = World::new((50, 50)).await;
    world.publish((100, 0)).await;
    world.until_only_v1(50).await;
    assert_eq!(world.count(200).await, (200, 0));
    world
        .control
        .wait_status("every type ACKed by every node", |nodes| {
            nodes.len() == 3
                && nodes.iter().all(|n| {
                    n.types
                        .values()
                        .all(|t| t.sent.is_none() || t.acked == t.sent)
                })
        })
        .await;
}

#[tokio::test]
async fn an_unsupported_cluster_is_nacked_with_its_reason_and_traffic_keeps_flowing() {
    let mut world = World::new((100, 0)).await;
    assert_eq!(world.count(20).await, (20, 0));
    world
        .control
        .translator
        .refused
        .store(true, Ordering::SeqCst);
    world.publish((100, 0)).await;
    let reason =
        format!("Cluster {REFUSED_CLUSTER:?}: lb_policy CLUSTER_PROVIDED is not supported");
    world
        .control
        .wait_status("front NACKs the refused cluster", |nodes| {
            nodes.iter().any(|n| {
                n.id.contains("~front.demo~")
                    && n.types
                        .get(type_url::CLUSTER)
                        .and_then(|t| t.nack.as_ref())
                        .is_some_and(|nack| nack.message.contains(&reason))
            })
        })
        .await;
    // The previous config stays.
    assert_eq!(world.count(200).await, (200, 0));
    let config = world.front.proxy.config().current();
    assert!(
        !config.version().is_empty(),
        "a config is in place: {}",
        config.version()
    );
}
