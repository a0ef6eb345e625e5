//! The interception table in real network namespaces (root): what is installed, what it leaves
//! alone, and what it does to real connections.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use hostmesh_agent::nft::{self, InterceptionConfig, InterceptionSpec, Nft, NftError};
use serde_json::Value;
use socket2::{Domain, SockRef, Socket, Type};
use support::netns::{Lab, SERVER_IP};

const WAIT: Duration = Duration::from_secs(5);
const SKIP_UID: u32 = 4242;
const SKIP_MARK: u32 = 0x539;

fn config(inbound_ports: Vec<u16>, excluded_ports: Vec<u16>) -> InterceptionConfig {
    InterceptionSpec {
        skip_uid: Some(SKIP_UID),
        skip_mark: Some(SKIP_MARK),
        excluded_ports,
        inbound_ports,
        dns_capture: false,
        ..InterceptionSpec::default()
    }
    .validate()
    .unwrap()
}

/// The objects of one table in `nft -j list ruleset`, without handles.
fn table_in(ruleset: &Value, family: &str, table: &str) -> Vec<Value> {
    ruleset["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| {
            let (kind, body) = o.as_object()?.iter().next()?;
            let name = if kind == "table" {
                &body["name"]
            } else {
                &body["table"]
            };
            (body["family"] == family && name == table).then(|| {
                let mut body = body.clone();
                body.as_object_mut()?.remove("handle");
                Some(serde_json::json!({ kind.clone(): body }))
            })?
        })
        .collect()
}

fn generated(config: &InterceptionConfig) -> Vec<Value> {
    let ruleset = serde_json::to_value(nft::as_ruleset(nft::table_objects(config))).unwrap();
    ruleset["nftables"].as_array().unwrap().clone()
}

#[test]
fn install_replace_and_remove_touch_only_the_agent_table() {
    let lab = Lab::new("tbl");
    let ns = &lab.client;
    ns.nft_script(
        "table inet other {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         tcp dport 1234 accept\n }\n}\n",
    );
    let list = || ns.run(|| Nft::default().list_ruleset_json().unwrap());
    let other_before = table_in(&list(), "inet", "other");
    assert_eq!(other_before.len(), 3, "{other_before:?}");

    let first = config(vec![8080], vec![22]);
    ns.run(|| nft::install(&Nft::default(), &first).unwrap());
    assert_eq!(table_in(&list(), "inet", "hostmesh"), generated(&first));
    assert_eq!(table_in(&list(), "inet", "other"), other_before);

    let second = config(vec![], vec![22, 2222]);
    for _ in 0..2 {
        ns.run(|| nft::install(&Nft::default(), &second).unwrap());
        let now = table_in(&list(), "inet", "hostmesh");
        assert_eq!(now, generated(&second));
        assert_eq!(now.iter().filter(|o| o.get("table").is_some()).count(), 1);
        assert_eq!(table_in(&list(), "inet", "other"), other_before);
    }

    // A batch the kernel refuses changes nothing and its error carries nft's message.
    let mut bad = serde_json::to_value(nft::replace_batch(&first)).unwrap();
    let objects = bad["nftables"].as_array_mut().unwrap();
    let last = objects.len() - 1;
    objects[last]["add"]["rule"]["chain"] = "no-such-chain".into();
    let bad: nftables::schema::Nftables = serde_json::from_value(bad).unwrap();
    let err = ns.run(|| Nft::default().apply(&bad).unwrap_err());
    match &err {
        NftError::Failed { stderr, .. } => assert!(stderr.contains("No such file"), "{stderr}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(table_in(&list(), "inet", "hostmesh"), generated(&second));

    for _ in 0..2 {
        ns.run(|| nft::remove(&Nft::default()).unwrap());
        assert!(table_in(&list(), "inet", "hostmesh").is_empty());
        assert_eq!(table_in(&list(), "inet", "other"), other_before);
    }
}

#[test]
fn cleanup_subcommand_removes_the_table() {
    let lab = Lab::new("cln");
    let ns = &lab.client;
    ns.run(|| nft::install(&Nft::default(), &config(vec![], vec![22])).unwrap());
    let agent = env!("CARGO_BIN_EXE_hostmesh-agent");
    for _ in 0..2 {
        let out = ns.run(|| {
            std::process::Command::new(agent)
                .arg("cleanup")
                .output()
                .unwrap()
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ruleset = ns.run(|| Nft::default().list_ruleset_json().unwrap());
        assert!(table_in(&ruleset, "inet", "hostmesh").is_empty());
    }
}

/// Accepts one connection within [`WAIT`].
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(false).unwrap();
    let socket = SockRef::from(listener);
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let (stream, _) = listener.accept().unwrap_or_else(|e| {
        panic!(
            "no connection on {:?} within {WAIT:?}: {e}",
            listener.local_addr()
        )
    });
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

fn connect(socket: Socket, to: SocketAddr) -> TcpStream {
    socket
        .connect_timeout(&to.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

fn tcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, None).unwrap()
}

/// Sends `bytes` on `from` and checks that exactly they arrive on `to`.
fn carries(from: &mut TcpStream, to: &mut TcpStream, bytes: &[u8]) {
    from.write_all(bytes).unwrap();
    let mut got = vec![0; bytes.len()];
    to.read_exact(&mut got).unwrap();
    assert_eq!(got, bytes);
}

fn listen(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap()
}

#[test]
fn outbound_connections_are_redirected_except_excluded_ones() {
    let lab = Lab::new("out");
    let outbound = lab.client.run(|| listen("0.0.0.0:15001"));
    let (app, ssh) = lab
        .server
        .run(|| (listen("0.0.0.0:8080"), listen("0.0.0.0:22")));
    lab.client
        .run(|| nft::install(&Nft::default(), &config(vec![], vec![22])).unwrap());
    let app_addr: SocketAddr = format!("{SERVER_IP}:8080").parse().unwrap();
    let ssh_addr: SocketAddr = format!("{SERVER_IP}:22").parse().unwrap();

    // Any other destination lands on 15001, which learns where it was going.
    let mut client = connect(lab.client.run(tcp_socket), app_addr);
    let mut captured = accept(&outbound);
    let original = SockRef::from(&captured).original_dst_v4().unwrap();
    assert_eq!(original.as_socket(), Some(app_addr));
    carries(&mut client, &mut captured, b"to the proxy");

    // Port 22 goes where it was sent.
    let mut client = connect(lab.client.run(tcp_socket), ssh_addr);
    carries(&mut client, &mut accept(&ssh), b"ssh");

    // So does a socket with the agent's mark ...
    let marked = lab.client.run(|| {
        let socket = tcp_socket();
        socket.set_mark(SKIP_MARK).unwrap();
        socket
    });
    let mut client = connect(marked, app_addr);
    carries(&mut client, &mut accept(&app), b"marked");

    // ... and one owned by the agent's uid (set for the creating thread only).
    let owned = lab.client.run(|| {
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(SKIP_UID),
            rustix::process::Uid::from_raw(SKIP_UID),
            rustix::process::Uid::from_raw(SKIP_UID),
        )
        .unwrap();
        tcp_socket()
    });
    let mut client = connect(owned, app_addr);
    carries(&mut client, &mut accept(&app), b"agent uid");
}

#[test]
fn inbound_connections_to_workload_ports_are_redirected() {
    let lab = Lab::new("in");
    let (inbound, _workload) = lab
        .client
        .run(|| (listen("0.0.0.0:15006"), listen("0.0.0.0:8080")));
    lab.client
        .run(|| nft::install(&Nft::default(), &config(vec![8080], vec![22])).unwrap());
    let workload: SocketAddr = format!("{}:8080", support::netns::CLIENT_IP)
        .parse()
        .unwrap();
    let mut client = connect(lab.server.run(tcp_socket), workload);
    let mut captured = accept(&inbound);
    let original = SockRef::from(&captured).original_dst_v4().unwrap();
    assert_eq!(original.as_socket(), Some(workload));
    carries(&mut client, &mut captured, b"inbound");
}

#[test]
fn connections_established_before_install_keep_working() {
    let lab = Lab::new("est");
    let outbound = lab.client.run(|| listen("0.0.0.0:15001"));
    let app = lab.server.run(|| listen("0.0.0.0:8080"));
    let app_addr: SocketAddr = format!("{SERVER_IP}:8080").parse().unwrap();
    let mut client = connect(lab.client.run(tcp_socket), app_addr);
    let mut server = accept(&app);
    carries(&mut client, &mut server, b"before");

    // Install, then replace: the old connection's packets look new to conntrack, and only the
    // SYN rule keeps them from being redirected (host-lab pitfall 1).
    for round in 0..2 {
        let cfg = config(vec![], vec![22 + round]);
        lab.client
            .run(|| nft::install(&Nft::default(), &cfg).unwrap());
        carries(
            &mut client,
            &mut server,
            format!("after install {round}").as_bytes(),
        );
        carries(
            &mut server,
            &mut client,
            format!("reply {round}").as_bytes(),
        );
    }

    // A new connection to the same place is redirected.
    let _new = connect(lab.client.run(tcp_socket), app_addr);
    let captured = accept(&outbound);
    let original = SockRef::from(&captured).original_dst_v4().unwrap();
    assert_eq!(original.as_socket(), Some(app_addr));
}

/// The control for the test above: without the SYN rule, the same setup breaks the old
/// connection, so the test does reproduce the pitfall.
#[test]
fn without_the_syn_rule_established_connections_break() {
    let lab = Lab::new("ctl");
    let _outbound = lab.client.run(|| listen("0.0.0.0:15001"));
    let app = lab.server.run(|| listen("0.0.0.0:8080"));
    let app_addr: SocketAddr = format!("{SERVER_IP}:8080").parse().unwrap();
    let mut client = connect(lab.client.run(tcp_socket), app_addr);
    let mut server = accept(&app);
    carries(&mut client, &mut server, b"before");

    let mut batch = serde_json::to_value(nft::replace_batch(&config(vec![], vec![22]))).unwrap();
    let syn_rule = serde_json::json!({"match": {"op": "!=", "left": {"&": [
        {"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "ack"]]}, "right": "syn"}});
    let objects = batch["nftables"].as_array_mut().unwrap();
    let before = objects.len();
    objects.retain(|o| o["add"]["rule"]["expr"][0] != syn_rule);
    assert_eq!(objects.len(), before - 1);
    let batch: nftables::schema::Nftables = serde_json::from_value(batch).unwrap();
    lab.client.run(|| Nft::default().apply(&batch).unwrap());

    client.write_all(b"after").unwrap();
    let mut buf = [0; 16];
    let read = client.read(&mut buf);
    assert!(
        matches!(read, Err(_) | Ok(0)),
        "the old connection survived without the SYN rule: {read:?}"
    );
}
