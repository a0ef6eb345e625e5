//! Snapshot tests of the translation (rendered resources under `snapshots/`), and the helpers
//! the plain assertions in `tests/` share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assertions;
mod l4;
mod l7;
mod load_balancing;

use std::net::IpAddr;
use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use prost::{Message, Name};

use super::*;
use crate::model::Snapshot;
use crate::model::validate::Context;
use crate::sources::static_files::parse_file;
use crate::xds::{NodeInfo, ResourceSet, Translator, type_url};

pub const BILL: &str = include_str!("../../../tests/fixtures/bill.yaml");
pub const TCP: &str = include_str!("../../../tests/fixtures/translate/tcp.yaml");
pub const EXTERNAL: &str = include_str!("../../../tests/fixtures/translate/external.yaml");
pub const NOVIP: &str = include_str!("../../../tests/fixtures/translate/novip.yaml");
pub const TRAFFIC: &str = include_str!("../../../tests/fixtures/translate/traffic.yaml");
pub const L7: &str = include_str!("../../../tests/fixtures/translate/l7.yaml");
pub const PEER_AUTH: &str = include_str!("../../../tests/fixtures/translate/peer-auth.yaml");

/// A snapshot of the objects of the given YAML files (which must all be valid).
pub fn snapshot(files: &[&str]) -> Snapshot {
    let mut objects = Vec::new();
    for (i, text) in files.iter().enumerate() {
        let parsed = parse_file(Path::new(&format!("f{i}.yaml")), text, &Context::default());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        objects.extend(parsed.objects.into_iter().map(|o| o.object));
    }
    Snapshot::build(1, objects, &TrustDomain::default())
}

pub fn node(ip: &str, namespace: &str, sa: &str) -> NodeInfo {
    NodeInfo {
        id: format!("sidecar~{ip}~vm.{namespace}~{namespace}.svc.cluster.local"),
        identity: format!("spiffe://cluster.local/ns/{namespace}/sa/{sa}")
            .parse()
            .unwrap(),
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        labels: Default::default(),
        workload_group: None,
        workload_name: None,
        network: None,
        locality: None,
    }
}

/// Decodes one resource of the set into its message.
pub fn decode<M: Message + Default>(set: &ResourceSet, type_url: &str, name: &str) -> M {
    let r = set.get(type_url, name).unwrap_or_else(|| {
        panic!(
            "no {type_url} named {name:?}; have {:?}",
            set.names(type_url)
        )
    });
    M::decode(r.body.value.as_slice()).unwrap()
}

pub fn any<M: Message + Default>(a: &envoy_types::pb::google::protobuf::Any) -> M {
    M::decode(a.value.as_slice()).unwrap()
}

/// Decodes an `Any` of a type the translation emits and renders it with `{:#?}`, nested
/// `Any`s rendered the same way instead of as bytes.
fn render_any(type_url: &str, bytes: &[u8]) -> String {
    fn d<M: Message + Default + std::fmt::Debug>(b: &[u8]) -> String {
        format!("{:#?}", M::decode(b).unwrap())
    }
    let name = type_url.rsplit('/').next().unwrap_or_default();
    let text = match name {
        n if n == Cluster::full_name() => d::<Cluster>(bytes),
        n if n == ClusterLoadAssignment::full_name() => d::<ClusterLoadAssignment>(bytes),
        n if n == Listener::full_name() => d::<Listener>(bytes),
        n if n == RouteConfiguration::full_name() => d::<RouteConfiguration>(bytes),
        n if n == NameTable::full_name() => d::<NameTable>(bytes),
        n if n == HttpConnectionManager::full_name() => d::<HttpConnectionManager>(bytes),
        n if n == TcpProxy::full_name() => d::<TcpProxy>(bytes),
        n if n == Router::full_name() => d::<Router>(bytes),
        n if n == HttpFault::full_name() => d::<HttpFault>(bytes),
        n if n == envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit::full_name() => {
            d::<envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit>(bytes)
        }
        n if n == envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors::full_name() => {
            d::<envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors>(bytes)
        }
        n if n == envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy::full_name() => {
            d::<envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy>(bytes)
        }
        n if n == envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::ResponseMapper::full_name() => {
            d::<envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::ResponseMapper>(bytes)
        }
        n if n == PreviousHostsPredicate::full_name() => d::<PreviousHostsPredicate>(bytes),
        n if n == TlsInspector::full_name() => d::<TlsInspector>(bytes),
        n if n == UpstreamTlsContext::full_name() => d::<UpstreamTlsContext>(bytes),
        n if n == DownstreamTlsContext::full_name() => d::<DownstreamTlsContext>(bytes),
        n if n == RawBuffer::full_name() => d::<RawBuffer>(bytes),
        n if n == HttpProtocolOptions::full_name() => d::<HttpProtocolOptions>(bytes),
        other => panic!("no renderer for {other}"),
    };
    expand_nested(&text)
}

/// Replaces the byte lists of `Any { type_url, value: [..] }` in a `{:#?}` rendering with
/// the rendering of the decoded message.
fn expand_nested(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    let mut url = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(rest) = trimmed.strip_prefix("type_url: \"") {
            url = rest.strip_suffix("\",").map(str::to_owned);
        } else if let (Some(u), true) = (&url, trimmed.starts_with("value: [")) {
            let mut bytes = Vec::new();
            if trimmed != "value: []," {
                for l in lines.by_ref() {
                    let t = l.trim();
                    if t == "]," {
                        break;
                    }
                    bytes.push(t.trim_end_matches(',').parse::<u8>().unwrap());
                }
            }
            let inner = render_any(u, &bytes);
            out.push_str(&format!("{indent}value: "));
            for (i, l) in inner.lines().enumerate() {
                if i > 0 {
                    out.push('\n');
                    out.push_str(indent);
                }
                out.push_str(l);
            }
            out.push_str(",\n");
            url = None;
            continue;
        }
        if !is_unset_field(trimmed) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A field at its protobuf default (`x: None,`, `x: [],`, `x: "",`, `x: 0,`, `x: false,`,
/// `x: {},`): left out of the rendering, which then shows only what the translation set.
fn is_unset_field(line: &str) -> bool {
    let Some((name, value)) = line.split_once(": ") else {
        return false;
    };
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && matches!(value, "None," | "[]," | "\"\"," | "0," | "false," | "{},")
}

/// Renders every resource of a set, by type (in push order) then name.
pub fn render(set: &ResourceSet) -> String {
    let mut out = String::new();
    for t in type_url::ALL {
        for r in set.of_type(t) {
            let short = t.rsplit('.').next().unwrap_or_default();
            out.push_str(&format!("### {short} {:?}\n", r.name));
            out.push_str(&render_any(&r.body.type_url, &r.body.value));
            out.push('\n');
        }
    }
    out
}

fn shared(files: &[&str]) -> ResourceSet {
    MeshTranslator::default().shared(&snapshot(files))
}

#[test]
fn snapshot_bill_service() {
    insta::assert_snapshot!("bill_service", render(&shared(&[BILL])));
}

#[test]
fn snapshot_tcp_service_with_mixed_endpoints() {
    insta::assert_snapshot!("tcp_service", render(&shared(&[TCP])));
}

#[test]
fn snapshot_external_dns_service() {
    insta::assert_snapshot!("external_dns_service", render(&shared(&[EXTERNAL])));
}

#[test]
fn snapshot_service_without_addresses() {
    insta::assert_snapshot!("service_without_addresses", render(&shared(&[NOVIP])));
}

#[test]
fn snapshot_traffic_policies() {
    let set = shared(&[TRAFFIC]);
    let mut out = String::new();
    for t in [type_url::CLUSTER, type_url::ROUTE] {
        for r in set.of_type(t) {
            out.push_str(&format!("### {:?}\n", r.name));
            out.push_str(&render_any(&r.body.type_url, &r.body.value));
            out.push('\n');
        }
    }
    insta::assert_snapshot!("traffic_policies", out);
}

#[test]
fn snapshot_inbound_of_a_node() {
    let snap = snapshot(&[BILL, PEER_AUTH]);
    let set = MeshTranslator::default().for_node(&snap, &node("10.0.0.6", "demo", "bill"));
    insta::assert_snapshot!("inbound_bill_vm_2", render(&set));
}

pub const LOAD_BALANCING: &str =
    include_str!("../../../tests/fixtures/translate/load-balancing.yaml");

/// A node in `demo` at `locality` with `labels`.
pub fn located_node(locality: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        locality: Some(locality.to_owned()),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..node("10.0.0.7", "demo", "front")
    }
}

#[test]
fn snapshot_load_balancing_for_a_node() {
    let snap = snapshot(&[LOAD_BALANCING]);
    let t = MeshTranslator::default();
    let mut out = String::new();
    let shared = t.shared(&snap);
    for r in shared.of_type(type_url::CLUSTER) {
        out.push_str(&format!("### shared {:?}\n", r.name));
        out.push_str(&render_any(&r.body.type_url, &r.body.value));
        out.push('\n');
    }
    let own = t.for_node(
        &snap,
        &located_node("eu-west/zone-a", &[("role", "tester")]),
    );
    for ty in [type_url::ENDPOINT, type_url::ROUTE] {
        for r in own.of_type(ty) {
            out.push_str(&format!("### node {:?}\n", r.name));
            out.push_str(&render_any(&r.body.type_url, &r.body.value));
            out.push('\n');
        }
    }
    insta::assert_snapshot!("load_balancing", out);
}
