#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::model::config::{Address, MeshLocation, Resolution, ServicePort};
use crate::model::types::{Labels, Weight};
use crate::model::validate::Context;
use crate::model::{
    Endpoint, Hostname, Identity, Kind, Namespace, ObjectKey, PortNumber, Protocol, Provenance,
    Service, SourceName, TrustDomain,
};
use crate::sources::static_files::parse_file;

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: Kind::ServiceEntry,
        namespace: Namespace::new(ns).unwrap(),
        name: crate::model::types::ObjectName::new(name).unwrap(),
    }
}

/// A service of `source` named `host` on `ports`, one endpoint per IP on every port.
fn service(
    source: &str,
    host: &str,
    ports: &[u16],
    ips: &[&str],
    addresses: &[&str],
) -> Arc<Service> {
    let source = SourceName::new(source);
    let origin = key("default", host.split('.').next().unwrap());
    let object = format!("{source} object for {host}");
    let ports: Vec<ServicePort> = ports
        .iter()
        .map(|&p| ServicePort {
            number: PortNumber::new(p.into()).unwrap(),
            name: format!("tcp-{p}"),
            protocol: Protocol::Tcp,
            target_port: None,
        })
        .collect();
    let endpoints = ports
        .iter()
        .flat_map(|p| ips.iter().map(move |ip| (p.number, *ip)))
        .map(|(port, ip)| Endpoint {
            service_port: port,
            address: Address::Ip(ip.parse::<IpAddr>().unwrap()),
            port,
            labels: Labels::default(),
            locality: None,
            network: None,
            weight: Weight::default(),
            identity: Identity::new(TrustDomain::default(), "default", "default").unwrap(),
            origin: origin.clone(),
            provenance: Provenance::new(source.clone(), format!("{source} instance {ip}"), 7),
        })
        .collect();
    Arc::new(Service {
        hostname: Hostname::new(host).unwrap(),
        namespace: Namespace::default_namespace(),
        ports,
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        resolution: Resolution::Static,
        location: MeshLocation::External,
        export_to: Vec::new(),
        subject_alt_names: Vec::new(),
        endpoints,
        origin,
        provenance: Provenance::new(source, object, 7),
    })
}

fn view(source: &str, precedence: Precedence, services: Vec<Arc<Service>>) -> SourceView {
    SourceView {
        services: services.into(),
        ..SourceView::empty(SourceName::new(source), precedence)
    }
}

fn hosts(outcome: &MergeOutcome) -> Vec<(String, String)> {
    outcome
        .snapshot
        .services()
        .iter()
        .map(|s| (s.hostname.to_string(), s.provenance.source.to_string()))
        .collect()
}

#[test]
fn the_higher_source_owns_a_host_and_the_conflict_names_both() {
    let views = [
        view(
            "consul",
            Precedence::Consul,
            vec![
                service(
                    "consul",
                    "web.service.consul",
                    &[8080],
                    &["10.1.0.1", "10.1.0.2"],
                    &[],
                ),
                service("consul", "db.service.consul", &[5432], &["10.1.0.3"], &[]),
            ],
        ),
        view(
            "static",
            Precedence::Static,
            vec![service(
                "static",
                "web.service.consul",
                &[80],
                &["10.0.0.1"],
                &[],
            )],
        ),
    ];
    let out = merge(3, &views);
    assert_eq!(out.snapshot.version(), 3);
    assert_eq!(
        hosts(&out),
        [
            ("db.service.consul".into(), "consul".into()),
            ("web.service.consul".into(), "static".into())
        ]
    );
    let web = out
        .snapshot
        .services_named("web.service.consul")
        .next()
        .unwrap();
    assert_eq!(
        web.endpoints.len(),
        1,
        "no endpoint of the losing source is mixed in"
    );
    assert_eq!(out.conflicts.len(), 1);
    let c = &out.conflicts[0];
    assert_eq!(c.kind, ConflictKind::Host);
    assert_eq!(c.subject, "web.service.consul");
    assert_eq!(
        (c.winner_source.as_str(), c.loser_source.as_str()),
        ("static", "consul")
    );
    assert_eq!(c.detail, "ports 80/TCP kept, ports 8080/TCP not used");
}

#[test]
fn provenance_is_kept_on_every_service_and_endpoint() {
    let views = [
        view(
            "static",
            Precedence::Static,
            vec![service("static", "a.example", &[80], &["10.0.0.1"], &[])],
        ),
        view(
            "kubernetes",
            Precedence::Kubernetes,
            vec![service(
                "kubernetes",
                "b.example",
                &[80],
                &["10.0.0.2"],
                &[],
            )],
        ),
        view(
            "consul",
            Precedence::Consul,
            vec![service(
                "consul",
                "c.example",
                &[80, 81],
                &["10.0.0.3"],
                &[],
            )],
        ),
    ];
    let out = merge(1, &views);
    assert_eq!(out.snapshot.services().len(), 3);
    for s in out.snapshot.services() {
        let first = s.hostname.as_str().chars().next().unwrap();
        let expected = match first {
            'a' => "static",
            'b' => "kubernetes",
            _ => "consul",
        };
        assert_eq!(s.provenance.source.as_str(), expected);
        assert!(!s.endpoints.is_empty());
        for e in &s.endpoints {
            assert_eq!(e.provenance.source.as_str(), expected);
            assert_eq!(
                &*e.provenance.object,
                format!("{expected} instance {}", e.address)
            );
            assert_eq!(&*e.provenance.revision, "7");
        }
    }
    assert!(out.conflicts.is_empty());
}

#[test]
fn an_address_claimed_by_two_hosts_stays_with_the_higher_source() {
    let views = [
        view(
            "consul",
            Precedence::Consul,
            vec![service(
                "consul",
                "b.example",
                &[80],
                &[],
                &["240.1.0.1", "240.1.0.2"],
            )],
        ),
        view(
            "static",
            Precedence::Static,
            vec![service("static", "z.example", &[80], &[], &["240.1.0.1"])],
        ),
    ];
    let out = merge(1, &views);
    let b = out.snapshot.services_named("b.example").next().unwrap();
    let z = out.snapshot.services_named("z.example").next().unwrap();
    assert_eq!(z.addresses, ["240.1.0.1"]);
    assert_eq!(
        b.addresses,
        ["240.1.0.2"],
        "the loser keeps its other address"
    );
    assert_eq!(out.conflicts.len(), 1);
    let c = &out.conflicts[0];
    assert_eq!(c.kind, ConflictKind::Address);
    assert_eq!(c.subject, "240.1.0.1");
    assert_eq!(
        (c.winner_source.as_str(), c.loser_source.as_str()),
        ("static", "consul")
    );
    assert!(c.winner_object.starts_with("z.example"), "{c:?}");
    assert!(c.loser_object.starts_with("b.example"), "{c:?}");
}

#[test]
fn within_one_source_the_smaller_host_name_keeps_an_address() {
    let views = [view(
        "static",
        Precedence::Static,
        vec![
            service("static", "y.example", &[80], &[], &["240.1.0.9"]),
            service("static", "x.example", &[80], &[], &["240.1.0.9"]),
        ],
    )];
    let out = merge(1, &views);
    let x = out.snapshot.services_named("x.example").next().unwrap();
    let y = out.snapshot.services_named("y.example").next().unwrap();
    assert_eq!(x.addresses, ["240.1.0.9"]);
    assert!(y.addresses.is_empty());
    assert_eq!(out.conflicts[0].kind, ConflictKind::Address);
}

#[test]
fn one_bad_object_is_rejected_alone() {
    let mut bad_endpoint = Service::clone(&service(
        "consul",
        "api.service.consul",
        &[80],
        &["10.0.0.1", "10.0.0.2"],
        &[],
    ));
    bad_endpoint.endpoints[1].service_port = PortNumber::new(9).unwrap();
    let mut consul = view(
        "consul",
        Precedence::Consul,
        vec![
            service("consul", "noports.service.consul", &[], &[], &[]),
            Arc::new(bad_endpoint),
            service("consul", "good.service.consul", &[80], &["10.0.0.3"], &[]),
        ],
    );
    consul.rejected = Arc::from(vec![Rejection {
        source: "consul".into(),
        object: "consul service odd, instance odd-1 on node n1".into(),
        reason: "no address".into(),
    }]);
    let out = merge(1, &[consul]);
    assert_eq!(
        hosts(&out),
        [
            ("api.service.consul".into(), "consul".into()),
            ("good.service.consul".into(), "consul".into())
        ]
    );
    let api = out
        .snapshot
        .services_named("api.service.consul")
        .next()
        .unwrap();
    assert_eq!(api.endpoints.len(), 1);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "endpoint 10.0.0.2:80 is for port 9, which api.service.consul does not declare",
            "service noports.service.consul declares no port",
            "no address",
        ]
    );
}

#[test]
fn the_same_object_from_two_sources_comes_from_the_higher_one() {
    let yaml = |host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: demo}}\nspec:\n  host: {host}\n"
        )
    };
    let objects = |text: String| {
        let parsed = parse_file(Path::new("x.yaml"), &text, &Context::default());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        Arc::new(
            parsed
                .objects
                .into_iter()
                .map(|o| (o.object.key(), o.object))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let mut st = SourceView::empty(SourceName::new("static"), Precedence::Static);
    st.objects = objects(yaml("web.static.example"));
    let mut k8s = SourceView::empty(SourceName::new("kubernetes"), Precedence::Kubernetes);
    k8s.objects = objects(yaml("web.k8s.example"));
    let out = merge(1, &[k8s, st]);
    let rules: Vec<String> = out
        .snapshot
        .destination_rules()
        .map(|d| d.host.to_string())
        .collect();
    assert_eq!(rules, ["web.static.example"]);
    assert_eq!(out.conflicts.len(), 1);
    assert_eq!(out.conflicts[0].kind, ConflictKind::Object);
    assert_eq!(out.conflicts[0].subject, "DestinationRule demo/web");
    assert_eq!(out.conflicts[0].loser_source, "kubernetes");
}

#[test]
fn the_result_does_not_depend_on_the_order_of_the_views_and_shares_services() {
    let a = view(
        "static",
        Precedence::Static,
        vec![service(
            "static",
            "web.service.consul",
            &[80],
            &["10.0.0.1"],
            &["240.0.0.1"],
        )],
    );
    let b = view(
        "kubernetes",
        Precedence::Kubernetes,
        vec![service(
            "kubernetes",
            "k.example",
            &[80],
            &["10.0.0.2"],
            &["240.0.0.1"],
        )],
    );
    let c = view(
        "consul",
        Precedence::Consul,
        vec![
            service("consul", "web.service.consul", &[8080], &["10.1.0.1"], &[]),
            service("consul", "only.service.consul", &[8080], &["10.1.0.2"], &[]),
        ],
    );
    let first = merge(1, &[a.clone(), b.clone(), c.clone()]);
    for order in [[&c, &b, &a], [&b, &c, &a], [&c, &a, &b]] {
        let views: Vec<SourceView> = order.iter().map(|v| (*v).clone()).collect();
        let again = merge(1, &views);
        assert_eq!(hosts(&again), hosts(&first));
        assert_eq!(again.conflicts, first.conflicts);
        assert_eq!(again.rejected, first.rejected);
        for (x, y) in again
            .snapshot
            .services()
            .iter()
            .zip(first.snapshot.services())
        {
            assert_eq!(**x, **y);
        }
    }
    // A service nobody changed is the very one the source handed in.
    let only = first
        .snapshot
        .services()
        .iter()
        .find(|s| s.hostname.as_str() == "only.service.consul")
        .unwrap();
    assert!(Arc::ptr_eq(only, &c.services[1]));
}

#[test]
fn registrations_become_endpoints_of_selecting_services_or_are_refused() {
    use crate::model::Registration;
    use crate::model::registration::NodeClaim;
    use crate::model::snapshot::Snapshot;

    let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm, namespace: demo}\nspec:\n  hosts: [vm.demo.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8080, name: http}]\n  workloadSelector: {labels: {app: vm}}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: vm, namespace: demo}\nspec:\n  metadata: {labels: {app: vm}}\n  template: {serviceAccount: vm, ports: {http: 9090}}\n";
    let parsed = parse_file(Path::new("x.yaml"), text, &Context::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let snap = Snapshot::build(
        3,
        parsed.objects.into_iter().map(|o| o.object),
        &TrustDomain::default(),
    );
    let mut st = view("static", Precedence::Static, snap.services().to_vec());
    st.objects = snap.object_map().clone();

    let register = |ip: &str, group: &str, sa: &str| {
        let identity: Identity = format!("spiffe://cluster.local/ns/demo/sa/{sa}")
            .parse()
            .unwrap();
        let labels = BTreeMap::from([("version".to_owned(), "v2".to_owned())]);
        let claim = NodeClaim {
            group,
            ip: ip.parse().unwrap(),
            labels: &labels,
            network: None,
            locality: Some("eu/west"),
            identity: &identity,
            node: "n",
        };
        let source = SourceName::new(SourceName::AUTO_REGISTRATION);
        Registration::new(claim, Provenance::new(source, format!("node {ip}"), 1)).unwrap()
    };
    let mut auto = SourceView::empty(
        SourceName::new(SourceName::AUTO_REGISTRATION),
        Precedence::AutoRegistration,
    );
    auto.registrations = vec![
        register("10.0.0.7", "vm", "vm"),
        register("10.0.0.8", "vm", "intruder"),
        register("10.0.0.9", "nope", "vm"),
    ]
    .into();
    let out = merge(1, &[auto, st]);
    let vm = out
        .snapshot
        .services_named("vm.demo.svc.cluster.local")
        .next()
        .unwrap();
    assert_eq!(vm.endpoints.len(), 1, "{:?}", vm.endpoints);
    let e = &vm.endpoints[0];
    assert_eq!(e.address.to_string(), "10.0.0.7");
    assert_eq!(e.port.get(), 9090, "the template's port");
    assert_eq!(e.labels.get("app"), Some("vm"));
    assert_eq!(e.labels.get("version"), Some("v2"), "the node's label");
    assert_eq!(e.locality.as_ref().unwrap().to_string(), "eu/west");
    assert_eq!(
        e.identity.to_string(),
        "spiffe://cluster.local/ns/demo/sa/vm"
    );
    assert_eq!(e.origin.to_string(), "WorkloadEntry demo/vm-10-0-0-7");
    assert_eq!(e.provenance.source.as_str(), "auto-registration");
    // The entry is an object of the snapshot, as a static one would be.
    assert!(matches!(
        out.snapshot.object(&e.origin),
        Some(crate::model::ConfigObject::WorkloadEntry(we)) if we.workload.service_account.is_some()
    ));
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "WorkloadGroup demo/nope does not exist",
            "WorkloadGroup demo/vm runs as service account \"vm\" but the node's certificate proves spiffe://cluster.local/ns/demo/sa/intruder",
        ]
    );
}
