//! front → bill-service (v1 and v2 hosts, each in front of its own app): the control server,
//! front's outbound at the service's VIP, the two bill hosts' inbounds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::mesh::*;

/// How bill-service's port is declared: HTTP/1.1 or gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    /// The port's name and Istio protocol.
    fn istio(self) -> (&'static str, &'static str) {
        match self {
            Protocol::Http => ("http", "HTTP"),
            Protocol::Grpc => ("grpc", "GRPC"),
        }
    }
}

/// What a [`World`] is built with.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub weights: (u32, u32),
    pub protocol: Protocol,
    /// `false`: the control server refuses delta (state of the world only).
    pub delta: bool,
    /// Start front's ADS client (and wait until it is ready).
    pub start_front: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            weights: (50, 50),
            protocol: Protocol::Http,
            delta: true,
            start_front: true,
        }
    }
}

/// Istio YAML for bill-service behind `vip:port`, v1 and v2 on their own hosts.
fn registry(
    protocol: Protocol,
    vip: SocketAddr,
    v1: SocketAddr,
    v2: SocketAddr,
    weights: (u32, u32),
) -> String {
    let (name, proto) = protocol.istio();
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bill-service, namespace: demo}}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  addresses: [{vip_ip}]
  location: MESH_INTERNAL
  ports: [{{number: {vip_port}, name: {name}, protocol: {proto}}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: bill-service}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-v1, namespace: demo}}
spec:
  address: {v1ip}
  ports: {{{name}: {v1port}}}
  labels: {{app: bill-service, version: v1}}
  serviceAccount: bill
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-v2, namespace: demo}}
spec:
  address: {v2ip}
  ports: {{{name}: {v2port}}}
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
        vip_ip = vip.ip(),
        vip_port = vip.port(),
        v1ip = v1.ip(),
        v1port = v1.port(),
        v2ip = v2.ip(),
        v2port = v2.port(),
        w1 = weights.0,
        w2 = weights.1,
    )
}

/// The control server, front's outbound at `vip`, two bill hosts in front of their apps.
pub struct World {
    pub control: Control,
    pub front: Host,
    pub bills: Vec<Host>,
    pub vip: SocketAddr,
    protocol: Protocol,
    inbounds: (SocketAddr, SocketAddr),
    version: u64,
}

impl World {
    /// HTTP/1.1 apps v1 and v2, both protocols served, every client ready.
    pub async fn new(weights: (u32, u32)) -> Self {
        let apps = [app("v1").await, app("v2").await];
        Self::start(
            Setup {
                weights,
                ..Setup::default()
            },
            apps,
        )
        .await
    }

    /// A world in front of `apps` (v1, v2, listening on 127.0.0.1).
    pub async fn start(setup: Setup, apps: [SocketAddr; 2]) -> Self {
        let block = loopback_block();
        let control = Control::start_with(snapshot(1, ""), setup.delta).await;
        let front = control.host(ip(block, 20), "front", "front");
        let vip = control
            .outbound(&front, SocketAddr::new(ip(block, 10), 0))
            .await;
        let mut bills = Vec::new();
        let mut inbounds = Vec::new();
        for ((n, name), app) in [(21, "v1"), (22, "v2")].into_iter().zip(apps) {
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
            bills,
            vip,
            protocol: setup.protocol,
            inbounds: (inbounds[0], inbounds[1]),
            version: 1,
        };
        // The clients start once the real registry is translated, so readiness means it.
        world.publish(setup.weights).await;
        for b in &mut world.bills {
            world.control.start_xds(b);
            b.ready().await;
        }
        if setup.start_front {
            world.control.start_xds(&mut world.front);
            world.front.ready().await;
        }
        world
    }

    pub async fn publish(&mut self, weights: (u32, u32)) {
        self.version += 1;
        let yaml = registry(
            self.protocol,
            self.vip,
            self.inbounds.0,
            self.inbounds.1,
            weights,
        );
        self.control.publish(snapshot(self.version, &yaml)).await;
    }

    /// Sends `n` requests on one connection; (answers from v1, from v2).
    pub async fn count(&self, n: usize) -> (usize, usize) {
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

    /// Waits (bounded) until `n` requests in a row get `want` (v1, v2) answers.
    pub async fn until(&self, n: usize, want: (usize, usize)) {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            if self.count(n).await == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "traffic never moved to {want:?} of {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `n` requests in a row are answered by v1 only.
    pub async fn until_only_v1(&self, n: usize) {
        self.until(n, (n, 0)).await;
    }
}
