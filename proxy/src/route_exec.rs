//! Carrying out one routed HTTP request (outbound): the route's fault (delay, abort), its
//! redirect, rewrites and request header edits, then attempts against the chosen cluster
//! under its circuit breaker — retried by the route's retry policy within the cluster's
//! retry budget, each attempt's outcome reported to outlier detection — and the response
//! header edits. Owns no state: the limits and counters live with the cluster
//! (`config::cluster`); the exchange itself is `http_proxy`'s.
//!
//! The route's CORS filter comes first (`route_l7`: a preflight is answered here), then the
//! virtual host's token bucket (429 `RL` when empty). After the request edits, a sampled
//! share is mirrored (fire and forget); a cluster's fallback replaces its `UO`/`UH` answer.
//!
//! Locally generated answers carry Envoy's response flag in the log (`response_flags`) and
//! the `hostmesh_proxy_response_flags_total` metric: `UO` (circuit breaker overflow, also
//! `x-envoy-overloaded: true`), `URX` (retries exhausted), `FI` (fault abort), `DI` (fault
//! delay), `UH` (no healthy endpoint), `UT` (timeout), `UF` (connect failure).

use std::net::SocketAddr;
use std::time::Duration;

use ::http::header::{self, HeaderValue};
use ::http::{Request, Response, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use rand::Rng;

use std::sync::Arc;

use crate::Proxy;
use crate::config::policy::AttemptOutcome;
use crate::config::{Cluster, Route};
use crate::http_proxy::{self as http, Failure, Upstream, error_response};
use crate::metrics::Direction;
use crate::pool::{Body, PoolKey};
use crate::route_l7::{self as l7, CorsStep};
use crate::tls::Codec;

/// Request bodies up to this size are kept for retries; larger ones are sent once.
const RETRY_BUFFER: u64 = 64 * 1024;
/// Envoy's default retry back-off: 25 ms base, 250 ms cap, fully jittered.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// Serves one request that matched `route` on a service reached at `dst`.
pub(crate) async fn serve(
    proxy: &Arc<Proxy>,
    dst: SocketAddr,
    h2_service: bool,
    route: &Route,
    req: Request<Incoming>,
    authority: String,
) -> Response<Body> {
    // The CORS filter comes first: a preflight it answers goes no further. Like Envoy's, it
    // is bypassed on redirect routes.
    let cors = route
        .policy()
        .cors()
        .filter(|_| route.policy().redirect().is_none());
    let (mut response, cors_origin) = match cors.map(|c| (c, l7::cors_request(c, &req))) {
        Some((_, CorsStep::Answer(r))) => (r, None),
        Some((c, CorsStep::Continue(origin))) => (
            routed(proxy, dst, h2_service, route, req, authority).await,
            origin.map(|o| (c, o)),
        ),
        None => (
            routed(proxy, dst, h2_service, route, req, authority).await,
            None,
        ),
    };
    if let Some((cors, origin)) = cors_origin {
        l7::cors_response(cors, origin, response.headers_mut());
    }
    route
        .policy()
        .response_headers()
        .apply(response.headers_mut());
    proxy
        .metrics
        .request(Direction::Outbound, response.status().as_u16());
    response
}

async fn routed(
    proxy: &Arc<Proxy>,
    dst: SocketAddr,
    h2_service: bool,
    route: &Route,
    req: Request<Incoming>,
    authority: String,
) -> Response<Body> {
    let policy = route.policy();
    if let Some(bucket) = route.rate_limit()
        && !bucket.take()
    {
        let mut r = local(
            proxy,
            route,
            StatusCode::TOO_MANY_REQUESTS,
            "local_rate_limited",
            "RL",
        );
        bucket.response_headers().apply(r.headers_mut());
        return r;
    }
    if let Some(fault) = policy.fault() {
        if let Some((delay, share)) = fault.delay()
            && sampled(share)
        {
            flag(proxy, "DI");
            tokio::time::sleep(delay).await;
        }
        if let Some((status, share)) = fault.abort()
            && sampled(share)
        {
            return local(proxy, route, status, "fault filter abort", "FI");
        }
    }
    if let Some(redirect) = policy.redirect() {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = redirect.location("http", &authority, pq, route.matched_prefix());
        let mut response = Response::new(http::full(Bytes::new()));
        *response.status_mut() = redirect.code();
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        return response;
    }

    let (mut parts, body) = req.into_parts();
    policy.request_headers().apply(&mut parts.headers);
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(new) = policy.rewrite().path(pq, route.matched_prefix()) {
        match new.parse::<Uri>() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return local(proxy, route, StatusCode::BAD_REQUEST, "bad rewrite", "-"),
        }
    }
    let authority = match policy.rewrite().host().and_then(|h| h.to_str().ok()) {
        Some(h) => h.to_owned(),
        None => authority,
    };

    let body = mirror(proxy, route, h2_service, &parts, body, &authority).await;
    let body = match body {
        Ok(b) => b,
        Err(()) => {
            return local(
                proxy,
                route,
                StatusCode::BAD_REQUEST,
                "malformed request body",
                "-",
            );
        }
    };

    let cluster = route.clusters().pick();
    let codec = if h2_service || cluster.http2() {
        Codec::Http2
    } else {
        Codec::Http1
    };
    let retry = policy.retry().filter(|r| r.retries() > 0);
    let small = body.is_end_stream() || body.size_hint().upper().is_some_and(|n| n <= RETRY_BUFFER);
    let result = if let (Some(retry), true) = (retry, small) {
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return local(
                    proxy,
                    route,
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                    "-",
                );
            }
        };
        let attempts = async {
            let mut tried: Vec<SocketAddr> = Vec::new();
            let mut n = 0u32;
            loop {
                let req = Request::from_parts(parts.clone(), Full::new(bytes.clone()));
                let timeout = retry.per_try_timeout();
                let result = attempt(
                    proxy,
                    cluster,
                    codec,
                    timeout,
                    req,
                    &authority,
                    &mut tried,
                    retry.host_selection_attempts(),
                )
                .await;
                let outcome = match &result {
                    Ok(r) => AttemptOutcome::Response(r.status(), grpc_status(r)),
                    Err(Attempt::Failed(Failure::Timeout)) => AttemptOutcome::Timeout,
                    Err(Attempt::Failed(Failure::Connect)) => AttemptOutcome::ConnectFailure,
                    Err(Attempt::Failed(Failure::Reset)) => AttemptOutcome::Reset,
                    Err(_) => return result,
                };
                if n >= retry.retries() || !retry.should_retry(outcome) {
                    if n > 0 && retry.should_retry(outcome) {
                        flag_log(proxy, route, "URX");
                    }
                    return result;
                }
                let Some(_budget) = cluster.admit_retry() else {
                    tracing::debug!(cluster = cluster.name(), "retry budget exhausted");
                    return result;
                };
                n += 1;
                tracing::debug!(%dst, cluster = cluster.name(), attempt = n + 1, ?outcome, "retrying");
                tokio::time::sleep(backoff(n)).await;
            }
        };
        match route.timeout() {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .unwrap_or(Err(Attempt::Failed(Failure::Timeout))),
            None => attempts.await,
        }
    } else {
        let mut tried = Vec::new();
        attempt(
            proxy,
            cluster,
            codec,
            route.timeout(),
            Request::from_parts(parts, body),
            &authority,
            &mut tried,
            1,
        )
        .await
    };
    finish(proxy, route, cluster, result)
}

/// Sends a copy of the request to each sampled mirror, without waiting for any: the copy
/// is made only of a body small enough to keep (up to 64 KiB; larger ones are not
/// mirrored). Returns the body to send on, or `Err` when the client's body broke.
async fn mirror(
    proxy: &Arc<Proxy>,
    route: &Route,
    h2_service: bool,
    parts: &::http::request::Parts,
    body: Incoming,
    authority: &str,
) -> Result<Body, ()> {
    let mirrors = l7::sampled_mirrors(route.policy().mirrors(), sampled);
    let small = body.is_end_stream() || body.size_hint().upper().is_some_and(|n| n <= RETRY_BUFFER);
    if mirrors.is_empty() || !small {
        if !mirrors.is_empty() {
            tracing::debug!(route = route.name(), "request body too large to mirror");
        }
        return Ok(body.map_err(Into::into).boxed_unsync());
    }
    let bytes = body.collect().await.map_err(|_| ())?.to_bytes();
    let shadow = l7::shadow_authority(authority);
    for m in mirrors {
        let (proxy, cluster) = (proxy.clone(), m.cluster().clone());
        let req = l7::mirror_request(parts, &bytes);
        let (shadow, timeout) = (shadow.clone(), route.timeout());
        let codec = if h2_service || cluster.http2() {
            Codec::Http2
        } else {
            Codec::Http1
        };
        tokio::spawn(async move {
            let mut tried = Vec::new();
            let result = attempt(
                &proxy, &cluster, codec, timeout, req, &shadow, &mut tried, 1,
            )
            .await;
            match result {
                Ok(r) => l7::discard(r).await,
                Err(error) => tracing::debug!(cluster = cluster.name(), ?error, "mirror failed"),
            }
        });
    }
    Ok(http::full(bytes))
}

/// Why an attempt produced no upstream response.
#[derive(Debug)]
enum Attempt {
    Failed(Failure),
    /// The circuit breaker refused it.
    Overflow,
    /// No endpoint could be chosen (none, or all ejected).
    NoHealthy,
}

/// The response to give: the upstream's, or a local one with its flag.
fn finish(
    proxy: &Proxy,
    route: &Route,
    cluster: &Cluster,
    result: Result<Response<Body>, Attempt>,
) -> Response<Body> {
    {
        let degraded = match &result {
            Err(Attempt::Overflow) => Some("UO"),
            Err(Attempt::NoHealthy) => Some("UH"),
            _ => None,
        };
        if let (Some(flag), Some(fallback)) = (degraded, cluster.fallback())
            && fallback.answers(flag)
        {
            flag_log(proxy, route, flag);
            return l7::fallback_response(fallback, StatusCode::SERVICE_UNAVAILABLE);
        }
        match result {
            Ok(r) => r,
            Err(Attempt::Overflow) => {
                let mut r = local(
                    proxy,
                    route,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                    "UO",
                );
                r.headers_mut()
                    .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
                r
            }
            Err(Attempt::NoHealthy) => local(
                proxy,
                route,
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy upstream",
                "UH",
            ),
            Err(Attempt::Failed(f)) => {
                let flag = match f {
                    Failure::Timeout => "UT",
                    Failure::Connect => "UF",
                    Failure::Reset => "UC",
                    Failure::BadRequest => "-",
                };
                flag_log(proxy, route, flag);
                f.response()
            }
        }
    }
}

/// One attempt: an endpoint of `cluster` (not one in `tried`, within `picks` tries), through
/// the circuit breaker, with `timeout` until response headers.
#[allow(clippy::too_many_arguments)]
async fn attempt<B>(
    proxy: &Proxy,
    cluster: &Cluster,
    codec: Codec,
    timeout: Option<Duration>,
    req: Request<B>,
    authority: &str,
    tried: &mut Vec<SocketAddr>,
    picks: u32,
) -> Result<Response<Body>, Attempt>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::pool::BoxError>,
{
    let mut picked = None;
    for _ in 0..picks.max(1) {
        let Some(p) = cluster.pick() else { break };
        let fresh = !tried.contains(&p.endpoint().address());
        picked = Some(p);
        if fresh {
            break;
        }
    }
    let Some(picked) = picked else {
        return Err(Attempt::NoHealthy);
    };
    let Some(_admitted) = cluster.admit_request().await else {
        return Err(Attempt::Overflow);
    };
    let addr = picked.endpoint().address();
    tried.push(addr);
    let up = Upstream {
        pool: &proxy.pool,
        key: PoolKey {
            addr,
            tls: picked.endpoint().tls().clone(),
            codec,
        },
        connect_timeout: cluster.connect_timeout(),
        timeout,
        metrics: (&proxy.metrics, Direction::Outbound),
    };
    tracing::debug!(cluster = cluster.name(), endpoint = %addr, "attempt");
    let result = http::exchange(&up, req, authority).await;
    let outcome = match &result {
        Ok(r) => AttemptOutcome::Response(r.status(), None),
        Err(Failure::Timeout) => AttemptOutcome::Timeout,
        Err(Failure::Connect) => AttemptOutcome::ConnectFailure,
        Err(_) => AttemptOutcome::Reset,
    };
    cluster.report(&picked, outcome);
    result.map_err(Attempt::Failed)
}

/// The gRPC status of a trailers-only answer (carried in its headers).
fn grpc_status(r: &Response<Body>) -> Option<u32> {
    r.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Fully jittered exponential back-off before retry `n` (1-based).
fn backoff(n: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << n.min(10))
        .min(BACKOFF_MAX);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(250).max(1);
    Duration::from_millis(rand::rng().random_range(0..ms))
}

/// True for `share` millionths of calls.
fn sampled(share: u32) -> bool {
    share >= 1_000_000 || (share > 0 && rand::rng().random_range(0..1_000_000) < share)
}

fn flag(proxy: &Proxy, flag: &'static str) {
    proxy.metrics.response_flag(flag);
}

fn flag_log(proxy: &Proxy, route: &Route, response_flags: &'static str) {
    if response_flags != "-" {
        flag(proxy, response_flags);
        tracing::info!(route = route.name(), response_flags, "local reply");
    }
}

/// A locally generated answer with its response flag.
fn local(
    proxy: &Proxy,
    route: &Route,
    status: StatusCode,
    message: &str,
    response_flags: &'static str,
) -> Response<Body> {
    flag_log(proxy, route, response_flags);
    error_response(status, message)
}
