//! `hostmesh-tests`: end-to-end tests across processes and network namespaces, and the
//! benchmark harness that compares the mesh path with the direct path.
//!
//! No other crate may depend on this one.
