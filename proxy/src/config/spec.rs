//! The unvalidated description of a runtime config: plain data with names instead of
//! references. The xDS client fills these from Envoy resources; [`super::ProxyConfig::build`]
//! checks them all at once and turns them into the validated types the data path uses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use super::resilience::{OutlierSettings, Thresholds};
use super::{LbPolicy, MtlsMode, Protocol, UnknownDestination};

/// Everything the proxy needs to route traffic, as delivered by the control plane.
#[derive(Debug, Clone, Default)]
pub struct ConfigSpec {
    /// Opaque version string (the xDS version info), for logs and config dumps.
    pub version: String,
    pub clusters: Vec<ClusterSpec>,
    pub outbound: OutboundSpec,
    pub inbound: InboundSpec,
}

/// A set of interchangeable endpoints (an Envoy cluster).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Istio-style name, e.g. `outbound|9999|v1|bill-service.demo.svc.cluster.local`.
    pub name: String,
    /// May be empty (Envoy's "no healthy upstream"): HTTP requests routed to the cluster are
    /// answered 503, TCP connections are closed.
    pub endpoints: Vec<EndpointSpec>,
    pub lb: LbPolicy,
    /// How to secure connections to endpoints that do not set their own.
    pub tls: UpstreamTlsSpec,
    /// How long a new upstream connection (TCP + TLS) may take; 10 s when unset.
    pub connect_timeout: Option<Duration>,
    /// The endpoints speak HTTP/2 (prior knowledge or ALPN `h2`) whatever the protocol of the
    /// service that routes to them (Envoy's `HttpProtocolOptions` with HTTP/2).
    pub http2: bool,
    /// Circuit-breaker thresholds (Envoy's `circuit_breakers`, default priority).
    pub thresholds: Thresholds,
    /// Outlier detection, when enabled.
    pub outlier: Option<OutlierSettings>,
    /// Requests one upstream connection carries before it is closed (Envoy's
    /// `max_requests_per_connection`); unlimited when unset.
    pub max_requests_per_connection: Option<u32>,
    /// Our service-degradation answer for requests that end `UO` or `UH` at this cluster.
    pub fallback: Option<FallbackSpec>,
}

/// A static answer given instead of the error page (Envoy's local-reply `ResponseMapper`,
/// carried in the cluster's metadata).
#[derive(Debug, Clone, Default)]
pub struct FallbackSpec {
    /// Envoy response flags it answers (`UO`, `UH`).
    pub flags: Vec<String>,
    /// Unset: the status of the error it replaces.
    pub status: Option<u32>,
    pub headers: HeaderEditsSpec,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub address: SocketAddr,
    /// Relative load-balancing weight, at least 1.
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    /// Overrides the cluster's TLS for this endpoint (Envoy's `transport_socket_matches`).
    pub tls: Option<UpstreamTlsSpec>,
    /// The endpoint's priority (0 is the highest; from its locality group).
    pub priority: u32,
}

/// How the proxy talks to a cluster's endpoints.
#[derive(Debug, Clone)]
pub enum UpstreamTlsSpec {
    Plaintext,
    /// Istio mutual TLS; the server must present one of these SPIFFE IDs.
    Mtls {
        expected_identities: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct OutboundSpec {
    pub services: Vec<ServiceSpec>,
    /// What to do with a destination that no service claims.
    pub unknown_destination: UnknownDestination,
}

/// A destination the outbound listener recognises.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Host name, e.g. `bill-service.demo.svc.cluster.local`.
    pub name: String,
    /// The `ip:port`s that reach this service (its VIPs or declared addresses).
    pub addresses: Vec<SocketAddr>,
    /// A cluster whose endpoints' IPs, at the ports of `addresses`, also reach this service
    /// (a client that dials an endpoint directly). An `ip:port` in any service's `addresses`,
    /// or already taken by an earlier service's endpoints, stays where it is.
    pub endpoints_of: Option<String>,
    pub protocol: Protocol,
    pub target: TargetSpec,
}

#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// HTTP routing (the protocol must be HTTP/1.1, HTTP/2 or gRPC).
    Http(RouteTableSpec),
    /// Opaque TCP to one cluster (the protocol must be TCP).
    Tcp { cluster: String },
    /// Opaque TCP split by weight, or chosen by the TLS server name (the protocol must be TCP).
    L4(L4Spec),
}

/// The L4 routes of one destination: TLS routes by server name, then a default.
#[derive(Debug, Clone, Default)]
pub struct L4Spec {
    pub sni: Vec<SniRouteSpec>,
    /// Where connections that no TLS route takes go; none: the unknown-destination rule.
    pub default: Option<Vec<WeightedClusterSpec>>,
}

/// A TLS route: server names (`name` or `*.suffix`) and weighted clusters.
#[derive(Debug, Clone)]
pub struct SniRouteSpec {
    pub server_names: Vec<String>,
    pub clusters: Vec<WeightedClusterSpec>,
}

#[derive(Debug, Clone)]
pub struct RouteTableSpec {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHostSpec>,
}

#[derive(Debug, Clone)]
pub struct VirtualHostSpec {
    pub name: String,
    /// Authorities served: `host`, `host:port`, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    /// Tried in order; the first match wins.
    pub routes: Vec<RouteSpec>,
    /// One token bucket shared by the host's routes (Envoy's local rate limit).
    pub rate_limit: Option<RateLimitSpec>,
}

/// A token bucket: `tokens_per_fill` added every `fill_interval`, at most `max_tokens`;
/// refused requests get 429 with these response headers.
#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
    pub response_headers: HeaderEditsSpec,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub path: PathMatchSpec,
    /// All must match.
    pub headers: Vec<HeaderMatchSpec>,
    /// Traffic is split over these by weight.
    pub clusters: Vec<WeightedClusterSpec>,
    /// Time allowed from the request until the upstream's response headers.
    pub timeout: Option<Duration>,
    /// Everything else the route does: retries, faults, redirect, rewrites, header edits,
    /// query matches.
    pub policy: RoutePolicySpec,
}

/// The policies of one route (Envoy's route fields beyond match and destination).
#[derive(Debug, Clone, Default)]
pub struct RoutePolicySpec {
    /// All must match; matched against the decoded query string.
    pub query: Vec<QueryMatchSpec>,
    pub retry: Option<RetrySpec>,
    pub fault: Option<FaultSpec>,
    /// Answer with a redirect instead of forwarding (the route then has no clusters).
    pub redirect: Option<RedirectSpec>,
    pub rewrite: RewriteSpec,
    pub request_headers: HeaderEditsSpec,
    pub response_headers: HeaderEditsSpec,
    /// What requests hash on for `RING_HASH`/`MAGLEV` clusters (Envoy's `hash_policy`), each
    /// with its `terminal` flag.
    pub hash: Vec<(HashPolicySpec, bool)>,
    /// The CORS filter's per-route policy.
    pub cors: Option<CorsSpec>,
    /// Copies of the request sent elsewhere, answers discarded.
    pub mirrors: Vec<MirrorSpec>,
}

/// One of Envoy's `RouteAction.hash_policy` entries.
#[derive(Debug, Clone)]
pub enum HashPolicySpec {
    Header(String),
    /// With a `ttl`, a request without the cookie gets one generated, set on the response.
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    SourceIp,
    QueryParameter(String),
}

/// Envoy's `CorsPolicy`: list fields already joined with `,` as they go into the headers.
#[derive(Debug, Clone, Default)]
pub struct CorsSpec {
    /// Exact, prefix or regex (whole value); any matching `*` allows every origin.
    pub allow_origins: Vec<HeaderValueSpec>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: bool,
    /// Preflights from an origin not allowed go on to the upstream (Envoy's default), or
    /// are answered 200 without CORS headers.
    pub forward_not_matching_preflights: bool,
}

/// Envoy's `RequestMirrorPolicy`: a share (millionths) of requests copied to `cluster`.
#[derive(Debug, Clone)]
pub struct MirrorSpec {
    pub cluster: String,
    pub share: u32,
}

#[derive(Debug, Clone)]
pub struct QueryMatchSpec {
    pub name: String,
    pub value: HeaderValueSpec,
}

/// Envoy's `RetryPolicy`.
#[derive(Debug, Clone, Default)]
pub struct RetrySpec {
    /// Envoy's conditions (`5xx`, `gateway-error`, `reset`, `connect-failure`, ...).
    pub retry_on: Vec<String>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    /// With `retriable-status-codes`.
    pub retriable_status_codes: Vec<u32>,
    /// Avoid endpoints already tried (`previous_hosts` predicate).
    pub avoid_previous_hosts: bool,
    /// How many picks may be tried to find an endpoint not tried before.
    pub host_selection_attempts: u32,
}

/// The fault filter's per-route config. Fractions are in millionths.
#[derive(Debug, Clone, Default)]
pub struct FaultSpec {
    pub delay: Option<(Duration, u32)>,
    pub abort: Option<(u32, u32)>,
}

/// Envoy's `RedirectAction`: each part replaces the request's when set.
#[derive(Debug, Clone, Default)]
pub struct RedirectSpec {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub code: u32,
    pub strip_query: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RewriteSpec {
    /// Replaces the matched prefix (or exact path).
    pub prefix: Option<String>,
    /// (pattern, substitution with `\N` for capture groups), over the whole path.
    pub regex: Option<(String, String)>,
    /// Replaces the authority.
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderEditsSpec {
    /// (name, value, append): append adds a value, otherwise the header is replaced.
    pub add: Vec<(String, String, bool)>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PathMatchSpec {
    Exact(String),
    Prefix(String),
    /// Must match the whole path (Envoy's `safe_regex` semantics).
    Regex(String),
}

#[derive(Debug, Clone)]
pub struct HeaderMatchSpec {
    pub name: String,
    pub value: HeaderValueSpec,
    /// Match when the header does *not* match.
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum HeaderValueSpec {
    Present,
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Debug, Clone)]
pub struct WeightedClusterSpec {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default)]
pub struct InboundSpec {
    /// Mode of ports that do not set their own.
    pub default_mode: MtlsMode,
    pub ports: Vec<InboundPortSpec>,
}

/// A port this host's workload serves on, reached through the inbound listener.
#[derive(Debug, Clone)]
pub struct InboundPortSpec {
    /// The port peers dial (the original destination port).
    pub port: u16,
    /// Where the application listens on 127.0.0.1.
    pub app_port: u16,
    pub protocol: Protocol,
    pub mode: Option<MtlsMode>,
    /// Requests one connection to the application carries (the inbound cluster's
    /// `max_requests_per_connection`).
    pub max_requests_per_connection: Option<u32>,
}
