//! `hostmesh-tests`: end-to-end tests across processes and network namespaces, and the
//! benchmark harness that compares the mesh path with the direct path.
//!
//! No other crate may depend on this one. The library holds the benchmark's own tools (load
//! generator, servers) so its tests can drive them; the harness is the `bench` binary.

pub mod bench;
