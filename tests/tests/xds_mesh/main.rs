//! The control server and proxies together, in-process on 127.0.0.1 with real mutual TLS:
//! a CA, `AdsServer` + `MeshTranslator` fed Istio YAML through a `watch`, two `bill-service`
//! hosts (v1, v2) and a `front` host, each proxy configured only by its own ADS client.
#![allow(clippy::unwrap_used, missing_debug_implementations)]

mod control;
mod control_plane;
mod grpc;
mod l4;
mod l4_world;
mod mesh;
mod scenarios;
mod tap;
mod traffic;
mod traffic_l7;
mod traffic_lb;
mod traffic_world;
mod world;
