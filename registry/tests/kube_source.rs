//! The Kubernetes source (the production client, kube's watchers) against the Kubernetes
//! API emulator on 127.0.0.1: first list, updates, deletion, `410 Gone` → a new list with
//! nothing lost or doubled, bookmarks, an outage (last good view kept, unhealthy, caught up),
//! a bad object rejected alone, and Istio's CRDs absent.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hostmesh_emulators::kube::{KubeEmulator, Res, service, slice};
use hostmesh_registry::model::TrustDomain;
use hostmesh_registry::sources::kubernetes::{
    KubernetesSettings, KubernetesSource, KubernetesView,
};
use kube::config::Kubeconfig;
use serde_json::json;
use tokio::sync::watch;

const WITHIN: Duration = Duration::from_secs(20);

async fn source(emu: &KubeEmulator) -> KubernetesSource {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let config = Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).unwrap();
    let mut settings = KubernetesSettings::new(config, TrustDomain::new("cluster.local").unwrap());
    settings.max_backoff = Duration::from_millis(500);
    settings.crd_recheck = Duration::from_millis(500);
    KubernetesSource::start(settings).await.unwrap()
}

/// host → sorted `ip:port` of every endpoint.
fn endpoints(v: &KubernetesView) -> BTreeMap<String, Vec<String>> {
    v.view
        .services
        .iter()
        .map(|s| {
            let mut eps: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| format!("{}:{}", e.address, e.port.get()))
                .collect();
            eps.sort();
            (s.hostname.to_string(), eps)
        })
        .collect()
}

async fn wait_for(
    rx: &mut watch::Receiver<KubernetesView>,
    what: &str,
    ok: impl Fn(&KubernetesView) -> bool,
) -> KubernetesView {
    let deadline = Instant::now() + WITHIN;
    loop {
        let current = rx.borrow_and_update().clone();
        if ok(&current) {
            return current;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            panic!(
                "waited {WITHIN:?} for {what}; last view: {:?}, status: {:?}",
                endpoints(&current),
                current.status
            );
        }
    }
}

fn web(emu: &KubeEmulator, ips: &[&str]) {
    emu.apply(
        Res::Services,
        service("shop", "web", "10.96.0.10", &[("http", 80)]),
    );
    emu.apply(
        Res::EndpointSlices,
        slice("shop", "web-1", "web", ips, &[("http", 8080)]),
    );
}

const WEB: &str = "web.shop.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_list_then_updates_and_deletion() {
    let emu = KubeEmulator::start(true).await;
    web(&emu, &["10.1.0.1", "10.1.0.2"]);
    emu.apply(
        Res::Services,
        service("shop", "cart", "10.96.0.11", &[("grpc", 9090)]),
    );
    emu.apply(
        Res::ServiceEntries,
        json!({"metadata": {"name": "payments", "namespace": "shop"},
               "spec": {"hosts": ["payments.example.com"], "location": "MESH_EXTERNAL",
                        "resolution": "STATIC", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                        "workloadSelector": {"labels": {"app": "payments"}}}}),
    );
    emu.apply(
        Res::WorkloadEntries,
        json!({"metadata": {"name": "payments-vm", "namespace": "shop"},
               "spec": {"address": "10.2.0.7", "labels": {"app": "payments"}}}),
    );
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    let v = wait_for(&mut rx, "the first list", |v| {
        v.status.healthy && endpoints(v).len() == 3
    })
    .await;
    let eps = endpoints(&v);
    assert_eq!(eps[WEB], ["10.1.0.1:8080", "10.1.0.2:8080"]);
    assert_eq!(eps["cart.shop.svc.cluster.local"], Vec::<String>::new());
    assert_eq!(eps["payments.example.com"], ["10.2.0.7:443"]);
    let web_svc = v
        .view
        .services
        .iter()
        .find(|s| s.hostname.as_str() == WEB)
        .unwrap();
    assert_eq!(web_svc.addresses, ["10.96.0.10"]);
    assert_eq!(web_svc.provenance.source.as_str(), "kubernetes");
    assert_eq!(web_svc.provenance.object.as_ref(), "Service shop/web");
    let payments = v
        .view
        .services
        .iter()
        .find(|s| s.hostname.as_str() == "payments.example.com")
        .unwrap();
    assert_eq!(
        payments.provenance.object.as_ref(),
        "ServiceEntry shop/payments"
    );
    assert_eq!(
        payments.endpoints[0].provenance.object.as_ref(),
        "WorkloadEntry shop/payments-vm"
    );
    assert_eq!(v.status.objects, 2, "{:?}", v.status);
    let revision = v.view.revision;

    // An update: a third endpoint, one not ready.
    emu.apply(
        Res::EndpointSlices,
        json!({"metadata": {"name": "web-1", "namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.1.0.1"]}, {"addresses": ["10.1.0.2"]},
                             {"addresses": ["10.1.0.3"], "conditions": {"ready": true}},
                             {"addresses": ["10.1.0.4"], "conditions": {"ready": false}}],
               "ports": [{"name": "http", "port": 8080}]}),
    );
    let v = wait_for(&mut rx, "the update", |v| endpoints(v)[WEB].len() == 3).await;
    assert_eq!(
        endpoints(&v)[WEB],
        ["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]
    );
    assert!(v.view.revision > revision);

    // Deletion.
    emu.delete(Res::Services, "shop", "cart");
    emu.delete(Res::WorkloadEntries, "shop", "payments-vm");
    let v = wait_for(&mut rx, "the deletions", |v| {
        let e = endpoints(v);
        !e.contains_key("cart.shop.svc.cluster.local") && e["payments.example.com"].is_empty()
    })
    .await;
    assert_eq!(endpoints(&v).len(), 2);
    assert_eq!(emu.lists_of(Res::Services), 1, "{:#?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_lists_again_with_nothing_lost_or_doubled() {
    let emu = KubeEmulator::start(false).await;
    web(&emu, &["10.1.0.1"]);
    emu.apply(
        Res::Services,
        service("shop", "old", "10.96.0.12", &[("http", 80)]),
    );
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    wait_for(&mut rx, "the first list", |v| {
        v.status.healthy && endpoints(v).len() == 2
    })
    .await;
    assert_eq!(emu.lists_of(Res::Services), 1);

    // Changes fall between two watches, then history is compacted: the next watch gets
    // 410 and the watcher lists again.
    emu.hold_watches(true);
    emu.close_watches();
    emu.delete(Res::Services, "shop", "old");
    emu.apply(
        Res::Services,
        service("shop", "new", "10.96.0.13", &[("http", 80)]),
    );
    web(&emu, &["10.1.0.1", "10.1.0.9"]);
    emu.compact();
    emu.hold_watches(false);
    let v = wait_for(&mut rx, "the new list", |v| {
        let e = endpoints(v);
        e.contains_key("new.shop.svc.cluster.local") && e[WEB].len() == 2
    })
    .await;
    let hosts: Vec<String> = endpoints(&v).into_keys().collect();
    assert_eq!(hosts, ["new.shop.svc.cluster.local", WEB]);
    assert_eq!(endpoints(&v)[WEB], ["10.1.0.1:8080", "10.1.0.9:8080"]);
    assert_eq!(v.view.services.len(), 2, "no service twice");
    assert!(emu.lists_of(Res::Services) >= 2, "{:#?}", emu.requests());
    assert!(v.status.healthy, "a 410 is not an outage: {:?}", v.status);

    // After the new list, watching goes on.
    emu.delete(Res::Services, "shop", "new");
    wait_for(&mut rx, "a change after the new list", |v| {
        endpoints(v).len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_let_a_quiet_watch_resume_without_a_new_list() {
    let emu = KubeEmulator::start(false).await;
    emu.set_bookmark_interval(Duration::from_millis(200));
    web(&emu, &["10.1.0.1"]);
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    wait_for(&mut rx, "the first list", |v| {
        v.status.healthy && endpoints(v).len() == 1
    })
    .await;
    // Only slices change: the services watch hears of the new resource versions through
    // bookmarks alone.
    for i in 2..6 {
        let ip = format!("10.1.0.{i}");
        let ips: Vec<&str> = vec!["10.1.0.1", &ip];
        emu.apply(
            Res::EndpointSlices,
            slice("shop", "web-1", "web", &ips, &[("http", 8080)]),
        );
    }
    let latest = emu.resource_version();
    let sent = emu.bookmarks_sent();
    let deadline = Instant::now() + WITHIN;
    while emu.bookmarks_sent() < sent + 6 {
        assert!(Instant::now() < deadline, "no bookmarks sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.hold_watches(true);
    emu.close_watches();
    emu.compact();
    emu.hold_watches(false);
    // The services watch starts again from the version its last bookmark carried.
    let rewatch = format!("resourceVersion={latest}");
    let is_rewatch = |r: &String| {
        r.contains("/api/v1/services?") && r.contains("watch=true") && r.contains(&rewatch)
    };
    let deadline = Instant::now() + WITHIN;
    while !emu.requests().iter().any(is_rewatch) {
        assert!(Instant::now() < deadline, "{:#?}", emu.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.apply(
        Res::Services,
        service("shop", "late", "10.96.0.14", &[("http", 80)]),
    );
    wait_for(&mut rx, "the service added after the restart", |v| {
        endpoints(v).contains_key("late.shop.svc.cluster.local")
    })
    .await;
    assert_eq!(
        emu.lists_of(Res::Services),
        1,
        "the services watch resumed from its bookmark: {:#?}",
        emu.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_last_view_and_the_source_catches_up() {
    let emu = KubeEmulator::start(true).await;
    web(&emu, &["10.1.0.1"]);
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    let before = wait_for(&mut rx, "the first list", |v| {
        v.status.healthy && endpoints(v).len() == 1
    })
    .await;

    // Away, with nothing changed meanwhile: unhealthy, then healthy again.
    emu.stop();
    let v = wait_for(&mut rx, "unhealthy", |v| !v.status.healthy).await;
    assert_eq!(endpoints(&v), endpoints(&before), "last good view kept");
    assert!(v.status.last_error.is_some());
    emu.resume().await;
    wait_for(&mut rx, "healthy again without a change", |v| {
        v.status.healthy
    })
    .await;

    // Away while things change: caught up after.
    emu.stop();
    wait_for(&mut rx, "unhealthy again", |v| !v.status.healthy).await;
    web(&emu, &["10.1.0.1", "10.1.0.2"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoints(&src.current()), endpoints(&before));
    emu.resume().await;
    let v = wait_for(&mut rx, "caught up", |v| {
        v.status.healthy && endpoints(v)[WEB].len() == 2
    })
    .await;
    assert_eq!(endpoints(&v)[WEB], ["10.1.0.1:8080", "10.1.0.2:8080"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_object_is_rejected_alone() {
    let emu = KubeEmulator::start(true).await;
    web(&emu, &["10.1.0.1"]);
    emu.apply(
        Res::Services,
        json!({"metadata": {"name": "ext", "namespace": "shop"},
               "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    );
    emu.apply(
        Res::ServiceEntries,
        json!({"metadata": {"name": "broken", "namespace": "shop"},
               "spec": {"hosts": ["broken.example.com"], "ports": [{"number": 0, "name": "x"}]}}),
    );
    emu.apply(
        Res::ServiceEntries,
        json!({"metadata": {"name": "fine", "namespace": "shop"},
               "spec": {"hosts": ["fine.example.com"], "resolution": "STATIC",
                        "ports": [{"number": 80, "name": "http"}],
                        "endpoints": [{"address": "10.3.0.1"}]}}),
    );
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    let v = wait_for(&mut rx, "the views with rejections", |v| {
        v.status.healthy && v.view.rejected.len() == 2 && endpoints(v).len() == 2
    })
    .await;
    let hosts: Vec<String> = endpoints(&v).into_keys().collect();
    assert_eq!(hosts, ["fine.example.com", WEB]);
    let rejected: BTreeMap<&str, &str> = v
        .view
        .rejected
        .iter()
        .map(|r| (r.object.as_str(), r.reason.as_str()))
        .collect();
    assert!(
        rejected["Service shop/ext"].contains("ExternalName"),
        "{rejected:?}"
    );
    assert!(
        rejected["ServiceEntry shop/broken"].contains("spec.ports[0].number"),
        "{rejected:?}"
    );
    assert_eq!(v.status.rejected, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_istio_crds_services_still_come_and_the_source_is_healthy() {
    let emu = KubeEmulator::start(false).await;
    web(&emu, &["10.1.0.1"]);
    let src = source(&emu).await;
    let mut rx = src.subscribe();
    let v = wait_for(&mut rx, "healthy without CRDs", |v| {
        v.status.healthy && endpoints(v).len() == 1
    })
    .await;
    assert!(v.status.last_error.is_none(), "{:?}", v.status);
    assert!(
        v.status
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("not served")
    );
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.contains("/apis/networking.istio.io/v1")),
        "discovery asked: {:#?}",
        emu.requests()
    );
    assert!(!emu.requests().iter().any(|r| r.contains("serviceentries")));
}
