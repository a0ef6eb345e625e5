#![allow(clippy::unwrap_used)]

use serde::de::DeserializeOwned;

use super::*;
use crate::model::config::{AuthorizationAction, MtlsMode, Resolution};
use crate::model::istio::ObjectMeta;

fn meta() -> Meta {
    let m = ObjectMeta {
        name: Some("x".to_owned()),
        namespace: Some("demo".to_owned()),
        ..ObjectMeta::default()
    };
    super::meta(&m, &Context::default()).unwrap()
}

fn spec<S: DeserializeOwned>(yaml: &str) -> S {
    serde_saphyr::from_str(yaml).unwrap()
}

/// The errors of a validation, as `path: message`.
fn errors<T>(r: Result<T, Vec<FieldError>>) -> Vec<String> {
    match r {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn service_entry_resolution_rules() {
    let ctx = Context::default();
    let static_without_endpoints =
        spec("hosts: [a.example.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\n");
    assert_eq!(
        errors(service_entry(meta(), &static_without_endpoints, &ctx)),
        ["spec.resolution: resolution STATIC needs endpoints or a workloadSelector"]
    );
    let none_with_endpoints = spec(
        "hosts: [a.example.com]\nports: [{number: 80, name: http}]\nendpoints: [{address: 10.0.0.1}]\n",
    );
    assert_eq!(
        errors(service_entry(meta(), &none_with_endpoints, &ctx)),
        ["spec.endpoints: endpoints must not be set with resolution NONE"]
    );
    let dns_wildcard = spec(
        "hosts: ['*.example.com']\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DNS\n",
    );
    assert_eq!(
        errors(service_entry(meta(), &dns_wildcard, &ctx)),
        ["spec.hosts[0]: wildcard host *.example.com needs endpoints with resolution DNS"]
    );
    let static_hostname = spec(
        "hosts: [a.example.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: [{address: db.internal, ports: {grpc: 90}}]\n",
    );
    assert_eq!(
        errors(service_entry(meta(), &static_hostname, &ctx)),
        [
            "spec.endpoints[0].address: \"db.internal\" is not a valid IP address (resolution STATIC)",
            "spec.endpoints[0].ports.grpc: port \"grpc\" is not a port of this ServiceEntry",
        ]
    );
    let no_hosts =
        spec("ports: [{number: 80, name: http}, {number: 80, name: http, protocol: SMTP}]\n");
    assert_eq!(
        errors(service_entry(meta(), &no_hosts, &ctx)),
        [
            "spec.hosts: a ServiceEntry needs at least one host",
            "spec.ports[1].number: port 80 is used twice",
            "spec.ports[1].name: port name \"http\" is used twice",
            "spec.ports[1].protocol: \"SMTP\" is not one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, MYSQL, REDIS, TCP, TLS, UDP",
        ]
    );
    let dns = spec(
        "hosts: [db.example.com]\nports: [{number: 5432, name: tcp-pg}]\nresolution: DNS\nendpoints: [{address: db1.example.com}]\n",
    );
    let se = service_entry(meta(), &dns, &ctx).unwrap();
    assert_eq!(se.resolution, Resolution::Dns);
    assert_eq!(
        se.endpoints[0].address.as_ref().unwrap().to_string(),
        "db1.example.com"
    );
}

#[test]
fn workload_entry_needs_an_address() {
    let ctx = Context::default();
    let we = spec("labels: {app: x}\n");
    assert_eq!(
        errors(workload_entry(meta(), &we, &ctx)),
        ["spec.address: is required"]
    );
    let we = spec("address: unix:///var/run/app.sock\nweight: 0\n");
    let we = workload_entry(meta(), &we, &ctx).unwrap();
    assert_eq!(
        we.workload.address.unwrap().to_string(),
        "unix:///var/run/app.sock"
    );
    assert_eq!(we.workload.weight.get(), 1);
}

#[test]
fn workload_group_template_has_no_address() {
    let ctx = Context::default();
    let wg = spec(
        "metadata: {labels: {app: bill}}\ntemplate: {address: 10.0.0.1, serviceAccount: bill}\nprobe: {httpGet: {port: 8080, path: /ready}, tcpSocket: {port: 1}}\n",
    );
    assert_eq!(
        errors(workload_group(meta(), &wg, &ctx)),
        [
            "spec.template.address: must not be set in a WorkloadGroup template",
            "spec.probe: exactly one of httpGet, tcpSocket, exec and grpc must be set",
        ]
    );
}

#[test]
fn virtual_service_rules() {
    let ctx = Context::default();
    let one_destination = spec("hosts: [bill]\nhttp: [{route: [{destination: {host: bill}}]}]\n");
    let vs = virtual_service(meta(), &one_destination, &ctx).unwrap();
    assert_eq!(vs.hosts[0].as_str(), "bill.demo.svc.cluster.local");

    let bad = spec(
        "hosts: [bill]\nhttp:\n- match: [{uri: {prefix: /a, exact: /a}}]\n  timeout: 5 seconds\n  route: [{destination: {host: bill, subset: V1}}]\n  redirect: {uri: /b}\n",
    );
    assert_eq!(
        errors(virtual_service(meta(), &bad, &ctx)),
        [
            "spec.http[0]: only one of route, redirect, directResponse and delegate may be set",
            "spec.http[0].match[0].uri: exactly one of exact, prefix and regex must be set",
            "spec.http[0].route[0].destination.subset: \"V1\" is not a valid subset name",
            "spec.http[0].timeout: \"5 seconds\" is not a valid duration (e.g. 1s, 500ms)",
        ]
    );
    let empty = spec("hosts: [bill]\n");
    assert_eq!(
        errors(virtual_service(meta(), &empty, &ctx)),
        ["spec: at least one of http, tls and tcp must be set"]
    );
}

#[test]
fn durations() {
    for ok in ["1s", "0.5s", "100ms", "1h30m", "10us"] {
        assert!(is_duration(ok), "{ok}");
    }
    for bad in ["", "1", "s", "1 s", "1sec", "-1s"] {
        assert!(!is_duration(bad), "{bad}");
    }
}

#[test]
fn peer_authentication_modes() {
    let ctx = Context::default();
    let pa = spec("mtls: {mode: STRICT}\n");
    assert_eq!(
        peer_authentication(meta(), &pa, &ctx).unwrap().mode,
        MtlsMode::Strict
    );
    let pa = spec("mtls: {mode: ON}\nportLevelMtls: {8080: {mode: DISABLE}}\n");
    assert_eq!(
        errors(peer_authentication(meta(), &pa, &ctx)),
        [
            "spec.mtls.mode: \"ON\" is not one of UNSET, DISABLE, PERMISSIVE, STRICT",
            "spec.portLevelMtls: port-level mTLS needs a workload selector with matchLabels",
        ]
    );
}

#[test]
fn authorization_policy_rules() {
    let ctx = Context::default();
    let ok = spec(
        "action: DENY\nrules: [{from: [{source: {notNamespaces: [demo]}}], to: [{operation: {ports: ['8080'], methods: [POST]}}]}]\n",
    );
    let ap = authorization_policy(meta(), &ok, &ctx).unwrap();
    assert_eq!(ap.action, AuthorizationAction::Deny);

    let bad = spec(
        "action: CUSTOM\nrules:\n- from: [{source: {}}, {}]\n  to: [{operation: {ports: [http]}}]\n  when: [{key: 'request.headers[x]'}]\n- from: [{source: {ipBlocks: [10.0.0.0/33]}}]\n",
    );
    assert_eq!(
        errors(authorization_policy(meta(), &bad, &ctx)),
        [
            "spec.provider.name: a CUSTOM policy needs a provider",
            "spec.rules[0].from[0].source: at least one field must be set",
            "spec.rules[0].from[1].source: is required",
            "spec.rules[0].to[0].operation.ports[0]: \"http\" is not a valid port",
            "spec.rules[0].when[0]: one of values and notValues is required",
            "spec.rules[1].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" is not a valid IP address or CIDR block",
        ]
    );
}

#[test]
fn gateway_servers() {
    let ctx = Context::default();
    let gw = spec(
        "selector: {istio: ingressgateway}\nservers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [demo/bill.example.com]\n",
    );
    assert_eq!(
        errors(gateway(meta(), &gw, &ctx)),
        ["spec.servers[0].tls: HTTPS and TLS servers need tls settings"]
    );
}

#[test]
fn destination_rule_subsets() {
    let ctx = Context::default();
    let dr = spec(
        "host: bill\nsubsets: [{name: v1, labels: {version: v1}}, {name: v1}]\ntrafficPolicy: {loadBalancer: {simple: FASTEST}}\n",
    );
    assert_eq!(
        errors(destination_rule(meta(), &dr, &ctx)),
        [
            "spec.trafficPolicy.loadBalancer.simple: \"FASTEST\" is not one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST",
            "spec.subsets[1].name: subset \"v1\" is defined twice",
        ]
    );
}

#[test]
fn cors_policy_and_mirror_fields_are_checked() {
    let ctx = Context::default();
    let vs = spec(
        "hosts: [shop]
http:
- corsPolicy:
    allowOrigins: [{exact: a, prefix: b}]
    allowMethods: ['GET,POST']
    maxAge: ten
    unmatchedPreflights: DROP
  mirrorPercent: 150
  route: [{destination: {host: shop}}]
",
    );
    assert_eq!(
        errors(virtual_service(meta(), &vs, &ctx)),
        [
            "spec.http[0].mirrorPercent: 150 is above 100",
            "spec.http[0].corsPolicy.allowOrigins[0]: exactly one of exact, prefix and regex must be set",
            "spec.http[0].corsPolicy.maxAge: \"ten\" is not a valid duration (e.g. 1s, 500ms)",
            "spec.http[0].corsPolicy.unmatchedPreflights: \"DROP\" is not one of UNSPECIFIED, FORWARD, IGNORE",
            "spec.http[0].corsPolicy.allowMethods[0]: \"GET,POST\" is not a method or header name",
        ]
    );
}

#[test]
fn a_bad_fallback_annotation_rejects_its_destination_rule_alone() {
    let text = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
  namespace: demo
  annotations: {traffic.hostmesh.io/fallback: '{"status": 700}'}
spec: {host: shop}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bill
  namespace: demo
  annotations: {traffic.hostmesh.io/fallback: '{"status": 200, "body": "ok"}'}
spec: {host: bill}
"#;
    let parsed = crate::sources::static_files::parse_file(
        std::path::Path::new("rules.yaml"),
        text,
        &Context::default(),
    );
    let errs: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("DestinationRule demo/shop")
            && errs[0].contains(
                "metadata.annotations[\"traffic.hostmesh.io/fallback\"]: status: 700 is not within 200-599"
            ),
        "{}",
        errs[0]
    );
    assert_eq!(parsed.objects.len(), 1, "the good rule is kept");
}
