//! TCP measurements against the echo and sink servers: round trip (closed loop, one
//! connection), single-stream bulk throughput, new connections per second, idle connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::latency::{Latencies, LatencySummary};

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// `count` round trips of `size` bytes on one connection, one at a time.
pub async fn echo_rtt(addr: SocketAddr, size: usize, count: u64) -> io::Result<LatencySummary> {
    let mut tcp = connect(addr).await?;
    let out = vec![b'e'; size.max(1)];
    let mut back = vec![0u8; out.len()];
    // Warm up: the first round trip includes the proxies' handshakes.
    tcp.write_all(&out).await?;
    tcp.read_exact(&mut back).await?;
    let mut latencies = Latencies::new();
    for _ in 0..count {
        let sent = Instant::now();
        tcp.write_all(&out).await?;
        tcp.read_exact(&mut back).await?;
        latencies.record(sent.elapsed());
    }
    Ok(latencies.summary())
}

/// Bytes per second of one stream into the sink, counted by the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BulkReport {
    pub bytes: u64,
    pub seconds: f64,
    pub gbit_per_s: f64,
}

/// Sends for `duration` into the sink at `addr`; the time runs until the sink's count arrives.
pub async fn bulk(addr: SocketAddr, duration: Duration) -> io::Result<BulkReport> {
    let mut tcp = connect(addr).await?;
    let chunk = vec![b'b'; 256 * 1024];
    let start = Instant::now();
    while start.elapsed() < duration {
        tcp.write_all(&chunk).await?;
    }
    tcp.shutdown().await?;
    let mut count = [0u8; 8];
    tcp.read_exact(&mut count).await?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = u64::from_be_bytes(count);
    Ok(BulkReport {
        bytes,
        seconds,
        gbit_per_s: bytes as f64 * 8.0 / seconds / 1e9,
    })
}

/// New connections per second, each carrying a 1-byte round trip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectReport {
    pub connections: u64,
    pub errors: u64,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    pub per_s: f64,
    /// Connect + 1-byte round trip.
    pub latency: LatencySummary,
}

async fn one_connection(addr: SocketAddr) -> io::Result<()> {
    let mut tcp = connect(addr).await?;
    tcp.write_all(b"c").await?;
    let mut back = [0u8; 1];
    tcp.read_exact(&mut back).await?;
    Ok(())
}

/// `workers` loops of connect → 1 byte there and back → close, for `duration`.
pub async fn connect_rate(addr: SocketAddr, workers: usize, duration: Duration) -> ConnectReport {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Latencies::new());
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match one_connection(addr).await {
                    Ok(()) => {
                        latencies.record(started.elapsed());
                        ok += 1;
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok, failed, latencies, first_error)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut report = ConnectReport::default();
    let mut latencies = Latencies::new();
    for task in tasks {
        if let Ok((ok, failed, l, first)) = task.await {
            report.connections += ok;
            report.errors += failed;
            report.first_error = report.first_error.or(first);
            latencies.merge(&l);
        }
    }
    report.per_s = report.connections as f64 / start.elapsed().as_secs_f64();
    report.latency = latencies.summary();
    report
}

/// Opens `n` connections to the echo server, each with one round trip so every hop on the
/// way holds its connection, and returns them open.
pub async fn hold_idle(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = connect(addr).await?;
        tcp.write_all(b"i").await?;
        let mut back = [0u8; 1];
        tcp.read_exact(&mut back).await?;
        held.push(tcp);
    }
    Ok(held)
}
