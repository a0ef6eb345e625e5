//! `RouteConfiguration` → [`RouteTableSpec`]: virtual hosts by domain, routes matched by path
//! (prefix, exact, whole-path regex), headers (exact, prefix, regex, present, inverted) and
//! query parameters, sent to one cluster or split by weight, with a timeout (Envoy's default
//! 15 s when unset, none when 0), or answered with a redirect; retries, faults, rewrites and
//! header edits come from [`super::route_policy`]; CORS and mirrors from [`super::route_l7`].

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::super::wire::Problems;
use super::cluster::duration;
use super::route_l7;
use super::route_policy;
use crate::config::spec::{
    HeaderMatchSpec, HeaderValueSpec, PathMatchSpec, QueryMatchSpec, RoutePolicySpec, RouteSpec,
    RouteTableSpec, VirtualHostSpec, WeightedClusterSpec,
};

/// Envoy's route timeout when the route sets none.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Converts a route configuration; `kind` is `RouteConfiguration` for RDS or names the
/// listener chain that holds it inline.
pub fn table(rc: &RouteConfiguration, p: &mut Problems<'_>) -> Option<RouteTableSpec> {
    let before = p.count();
    let mut rc = rc.clone();
    let name = std::mem::take(&mut rc.name);
    // Envoy checks cluster names at load only when asked; missing clusters answer 503 either
    // way here.
    rc.validate_clusters = None;
    let hosts = std::mem::take(&mut rc.virtual_hosts);
    p.leftover("", &rc);
    let virtual_hosts = hosts.into_iter().map(|vh| virtual_host(vh, p)).collect();
    (p.count() == before).then_some(RouteTableSpec {
        name,
        virtual_hosts,
    })
}

fn virtual_host(mut vh: VirtualHost, p: &mut Problems<'_>) -> VirtualHostSpec {
    let name = std::mem::take(&mut vh.name);
    let domains = std::mem::take(&mut vh.domains);
    let routes: Vec<Route> = std::mem::take(&mut vh.routes);
    let at = format!("virtual_hosts[{name:?}]");
    let rate_limit =
        route_policy::rate_limit(std::mem::take(&mut vh.typed_per_filter_config), &at, p);
    p.leftover(&at, &vh);
    let routes = routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(r, &format!("{at}.routes[{i}]"), p))
        .collect();
    VirtualHostSpec {
        name,
        domains,
        routes,
        rate_limit,
    }
}

fn route(mut r: Route, at: &str, p: &mut Problems<'_>) -> Option<RouteSpec> {
    let before = p.count();
    let name = std::mem::take(&mut r.name);
    let at = if name.is_empty() {
        at.to_owned()
    } else {
        format!("{at} ({name:?})")
    };
    // Informational only.
    r.metadata = None;
    r.decorator = None;
    let m = r.r#match.take().unwrap_or_default();
    let action = r.action.take();
    let cors = route_l7::cors(&mut r, &at, p);
    let mut policy = RoutePolicySpec {
        cors,
        fault: route_policy::fault(&mut r, &at, p),
        ..Default::default()
    };
    (policy.request_headers, policy.response_headers) = route_policy::header_edits(&mut r, &at, p);
    p.leftover(&at, &r);
    let (path, headers, query) = route_match(m, &at, p)?;
    policy.query = query;
    let (clusters, timeout) = match action {
        Some(Action::Route(a)) => route_action(a, &at, &mut policy, p)?,
        Some(Action::Redirect(rd)) => {
            policy.redirect = Some(route_policy::redirect(rd, &at, p));
            (Vec::new(), None)
        }
        _ => {
            p.add(format!(
                "{at}: only a route or redirect action is supported (no direct response or filter action)"
            ));
            return None;
        }
    };
    (p.count() == before).then_some(RouteSpec {
        name,
        path,
        headers,
        clusters,
        timeout,
        policy,
    })
}

fn route_match(
    mut m: RouteMatch,
    at: &str,
    p: &mut Problems<'_>,
) -> Option<(PathMatchSpec, Vec<HeaderMatchSpec>, Vec<QueryMatchSpec>)> {
    let at = format!("{at}.match");
    if m.case_sensitive.take().is_some_and(|b| !b.value) {
        p.add(format!("{at}: case_sensitive false is not supported"));
    }
    let path = match m.path_specifier.take() {
        Some(PathSpecifier::Prefix(s)) => Some(PathMatchSpec::Prefix(s)),
        Some(PathSpecifier::Path(s)) => Some(PathMatchSpec::Exact(s)),
        Some(PathSpecifier::SafeRegex(re)) => Some(PathMatchSpec::Regex(re.regex)),
        _ => {
            p.add(format!(
                "{at}: path_specifier must be prefix, path or safe_regex"
            ));
            None
        }
    };
    let headers = std::mem::take(&mut m.headers)
        .into_iter()
        .filter_map(|h| header(h, &at, p))
        .collect();
    let query = route_policy::query(std::mem::take(&mut m.query_parameters), &at, p);
    p.leftover(&at, &m);
    Some((path?, headers, query))
}

// The deprecated matchers are still what many servers send.
#[allow(deprecated)]
fn header(mut h: HeaderMatcher, at: &str, p: &mut Problems<'_>) -> Option<HeaderMatchSpec> {
    let name = std::mem::take(&mut h.name);
    let invert = std::mem::take(&mut h.invert_match);
    let at = format!("{at}.headers[{name:?}]");
    let value = match h.header_match_specifier.take() {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => Some(HeaderValueSpec::Exact(v)),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => Some(HeaderValueSpec::Prefix(v)),
        Some(HeaderMatchSpecifier::SafeRegexMatch(re)) => Some(HeaderValueSpec::Regex(re.regex)),
        Some(HeaderMatchSpecifier::PresentMatch(true)) => Some(HeaderValueSpec::Present),
        Some(HeaderMatchSpecifier::StringMatch(sm)) if !sm.ignore_case => match sm.match_pattern {
            Some(MatchPattern::Exact(v)) => Some(HeaderValueSpec::Exact(v)),
            Some(MatchPattern::Prefix(v)) => Some(HeaderValueSpec::Prefix(v)),
            Some(MatchPattern::SafeRegex(re)) => Some(HeaderValueSpec::Regex(re.regex)),
            _ => None,
        },
        _ => None,
    };
    p.leftover(&at, &h);
    if value.is_none() {
        p.add(format!(
            "{at}: only exact, prefix, safe_regex (case-sensitive) and present matches are supported"
        ));
    }
    Some(HeaderMatchSpec {
        name,
        value: value?,
        invert,
    })
}

fn route_action(
    mut a: RouteAction,
    at: &str,
    policy: &mut RoutePolicySpec,
    p: &mut Problems<'_>,
) -> Option<(Vec<WeightedClusterSpec>, Option<Duration>)> {
    let at = format!("{at}.route");
    policy.retry = route_policy::retry(&mut a, &at, p);
    policy.rewrite = route_policy::rewrite(&mut a, &at, p);
    policy.mirrors = route_l7::mirrors(&mut a, &at, p);
    // SERVICE_UNAVAILABLE (0) is what the proxy answers for a cluster without endpoints.
    if a.cluster_not_found_response_code != 0 {
        p.add(format!(
            "{at}: cluster_not_found_response_code other than SERVICE_UNAVAILABLE is not supported"
        ));
        a.cluster_not_found_response_code = 0;
    }
    let timeout = match a.timeout.take() {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) => match duration(&d) {
            Some(Duration::ZERO) => None,
            Some(d) => Some(d),
            None => {
                p.add(format!("{at}: timeout is negative"));
                None
            }
        },
    };
    let clusters = match a.cluster_specifier.take() {
        Some(ClusterSpecifier::Cluster(name)) => vec![WeightedClusterSpec {
            cluster: name,
            weight: 1,
        }],
        Some(ClusterSpecifier::WeightedClusters(mut w)) => {
            let clusters = std::mem::take(&mut w.clusters);
            p.leftover(&format!("{at}.weighted_clusters"), &w);
            clusters
                .into_iter()
                .map(|mut cw| {
                    let cluster = std::mem::take(&mut cw.name);
                    let weight = cw.weight.take().map_or(0, |w| w.value);
                    p.leftover(&format!("{at}.weighted_clusters[{cluster:?}]"), &cw);
                    WeightedClusterSpec { cluster, weight }
                })
                .collect()
        }
        _ => {
            p.add(format!(
                "{at}: cluster_specifier must be cluster or weighted_clusters"
            ));
            return None;
        }
    };
    p.leftover(&at, &a);
    Some((clusters, timeout))
}
