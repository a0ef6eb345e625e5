//! `hostmesh-emulators`: **emulators** of the servers hostmesh's registries read, for tests —
//! not the real servers. Each follows its documented HTTP API exactly (the version is in its
//! module doc), so the production clients in `hostmesh-registry` are tested as they talk to
//! the real thing.
//!
//! - [`consul`]: Consul's HTTP API v1 catalog and health endpoints with blocking queries.
//! - [`kube`]: the Kubernetes API server (v1.33) for Services, EndpointSlices and Istio's
//!   `ServiceEntry`/`WorkloadEntry`, with list/watch semantics.
//! - [`Listen`]: where an emulator's listening socket is made. By default on 127.0.0.1 of
//!   the calling thread's network namespace; a test that runs the control server in another
//!   namespace passes a [`Listen`] that binds there (see [`Listen::with`]).
//!
//! Used only by tests (`registry/tests`, `tests/tests`); never a dependency of a program.
//! Panics are test failures here: the emulators `unwrap` their own locks and constants, and
//! a socket that cannot be bound ends the test that asked for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod consul;
pub mod kube;
mod listen;
mod server;

pub use listen::Listen;
