//! The benchmark's own tools against local servers on 127.0.0.1: the open-loop generator
//! issues and counts exactly what it should, corrects coordinated omission, and the TCP
//! measurements count what the servers saw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hostmesh_tests::bench::clients::{HttpTarget, Protocol};
use hostmesh_tests::bench::openloop::{self, LoadSpec};
use hostmesh_tests::bench::{BODY_BYTES, servers, tcp};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn target(addr: SocketAddr, protocol: Protocol) -> Arc<HttpTarget> {
    Arc::new(HttpTarget {
        addr,
        authority: "bench.local".into(),
        protocol,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_exactly_the_rate_for_the_duration() {
    let (http, http_addr) = listener().await;
    tokio::spawn(servers::serve_http(http));
    let (grpc, grpc_addr) = listener().await;
    tokio::spawn(servers::serve_grpc(grpc));

    for (addr, protocol) in [
        (http_addr, Protocol::Http1),
        (http_addr, Protocol::Http2),
        (grpc_addr, Protocol::Grpc),
    ] {
        let spec = LoadSpec {
            rate: Some(200),
            connections: 4,
            duration: Duration::from_secs(1),
        };
        let report = openloop::run(target(addr, protocol), spec).await;
        assert_eq!(report.intended, 200, "{protocol:?}: {report:?}");
        assert_eq!(report.completed, 200, "{protocol:?}: {report:?}");
        assert_eq!(report.errors, 0, "{protocol:?}: {report:?}");
        assert_eq!(report.latency.count, 200, "{protocol:?}: {report:?}");
        assert!(report.latency.p50_us > 0.0, "{report:?}");
        assert!(
            report.latency.p50_us <= report.latency.p999_us,
            "{report:?}"
        );
    }

    // Closed loop: as many as go, all counted.
    let spec = LoadSpec {
        rate: None,
        connections: 2,
        duration: Duration::from_millis(500),
    };
    let report = openloop::run(target(http_addr, Protocol::Http1), spec).await;
    assert!(report.completed > 10, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.latency.count, report.completed, "{report:?}");
}

/// gRPC against the bench's own server, open loop on two connections: every call is
/// answered, and on time. A per-call stall (the server's answer waiting for the client's
/// delayed ACK because its sockets lacked `TCP_NODELAY`: ≥ 40 ms a call, so ≤ 50 calls/s on
/// two connections) queues the calls here (p50 over a second, the last answer seconds after
/// the last send), and at the bench's 1,000 rps over 16 connections leaves calls unserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_to_the_bench_server_are_answered_on_time() {
    let (grpc, addr) = listener().await;
    tokio::spawn(servers::serve_grpc(grpc));
    let spec = LoadSpec {
        rate: Some(100),
        connections: 2,
        duration: Duration::from_secs(3),
    };
    let report = openloop::run(target(addr, Protocol::Grpc), spec).await;
    assert_eq!(report.intended, 300, "{report:?}");
    assert_eq!(report.completed, 300, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert!(report.error_kinds.is_empty(), "{report:?}");
    // Latency counts from the intended send time, so a queue shows. A call takes ≈ 4 ms here,
    // ≈ 25 ms on a loaded machine; the bounds leave room for that, not for a growing queue.
    assert!(report.latency.p50_us < 200_000.0, "{report:?}");
    assert!(
        report.elapsed_s < 4.5,
        "the last answer came late: {report:?}"
    );
}

/// A failed call is counted under its kind, with the first message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_counted_by_kind_with_the_first_message() {
    // A port nothing listens on: every connect is refused.
    let (closed, addr) = listener().await;
    drop(closed);
    let spec = LoadSpec {
        rate: Some(50),
        connections: 2,
        duration: Duration::from_millis(200),
    };
    let report = openloop::run(target(addr, Protocol::Http1), spec).await;
    assert_eq!(report.completed, 0, "{report:?}");
    let connect = report.error_kinds.get("connect").expect("connect errors");
    assert_eq!(connect.count, report.errors, "{report:?}");
    assert!(connect.count >= 2, "{report:?}");
    assert!(connect.first.contains(&addr.to_string()), "{report:?}");
    assert_eq!(report.error_kinds.len(), 1, "{report:?}");
}

/// A server that needs 20 ms per request.
async fn serve_slow(listener: TcpListener) {
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(vec![
                    b'y';
                    BODY_BYTES
                ]))))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_behind_a_slow_answer_counts_as_latency() {
    let (slow, addr) = listener().await;
    tokio::spawn(serve_slow(slow));
    // 100 rps into one connection that serves at most 50/s: the queue grows for 0.5 s, so
    // the last requests wait about 0.5 s; a closed-loop measurement would say 20 ms.
    let spec = LoadSpec {
        rate: Some(100),
        connections: 1,
        duration: Duration::from_millis(500),
    };
    let report = openloop::run(target(addr, Protocol::Http1), spec).await;
    assert_eq!(report.completed, 50, "{report:?}");
    assert!(report.latency.p50_us > 100_000.0, "{report:?}");
    assert!(report.latency.p99_us > 300_000.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_measurements_count_what_the_servers_saw() {
    let (echo, echo_addr) = listener().await;
    tokio::spawn(servers::serve_echo(echo));
    let (sink, sink_addr) = listener().await;
    tokio::spawn(servers::serve_sink(sink));

    let rtt = tcp::echo_rtt(echo_addr, 1024, 100).await.unwrap();
    assert_eq!(rtt.count, 100);
    assert!(rtt.p50_us > 0.0);

    let bulk = tcp::bulk(sink_addr, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(bulk.bytes >= 256 * 1024, "{bulk:?}");
    assert_eq!(bulk.bytes % (256 * 1024), 0, "whole chunks: {bulk:?}");
    assert!(bulk.gbit_per_s > 0.0);

    let connects = tcp::connect_rate(echo_addr, 2, Duration::from_millis(300)).await;
    assert!(connects.connections > 10, "{connects:?}");
    assert_eq!(connects.errors, 0, "{connects:?}");
    assert_eq!(connects.latency.count, connects.connections);

    let held = tcp::hold_idle(echo_addr, 50).await.unwrap();
    assert_eq!(held.len(), 50);
}
