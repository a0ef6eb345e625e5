//! `hostmesh-proxy`: the data plane every agent embeds.
//!
//! Will own: the xDS client, the validated runtime config built from Envoy resources, the
//! outbound (15001) and inbound (15006) listeners, HTTP/1.1, HTTP/2, gRPC, WebSocket and TCP
//! proxying, mutual TLS between hosts, load balancing, resilience (retries, timeouts, circuit
//! breaking, fault injection) and Istio's standard metrics.
//!
//! Must not depend on `hostmesh-registry`: it knows the mesh only through xDS.
