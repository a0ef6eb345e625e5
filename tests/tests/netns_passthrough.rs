//! Outbound passthrough through real interception (root): a host's connection to a
//! destination the mesh does not know is redirected by the agent's nftables table to the
//! proxy's outbound listener, which recovers the original destination with `SO_ORIGINAL_DST`
//! and copies the bytes there (ALLOW_ANY), or closes it (REGISTRY_ONLY). The proxy's own
//! upstream socket carries the skip mark, so it is not captured again.

#![allow(clippy::unwrap_used)]

#[path = "../../agent/tests/support/netns.rs"]
#[allow(dead_code)]
mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hostmesh_agent::nft::{self, InterceptionSpec, Nft};
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{CertificateSlot, TrustBundle, certified_key};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};
use hostmesh_proxy::config::spec::ConfigSpec;
use hostmesh_proxy::config::{ConfigHandle, ProxyConfig, UnknownDestination};
use hostmesh_proxy::metrics::{Direction, Outcome};
use hostmesh_proxy::{Proxy, Settings, drain, tls::MeshTls};
use netns::{Lab, SERVER_IP};

const MARK: u32 = 0x539;

/// An echo server in the server namespace on SERVER_IP:port.
fn echo_server(lab: &Lab, port: u16) {
    let listener = lab
        .server
        .run(|| TcpListener::bind((SERVER_IP, port)).unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn mesh_tls(dir: &std::path::Path) -> Arc<MeshTls> {
    let paths = CaPaths::new(dir.join("ca"));
    store::init(&paths, &InitOptions::default(), None).unwrap();
    let ca = CertificateAuthority::load(&paths, None).unwrap();
    let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/front".parse().unwrap();
    let issued = ca
        .issue_with_new_key(&id, &[], Duration::from_secs(3600))
        .unwrap();
    let slot = CertificateSlot::new(
        certified_key(issued.chain.to_pem().as_bytes(), issued.key_pem.as_bytes()).unwrap(),
    );
    let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
    Arc::new(MeshTls::new(slot, bundle, Duration::from_secs(5)).unwrap())
}

/// The proxy's outbound listener on 0.0.0.0:15001 inside the client namespace, running on a
/// runtime whose threads were created there (so its upstream sockets are made there too).
fn start_proxy(lab: &Lab, unknown: UnknownDestination) -> (tokio::runtime::Runtime, Arc<Proxy>) {
    let dir = tempfile::tempdir().unwrap();
    let tls = mesh_tls(dir.path());
    let mut spec = ConfigSpec::default();
    spec.outbound.unknown_destination = unknown;
    let config = ConfigHandle::new(ProxyConfig::build(&spec).unwrap());
    let mut settings = Settings::default();
    settings.pool.mark = Some(MARK);
    settings.connect_timeout = Duration::from_secs(3);
    let runtime = lab.client.run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });
    let proxy = Proxy::new(config, tls, settings);
    // `block_on` runs on the calling thread: bind from a thread inside the namespace.
    let outbound = lab.client.run(|| {
        runtime
            .block_on(proxy.outbound(SocketAddr::from(([0, 0, 0, 0], 15001))))
            .unwrap()
    });
    let (trigger, watcher) = drain::channel();
    std::mem::forget(trigger);
    runtime.spawn(outbound.run(watcher));
    (runtime, proxy)
}

fn install_interception(lab: &Lab) {
    let config = InterceptionSpec {
        skip_mark: Some(MARK),
        dns_capture: false,
        ..InterceptionSpec::default()
    }
    .validate()
    .unwrap();
    lab.client
        .run(|| nft::install(&Nft::default(), &config).unwrap());
}

/// Connects from the client namespace (as root, not the skip uid, no mark: captured).
fn exchange(lab: &Lab, port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    lab.client.run(|| {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddr::from((SERVER_IP.parse::<std::net::Ipv4Addr>().unwrap(), port)),
            Duration::from_secs(5),
        )?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(payload)?;
        let mut got = vec![0u8; payload.len()];
        stream.read_exact(&mut got)?;
        Ok(got)
    })
}

#[test]
fn unknown_destinations_pass_through_the_proxy_when_allowed() {
    let lab = Lab::new("pt");
    echo_server(&lab, 8080);
    let (_runtime, proxy) = start_proxy(&lab, UnknownDestination::Passthrough);
    install_interception(&lab);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let got = exchange(&lab, 8080, &payload).unwrap();
    assert_eq!(got, payload, "bytes changed on the way");
    assert_eq!(
        proxy
            .metrics()
            .connections(Direction::Outbound, Outcome::Passthrough),
        1,
        "the connection did not go through the proxy's passthrough"
    );
}

#[test]
fn unknown_destinations_are_refused_under_registry_only() {
    let lab = Lab::new("ro");
    echo_server(&lab, 8080);
    let (_runtime, proxy) = start_proxy(&lab, UnknownDestination::Refuse);
    install_interception(&lab);
    let outcome = exchange(&lab, 8080, b"hello");
    assert!(
        outcome.is_err(),
        "a REGISTRY_ONLY mesh let {outcome:?} through"
    );
    assert_eq!(
        proxy
            .metrics()
            .connections(Direction::Outbound, Outcome::Refused),
        1
    );
    assert_eq!(
        proxy
            .metrics()
            .connections(Direction::Outbound, Outcome::Passthrough),
        0
    );
}
