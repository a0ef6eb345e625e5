//! The benchmark's tools: an open-loop load generator with coordinated-omission-corrected
//! latency (`openloop`), the clients it drives (`clients`), TCP measurements (`tcp`), the
//! servers the load goes to (`servers`) and the job descriptions the harness sends to a
//! client process in another network namespace (`job`).
//!
//! Nothing here knows about proxies, namespaces or the mesh: the harness (`src/bin/bench`)
//! points these tools at the direct, mesh and HAProxy addresses.

pub mod clients;
pub mod job;
pub mod latency;
pub mod openloop;
pub mod servers;
pub mod tcp;

/// The generated gRPC echo service (`proto/echo.proto`).
#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod echo {
    tonic::include_proto!("hostmesh.tests.echo");
}

/// Size of the HTTP request and response bodies (the 1 KB).
pub const BODY_BYTES: usize = 1024;
