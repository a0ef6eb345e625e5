//! DNS capture in a real network namespace (root): a query to any resolver on port 53 lands on
//! the DNS proxy at 127.0.0.1:15053 and the client's connected socket gets the reply (host-lab
//! pitfall 2); the proxy's own upstream queries, carrying the agent's mark, are not captured.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use hostmesh_agent::dns::{DnsProxy, DnsProxyConfig, NameTable};
use hostmesh_agent::nft::{self, DEFAULT_SKIP_MARK, InterceptionSpec, Nft};
use support::dns::{FakeUpstream, addresses, ask_tcp, ask_udp};
use support::netns::{Lab, SERVER_IP};

const MESH: &str = "bill-service.demo.svc.cluster.local.";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

#[test]
fn dns_to_any_resolver_lands_on_the_proxy() {
    let lab = Lab::new("dns");
    let upstream_socket = lab
        .server
        .run(|| std::net::UdpSocket::bind((SERVER_IP, 53)).unwrap());
    let mut resolv = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        resolv,
        "nameserver {SERVER_IP}\nsearch demo.svc.cluster.local"
    )
    .unwrap();
    let config = InterceptionSpec {
        skip_mark: Some(DEFAULT_SKIP_MARK),
        dns_capture: true,
        ..InterceptionSpec::default()
    }
    .validate()
    .unwrap();
    lab.client
        .run(|| nft::install(&Nft::default(), &config).unwrap());

    lab.client.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let upstream = FakeUpstream::from_std(upstream_socket, UPSTREAM_ANSWER);
            let table = NameTable::new([(MESH, vec!["240.240.0.1".parse().unwrap()])]).unwrap();
            let dns_config = DnsProxyConfig {
                resolv_conf: resolv.path().to_owned(),
                upstream_timeout: Duration::from_secs(2),
                ..DnsProxyConfig::default()
            };
            let dns = DnsProxy::start(&dns_config, table.shared()).await.unwrap();
            assert_eq!(
                dns.udp_addrs(),
                ["127.0.0.1:15053".parse::<SocketAddr>().unwrap()]
            );

            // Resolvers that do not exist, and the real upstream itself: all captured.
            let anywhere = SocketAddr::from(([0, 0, 0, 0], 0));
            for resolver in ["192.0.2.53:53", "127.0.0.53:53", &format!("{SERVER_IP}:53")] {
                let resolver: SocketAddr = resolver.parse().unwrap();
                let udp = ask_udp(anywhere, resolver, MESH, RecordType::A).await;
                assert_eq!(
                    addresses(&udp),
                    [IpAddr::from([240, 240, 0, 1])],
                    "{resolver}"
                );
                let tcp = ask_tcp(resolver, "bill-service.", RecordType::A).await;
                assert_eq!(
                    addresses(&tcp),
                    [IpAddr::from([240, 240, 0, 1])],
                    "{resolver}"
                );
            }
            assert!(upstream.asked().is_empty(), "{:?}", upstream.asked());

            // Other names go upstream, through the capture, and come back.
            let resolver: SocketAddr = "192.0.2.53:53".parse().unwrap();
            let other = ask_udp(anywhere, resolver, "www.example.com.", RecordType::A).await;
            assert_eq!(addresses(&other), [IpAddr::V4(UPSTREAM_ANSWER)]);
            assert_eq!(upstream.asked(), ["www.example.com."]);
            dns.shutdown().await;
        });
    });
}
