//! The DNS proxy on 127.0.0.1 with real sockets: mesh answers, search domains, forwarding to an
//! upstream the test runs, SERVFAIL when upstreams fail, and a table swap without restart.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hostmesh_agent::dns::{DnsProxy, DnsProxyConfig, NameTable, SharedNameTable};
use support::dns::{FakeUpstream, addresses, ask_tcp, ask_udp};

const MESH: &str = "bill-service.demo.svc.cluster.local.";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn any_local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn mesh_table() -> NameTable {
    NameTable::new([(MESH, vec![ip("240.240.0.1"), ip("fd00::1")])]).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A proxy on an ephemeral port whose resolv.conf names `upstream` (or a dead port).
async fn proxy(table: SharedNameTable, upstream_port: u16) -> (DnsProxy, tempfile::NamedTempFile) {
    let mut resolv = tempfile::NamedTempFile::new().unwrap();
    writeln!(resolv, "nameserver 127.0.0.1\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5").unwrap();
    let config = DnsProxyConfig {
        listen: vec![any_local()],
        resolv_conf: resolv.path().to_owned(),
        upstream_port,
        upstream_timeout: Duration::from_secs(2),
        mark: None,
    };
    (DnsProxy::start(&config, table).await.unwrap(), resolv)
}

#[tokio::test]
async fn mesh_names_answer_from_the_table() {
    let upstream = FakeUpstream::start(any_local(), UPSTREAM_ANSWER).await;
    let (dns, _resolv) = proxy(mesh_table().shared(), upstream.addr.port()).await;
    let a = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.metadata.id, 0x4242);
    assert_eq!(addresses(&a), [ip("240.240.0.1")]);
    let aaaa = ask_tcp(dns.tcp_addrs()[0], MESH, RecordType::AAAA).await;
    assert_eq!(addresses(&aaaa), [ip("fd00::1")]);
    let mx = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::MX).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert!(
        upstream.asked().is_empty(),
        "mesh names went upstream: {:?}",
        upstream.asked()
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn short_names_resolve_through_search_domains() {
    let upstream = FakeUpstream::start(any_local(), UPSTREAM_ANSWER).await;
    let (dns, _resolv) = proxy(mesh_table().shared(), upstream.addr.port()).await;
    let short = ask_udp(
        any_local(),
        dns.udp_addrs()[0],
        "bill-service.",
        RecordType::A,
    )
    .await;
    assert_eq!(addresses(&short), [ip("240.240.0.1")]);
    assert_eq!(short.answers[0].name.to_string(), "bill-service.");

    let expanded = "bill-service.demo.svc.cluster.local.svc.cluster.local.";
    let alias = ask_udp(any_local(), dns.udp_addrs()[0], expanded, RecordType::A).await;
    match &alias.answers[0].data {
        RData::CNAME(target) => assert_eq!(target.0.to_string(), MESH),
        other => panic!("expected a CNAME first, got {other:?}"),
    }
    assert_eq!(addresses(&alias), [ip("240.240.0.1")]);
    assert!(upstream.asked().is_empty(), "{:?}", upstream.asked());
    dns.shutdown().await;
}

#[tokio::test]
async fn other_names_are_forwarded_and_the_answer_comes_back() {
    let upstream = FakeUpstream::start(any_local(), UPSTREAM_ANSWER).await;
    let (dns, _resolv) = proxy(mesh_table().shared(), upstream.addr.port()).await;
    let udp = ask_udp(
        any_local(),
        dns.udp_addrs()[0],
        "www.example.com.",
        RecordType::A,
    )
    .await;
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(udp.metadata.id, 0x4242);
    assert_eq!(addresses(&udp), [IpAddr::V4(UPSTREAM_ANSWER)]);
    assert_eq!(upstream.asked(), ["www.example.com."]);
    dns.shutdown().await;
}

#[tokio::test]
async fn a_failing_upstream_means_servfail_never_nxdomain() {
    // Bind and drop a socket to get a port nothing listens on.
    let dead_port = std::net::UdpSocket::bind(any_local())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (dns, _resolv) = proxy(mesh_table().shared(), dead_port).await;
    let answer = ask_udp(
        any_local(),
        dns.udp_addrs()[0],
        "www.example.com.",
        RecordType::A,
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    let mesh = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::A).await;
    assert_eq!(
        addresses(&mesh),
        [ip("240.240.0.1")],
        "mesh names need no upstream"
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn a_swapped_table_takes_effect_without_restart() {
    let upstream = FakeUpstream::start(any_local(), UPSTREAM_ANSWER).await;
    let table = NameTable::default().shared();
    let (dns, _resolv) = proxy(table.clone(), upstream.addr.port()).await;
    let before = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::A).await;
    assert_eq!(
        addresses(&before),
        [IpAddr::V4(UPSTREAM_ANSWER)],
        "not yet a mesh name"
    );

    table.store(mesh_table().into());
    let after = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::A).await;
    assert_eq!(addresses(&after), [ip("240.240.0.1")]);

    table.store(NameTable::default().into());
    let removed = ask_udp(any_local(), dns.udp_addrs()[0], MESH, RecordType::A).await;
    assert_eq!(addresses(&removed), [IpAddr::V4(UPSTREAM_ANSWER)]);
    assert_eq!(upstream.asked(), [MESH, MESH]);
    dns.shutdown().await;
}
