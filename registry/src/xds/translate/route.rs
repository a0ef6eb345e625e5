//! Route configurations (RDS), one per HTTP port number and named by it (`"9999"`), with a
//! virtual host per service on that port (`HOST:PORT`).
//!
//! Domains: the host; for `NAME.NS.svc.<suffix>` hosts also `NAME`, `NAME.NS` and
//! `NAME.NS.svc`; the service's IP addresses (declared or allocated); each with and without
//! `:PORT`. A domain belongs to one virtual host only (the first host in sorted order).
//!
//! Routes: without a `VirtualService`, one route `/` → `outbound|PORT||HOST`. With one (the
//! first by key naming the host, for sidecars), its `http` routes in order, one Envoy route
//! per `match` (matches for another `port` are skipped): `uri` exact/prefix/regex (and
//! `ignoreUriCase`), `headers`, `withoutHeaders`, `method`, `authority` and `scheme`; the
//! destinations (`weighted_clusters` when several; a subset selects its subset cluster;
//! zero weights are dropped); `timeout` (default: none, as Istio); `queryParams`; and the
//! policies of [`super::route_policy`]: `retries`, `fault`, `redirect` routes, `rewrite` and
//! `headers` (request and response; per-destination `headers` are not translated).
//!
//! `mirror`/`mirrorPercentage`/`mirrors` and `corsPolicy` come from [`super::route_l7`].
//!
//! Not translated yet, left out of the output: `sourceLabels`, `sourceNamespace`;
//! `directResponse` and `delegate` routes (skipped whole).
//! `tls` and `tcp` routes are not translated either.

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher::HeaderMatchSpecifier, route::Action,
    route_action::ClusterSpecifier, route_match::PathSpecifier, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::Duration;

use super::names;
use super::proto::{bool_value, duration, ordered_map, parse_duration, u32_value};
use super::route_l7;
use super::route_policy;
use super::view::View;
use crate::model::config::{ServicePort, VirtualService};
use crate::model::istio::networking::{Destination, HttpMatchRequest, HttpRoute, StringMatch};
use crate::model::{Hostname, PortNumber, Service};

pub fn route_configs(view: &View<'_>) -> Vec<RouteConfiguration> {
    let mut by_port: BTreeMap<PortNumber, Vec<(&Service, &ServicePort)>> = BTreeMap::new();
    for service in &view.services {
        for port in service.ports.iter().filter(|p| p.protocol.is_http()) {
            by_port
                .entry(port.number)
                .or_default()
                .push((service, port));
        }
    }
    by_port
        .into_iter()
        .map(|(port, services)| {
            let mut used = HashSet::new();
            RouteConfiguration {
                name: names::route_config(port),
                virtual_hosts: services
                    .into_iter()
                    .map(|(s, p)| virtual_host(view, s, p, &mut used))
                    .collect(),
                validate_clusters: bool_value(false),
                ..Default::default()
            }
        })
        .collect()
}

fn virtual_host(
    view: &View<'_>,
    service: &Service,
    port: &ServicePort,
    used: &mut HashSet<String>,
) -> VirtualHost {
    let host = service.hostname.as_str();
    let typed_per_filter_config = view
        .virtual_service(host)
        .and_then(route_policy::local_rate_limit)
        .unwrap_or_default();
    let routes = match view.virtual_service(host) {
        Some(vs) => vs_routes(view, vs, port.number),
        None => vec![default_route(names::outbound_cluster(
            port.number,
            None,
            host,
        ))],
    };
    VirtualHost {
        name: format!("{host}:{}", port.number),
        domains: domains(view, service, port.number)
            .into_iter()
            .filter(|d| used.insert(d.clone()))
            .collect(),
        routes,
        typed_per_filter_config,
        ..Default::default()
    }
}

fn domains(view: &View<'_>, service: &Service, port: PortNumber) -> Vec<String> {
    let host = service.hostname.as_str();
    let mut names = vec![host.to_owned()];
    let svc_suffix = format!(".svc.{}", view.config.domain_suffix);
    if let Some(stem) = host.strip_suffix(&svc_suffix)
        && let Some((name, ns)) = stem.split_once('.')
        && !ns.contains('.')
    {
        names.extend([name.to_owned(), stem.to_owned(), format!("{stem}.svc")]);
    }
    names.extend(
        view.addresses(service)
            .into_iter()
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok()),
    );
    names
        .into_iter()
        .flat_map(|n| [format!("{n}:{port}"), n])
        .collect()
}

pub fn default_route(cluster: String) -> Route {
    Route {
        r#match: Some(prefix_match()),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
            timeout: Some(Duration::default()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn prefix_match() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_owned())),
        ..Default::default()
    }
}

fn vs_routes(view: &View<'_>, vs: &VirtualService, port: PortNumber) -> Vec<Route> {
    let mut out = Vec::new();
    for http in &vs.spec.http {
        let action = match (
            route_policy::redirect(http),
            route_action(view, vs, http, port),
        ) {
            (Some(redirect), _) => Action::Redirect(redirect),
            (None, Some(mut action)) => {
                route_policy::rewrite(http, &mut action);
                action.request_mirror_policies = route_l7::mirrors(view, vs, http, port);
                Action::Route(action)
            }
            (None, None) => {
                tracing::debug!(vs = %vs.meta.name, "http route without destinations (directResponse or delegate) is not translated yet");
                continue;
            }
        };
        let (request_headers_to_add, request_headers_to_remove) =
            route_policy::header_edits(http.headers.as_ref().and_then(|h| h.request.as_ref()));
        let (response_headers_to_add, response_headers_to_remove) =
            route_policy::header_edits(http.headers.as_ref().and_then(|h| h.response.as_ref()));
        let typed_per_filter_config = ordered_map(
            route_policy::fault(http)
                .unwrap_or_default()
                .into_iter()
                .chain(route_l7::cors(http))
                .collect(),
        );
        let matches: Vec<RouteMatch> = if http.matches.is_empty() {
            vec![prefix_match()]
        } else {
            http.matches
                .iter()
                .filter(|m| m.port.is_none_or(|p| p == u32::from(port.get())))
                .map(route_match)
                .collect()
        };
        for m in matches {
            out.push(Route {
                name: http.name.clone().unwrap_or_default(),
                r#match: Some(m),
                action: Some(action.clone()),
                typed_per_filter_config: typed_per_filter_config.clone(),
                request_headers_to_add: request_headers_to_add.clone(),
                request_headers_to_remove: request_headers_to_remove.clone(),
                response_headers_to_add: response_headers_to_add.clone(),
                response_headers_to_remove: response_headers_to_remove.clone(),
                ..Default::default()
            });
        }
    }
    out
}

fn route_action(
    view: &View<'_>,
    vs: &VirtualService,
    http: &HttpRoute,
    port: PortNumber,
) -> Option<RouteAction> {
    let mut clusters: Vec<(String, u32)> = Vec::new();
    for d in &http.route {
        let Some(dest) = &d.destination else { continue };
        let Some(name) = destination_cluster(view, vs, dest, port) else {
            continue;
        };
        let weight = d.weight.map_or(100, |w| u32::try_from(w).unwrap_or(0));
        clusters.push((name, weight));
    }
    if clusters.is_empty() {
        return None;
    }
    if clusters.len() > 1 {
        clusters.retain(|(_, w)| *w > 0);
    }
    let specifier = match clusters.as_slice() {
        [(name, _)] => ClusterSpecifier::Cluster(name.clone()),
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(|(name, w)| ClusterWeight {
                    name,
                    weight: u32_value(w),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let timeout = http
        .timeout
        .as_deref()
        .and_then(parse_duration)
        .map_or_else(Duration::default, duration);
    Some(RouteAction {
        cluster_specifier: Some(specifier),
        timeout: Some(timeout),
        retry_policy: route_policy::retry_policy(http),
        ..Default::default()
    })
}

/// The cluster of a destination: its port, else the service's only port, else the route's.
pub(super) fn destination_cluster(
    view: &View<'_>,
    vs: &VirtualService,
    dest: &Destination,
    port: PortNumber,
) -> Option<String> {
    let host = Hostname::new(dest.host.as_deref()?).ok()?;
    let host = host.qualify(&vs.meta.namespace, &view.config.domain_suffix);
    let dest_port = dest
        .port
        .as_ref()
        .and_then(|p| p.number)
        .and_then(|n| PortNumber::new(n).ok())
        .or_else(
            || match view.service(host.as_str()).map(|s| s.ports.as_slice()) {
                Some([only]) => Some(only.number),
                _ => None,
            },
        )
        .unwrap_or(port);
    Some(names::outbound_cluster(
        dest_port,
        dest.subset.as_deref(),
        host.as_str(),
    ))
}

fn route_match(m: &HttpMatchRequest) -> RouteMatch {
    let path = m.uri.as_ref().and_then(|u| {
        if let Some(e) = &u.exact {
            Some(PathSpecifier::Path(e.clone()))
        } else if let Some(p) = &u.prefix {
            Some(PathSpecifier::Prefix(p.clone()))
        } else {
            u.regex.as_ref().map(|r| PathSpecifier::SafeRegex(regex(r)))
        }
    });
    let mut headers = Vec::new();
    let pseudo = [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ];
    for (name, sm) in pseudo {
        if let Some(sm) = sm {
            headers.extend(header(name, sm, false));
        }
    }
    for (name, sm) in &m.headers {
        headers.extend(header(&name.to_ascii_lowercase(), sm, false));
    }
    for (name, sm) in &m.without_headers {
        headers.extend(header(&name.to_ascii_lowercase(), sm, true));
    }
    RouteMatch {
        path_specifier: Some(path.unwrap_or_else(|| PathSpecifier::Prefix("/".to_owned()))),
        case_sensitive: m
            .ignore_uri_case
            .filter(|i| *i)
            .map(|_| false)
            .and_then(bool_value),
        headers,
        query_parameters: route_policy::query_params(&m.query_params),
        ..Default::default()
    }
}

pub(super) fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..Default::default()
    }
}

pub(super) fn string_matcher(sm: &StringMatch) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &sm.exact {
        MatchPattern::Exact(e.clone())
    } else if let Some(p) = &sm.prefix {
        MatchPattern::Prefix(p.clone())
    } else {
        MatchPattern::SafeRegex(regex(sm.regex.as_deref()?))
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn header(name: &str, sm: &StringMatch, invert: bool) -> Option<HeaderMatcher> {
    Some(HeaderMatcher {
        name: name.to_owned(),
        invert_match: invert,
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string_matcher(sm)?)),
        ..Default::default()
    })
}
