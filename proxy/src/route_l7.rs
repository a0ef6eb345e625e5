//! The data-path side of three route features (outbound): the CORS filter (a preflight
//! answered here, never reaching the app; allowed origins' responses decorated), request
//! mirroring (a fire-and-forget copy to the mirror cluster, its `Host` suffixed `-shadow`,
//! its answer drained and dropped) and the service-degradation fallback (a cluster's static
//! answer instead of its `UO`/`UH` error page). Owns no state; `route_exec` calls it.

use ::http::header::{self, HeaderMap, HeaderValue};
use ::http::request::Parts;
use ::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::config::l7::{Cors, Fallback, Mirror};
use crate::http_proxy::full;
use crate::pool::Body;

const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
const ALLOW_METHODS: &str = "access-control-allow-methods";
const ALLOW_HEADERS: &str = "access-control-allow-headers";
const EXPOSE_HEADERS: &str = "access-control-expose-headers";
const MAX_AGE: &str = "access-control-max-age";
const REQUEST_METHOD: &str = "access-control-request-method";

/// What the CORS filter makes of a request.
#[derive(Debug)]
pub(crate) enum CorsStep {
    /// A preflight answered here.
    Answer(Response<Body>),
    /// Go on; decorate the response for this (allowed) origin when there is one.
    Continue(Option<HeaderValue>),
}

/// Envoy's CORS filter on the request: no `Origin` → not a CORS request; an `OPTIONS` with
/// `Access-Control-Request-Method` is a preflight, answered 200 with the policy's
/// `access-control-allow-*` headers for an allowed origin, and for another origin either
/// forwarded or answered 200 without them (`forward_not_matching_preflights`).
pub(crate) fn cors_request<B>(cors: &Cors, req: &Request<B>) -> CorsStep {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| !o.is_empty())
        .cloned()
    else {
        return CorsStep::Continue(None);
    };
    let allowed = origin.to_str().is_ok_and(|o| cors.allows(o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .get(REQUEST_METHOD)
            .is_some_and(|m| !m.is_empty());
    if !preflight {
        return CorsStep::Continue(allowed.then_some(origin));
    }
    if !allowed {
        if cors.forwards_unmatched_preflights() {
            return CorsStep::Continue(None);
        }
        return CorsStep::Answer(empty(StatusCode::OK));
    }
    let mut r = empty(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        h.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    for (name, value) in [
        (ALLOW_METHODS, &cors.allow_methods),
        (ALLOW_HEADERS, &cors.allow_headers),
        (MAX_AGE, &cors.max_age),
    ] {
        if let Some(v) = value {
            h.insert(name, v.clone());
        }
    }
    CorsStep::Answer(r)
}

/// Envoy's CORS filter on the response to an allowed origin's request.
pub(crate) fn cors_response(cors: &Cors, origin: HeaderValue, headers: &mut HeaderMap) {
    headers.insert(ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        headers.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Some(v) = &cors.expose_headers {
        headers.insert(EXPOSE_HEADERS, v.clone());
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// The authority a mirror is sent with: `-shadow` after the host, before any port, as
/// Envoy does.
pub(crate) fn shadow_authority(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}-shadow:{port}")
        }
        _ => format!("{authority}-shadow"),
    }
}

/// The copy of a request for a mirror.
pub(crate) fn mirror_request(parts: &Parts, body: &Bytes) -> Request<Full<Bytes>> {
    Request::from_parts(parts.clone(), Full::new(body.clone()))
}

/// Reads and drops a mirror's answer (so its connection can be reused).
pub(crate) async fn discard(response: Response<Body>) {
    let _ = response.into_body().collect().await;
}

/// The mirrors sampled for one request.
pub(crate) fn sampled_mirrors(mirrors: &[Mirror], sampled: impl Fn(u32) -> bool) -> Vec<&Mirror> {
    mirrors.iter().filter(|m| sampled(m.share())).collect()
}

/// The fallback's answer replacing an error of `status`.
pub(crate) fn fallback_response(fallback: &Fallback, status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(fallback.body().clone()));
    *r.status_mut() = fallback.status().unwrap_or(status);
    fallback.headers().apply(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::route::HeaderValueMatch;

    fn policy(forward: bool) -> Cors {
        Cors {
            origins: vec![
                HeaderValueMatch::Exact("https://a.example".into()),
                HeaderValueMatch::Prefix("https://dev.".into()),
            ],
            allow_methods: Some(HeaderValue::from_static("GET,POST")),
            allow_headers: Some(HeaderValue::from_static("x-token")),
            expose_headers: Some(HeaderValue::from_static("x-trace")),
            max_age: Some(HeaderValue::from_static("600")),
            allow_credentials: true,
            forward_not_matching_preflights: forward,
        }
    }

    fn preflight(origin: &str) -> Request<()> {
        Request::builder()
            .method("OPTIONS")
            .header("origin", origin)
            .header(REQUEST_METHOD, "POST")
            .body(())
            .unwrap()
    }

    #[test]
    fn preflights_are_answered_with_headers_only_for_allowed_origins() {
        let CorsStep::Answer(r) = cors_request(&policy(true), &preflight("https://dev.x")) else {
            panic!("not answered");
        };
        let h = r.headers();
        assert_eq!(r.status(), 200);
        assert_eq!(h[ALLOW_ORIGIN], "https://dev.x");
        assert_eq!(h[ALLOW_METHODS], "GET,POST");
        assert_eq!(h[ALLOW_HEADERS], "x-token");
        assert_eq!(h[MAX_AGE], "600");
        assert_eq!(h[ALLOW_CREDENTIALS], "true");
        assert!(!h.contains_key(EXPOSE_HEADERS));
        assert!(matches!(
            cors_request(&policy(true), &preflight("https://evil")),
            CorsStep::Continue(None)
        ));
        let CorsStep::Answer(r) = cors_request(&policy(false), &preflight("https://evil")) else {
            panic!("not answered");
        };
        assert!(r.headers().is_empty());
    }

    #[test]
    fn simple_requests_are_decorated_for_allowed_origins_only() {
        let req = |origin: &str| {
            Request::builder()
                .method("OPTIONS")
                .header("origin", origin)
                .body(())
                .unwrap()
        };
        // OPTIONS without Access-Control-Request-Method is not a preflight.
        let CorsStep::Continue(Some(o)) = cors_request(&policy(true), &req("https://a.example"))
        else {
            panic!("not decorated");
        };
        let mut h = HeaderMap::new();
        cors_response(&policy(true), o, &mut h);
        assert_eq!(h[ALLOW_ORIGIN], "https://a.example");
        assert_eq!(h[EXPOSE_HEADERS], "x-trace");
        assert!(matches!(
            cors_request(&policy(true), &req("https://a.example.evil")),
            CorsStep::Continue(None)
        ));
        let no_origin = Request::builder().body(()).unwrap();
        assert!(matches!(
            cors_request(&policy(true), &no_origin),
            CorsStep::Continue(None)
        ));
        let star = Cors {
            origins: vec![HeaderValueMatch::Exact("*".into())],
            ..policy(true)
        };
        assert!(star.allows("https://anything"));
    }

    #[test]
    fn shadow_authorities_keep_the_port() {
        assert_eq!(shadow_authority("shop:8080"), "shop-shadow:8080");
        assert_eq!(shadow_authority("shop.demo"), "shop.demo-shadow");
    }
}
