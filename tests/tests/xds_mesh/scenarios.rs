//! front → bill-service (v1 and v2 hosts) through both proxies, configured over ADS.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hostmesh_registry::xds::type_url;

use crate::mesh::*;

/// Istio YAML for bill-service behind `vip:port`, v1 and v2 on their own hosts.
fn registry(vip: IpAddr, port: u16, v1: SocketAddr, v2: SocketAddr, weights: (u32, u32)) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bill-service, namespace: demo}}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  addresses: [{vip}]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: bill-service}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-v1, namespace: demo}}
spec:
  address: {v1ip}
  ports: {{http: {v1port}}}
  labels: {{app: bill-service, version: v1}}
  serviceAccount: bill
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-v2, namespace: demo}}
spec:
  address: {v2ip}
  ports: {{http: {v2port}}}
  labels: {{app: bill-service, version: v2}}
  serviceAccount: bill
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bill-service, namespace: demo}}
spec:
  host: bill-service.demo.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bill-service, namespace: demo}}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  http:
  - route:
    - destination: {{host: bill-service.demo.svc.cluster.local, subset: v1}}
      weight: {w1}
    - destination: {{host: bill-service.demo.svc.cluster.local, subset: v2}}
      weight: {w2}
"#,
        v1ip = v1.ip(),
        v1port = v1.port(),
        v2ip = v2.ip(),
        v2port = v2.port(),
        w1 = weights.0,
        w2 = weights.1,
    )
}

/// The control server, front's outbound at `vip`, two bill hosts in front of their apps.
struct World {
    control: Control,
    front: Host,
    _bills: Vec<Host>,
    vip: SocketAddr,
    inbounds: (SocketAddr, SocketAddr),
    version: u64,
}

impl World {
    async fn new(weights: (u32, u32)) -> Self {
        let block = loopback_block();
        let control = Control::start(snapshot(1, "")).await;
        let front = control.host(ip(block, 20), "front", "front");
        let vip = control
            .outbound(&front, SocketAddr::new(ip(block, 10), 0))
            .await;
        let mut bills = Vec::new();
        let mut inbounds = Vec::new();
        for (n, name) in [(21, "v1"), (22, "v2")] {
            let app = app(name).await;
            let host = control.host(ip(block, n), &format!("bill-{name}"), "bill");
            // Same port as the application, on the host's own address: the inbound cluster
            // `inbound|PORT||` then points at the application on 127.0.0.1:PORT.
            let inbound = control
                .inbound(&host, SocketAddr::new(ip(block, n), app.port()))
                .await;
            inbounds.push(inbound);
            bills.push(host);
        }
        let mut world = Self {
            control,
            front,
            _bills: bills,
            vip,
            inbounds: (inbounds[0], inbounds[1]),
            version: 1,
        };
        // The clients start once the real registry is translated, so readiness means it.
        world.publish(weights).await;
        world.control.start_xds(&mut world.front);
        world.front.ready().await;
        for b in &mut world._bills {
            world.control.start_xds(b);
            b.ready().await;
        }
        world
    }

    async fn publish(&mut self, weights: (u32, u32)) {
        self.version += 1;
        let yaml = registry(
            self.vip.ip(),
            self.vip.port(),
            self.inbounds.0,
            self.inbounds.1,
            weights,
        );
        self.control.publish(snapshot(self.version, &yaml)).await;
    }

    /// Sends `n` requests on one connection; (answers from v1, from v2).
    async fn count(&self, n: usize) -> (usize, usize) {
        let mut client = Client::connect(self.vip).await;
        let (mut v1, mut v2) = (0, 0);
        for _ in 0..n {
            let (status, app, xfcc) = client.get().await;
            assert_eq!(status, 200, "answered by {app}");
            assert_eq!(xfcc, "yes", "the inbound side terminated mutual TLS");
            match app.as_str() {
                "v1" => v1 += 1,
                "v2" => v2 += 1,
                other => panic!("answered by {other:?}"),
            }
        }
        (v1, v2)
    }

    /// Waits (bounded) until `n` requests in a row are answered by v1 only.
    async fn until_only_v1(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            if self.count(n).await == (n, 0) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "traffic never moved to v1 only"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

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
        .maglev
        .store(true, Ordering::SeqCst);
    world.publish((100, 0)).await;
    let reason = format!("Cluster {MAGLEV_CLUSTER:?}: lb_policy MAGLEV is not supported");
    world
        .control
        .wait_status("front NACKs the MAGLEV cluster", |nodes| {
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
