//! CORS, mirrors and the fallback annotation as Envoy fields (`route_l7`, `fallback`).

use envoy_types::pb::envoy::config::accesslog::v3::access_log_filter::FilterSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route::Action};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::ResponseMapper;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::*;

const SHOP: &str = "shop.demo.svc.cluster.local";

fn l7() -> ResourceSet {
    MeshTranslator::default().shared(&snapshot(&[L7]))
}

#[test]
fn snapshot_cors_mirrors_and_fallback() {
    let set = l7();
    let mut out = String::new();
    for t in [type_url::CLUSTER, type_url::ROUTE] {
        for r in set.of_type(t) {
            out.push_str(&format!("### {:?}\n", r.name));
            out.push_str(&render_any(&r.body.type_url, &r.body.value));
            out.push('\n');
        }
    }
    insta::assert_snapshot!("cors_mirrors_fallback", out);
}

#[test]
fn cors_policy_is_the_cors_filters_per_route_config() {
    let rc: RouteConfiguration = decode(&l7(), type_url::ROUTE, "8080");
    let route = &rc.virtual_hosts[0].routes[0];
    assert_eq!(route.name, "cors");
    let names: Vec<_> = route.typed_per_filter_config.keys().collect();
    assert_eq!(names, ["envoy.filters.http.cors"]);
    let c: CorsPolicy = any(&route.typed_per_filter_config["envoy.filters.http.cors"]);
    let origins: Vec<_> = c
        .allow_origin_string_match
        .iter()
        .map(|m| m.match_pattern.clone().unwrap())
        .collect();
    assert_eq!(
        origins[0],
        MatchPattern::Exact("https://shop.example".into())
    );
    assert_eq!(origins[1], MatchPattern::Prefix("https://dev.".into()));
    assert!(matches!(&origins[2], MatchPattern::SafeRegex(r) if r.regex == "https://.*\\.test"));
    assert_eq!(c.allow_methods, "GET,POST");
    assert_eq!(c.allow_headers, "x-token,content-type");
    assert_eq!(c.expose_headers, "x-trace");
    assert_eq!(c.max_age, "600");
    assert!(c.allow_credentials.unwrap().value);
    assert!(!c.forward_not_matching_preflights.unwrap().value);
    assert_eq!(
        c.filter_enabled.unwrap().default_value.unwrap().numerator,
        100
    );
}

#[test]
fn two_per_filter_configs_encode_the_same_every_time() {
    let with_fault = L7.replace(
        "    corsPolicy:\n",
        "    fault: {delay: {fixedDelay: 1s, percentage: {value: 1}}}\n    corsPolicy:\n",
    );
    let translate = || MeshTranslator::default().shared(&snapshot(&[&with_fault]));
    let first = translate();
    let rc: RouteConfiguration = decode(&first, type_url::ROUTE, "8080");
    let mut names: Vec<_> = rc.virtual_hosts[0].routes[0]
        .typed_per_filter_config
        .keys()
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["envoy.filters.http.cors", "envoy.filters.http.fault"]
    );
    for _ in 0..20 {
        let again = translate();
        assert_eq!(
            first.get(type_url::ROUTE, "8080").unwrap().version,
            again.get(type_url::ROUTE, "8080").unwrap().version
        );
    }
}

#[test]
fn mirrors_carry_their_cluster_and_share_and_zero_percent_is_dropped() {
    let rc: RouteConfiguration = decode(&l7(), type_url::ROUTE, "8080");
    let Some(Action::Route(a)) = &rc.virtual_hosts[0].routes[1].action else {
        panic!("not a route action")
    };
    let got: Vec<_> = a
        .request_mirror_policies
        .iter()
        .map(|m| {
            let f = m.runtime_fraction.clone().unwrap().default_value.unwrap();
            (m.cluster.as_str(), f.numerator, f.denominator)
        })
        .collect();
    let million = 2; // FractionalPercent.DenominatorType.MILLION
    assert_eq!(
        got,
        [
            (
                format!("outbound|8080|v2|{SHOP}").as_str(),
                125_000,
                million
            ),
            (
                format!("outbound|8080|v1|{SHOP}").as_str(),
                1_000_000,
                million
            ),
        ]
    );
    // The CORS route mirrors nothing.
    let Some(Action::Route(a)) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("not a route action")
    };
    assert!(a.request_mirror_policies.is_empty());
}

#[test]
fn the_fallback_annotation_is_a_response_mapper_on_every_cluster_of_the_host() {
    let set = l7();
    for subset in ["", "v1", "v2"] {
        let c = cluster_named(&set, &format!("outbound|8080|{subset}|{SHOP}"));
        let meta = c.metadata.expect("metadata");
        let m: ResponseMapper = any(&meta.typed_filter_metadata["hostmesh.io/fallback"]);
        let Some(FilterSpecifier::ResponseFlagFilter(f)) = m.filter.unwrap().filter_specifier
        else {
            panic!("not a response flag filter")
        };
        assert_eq!(f.flags, ["UO", "UH"]);
        assert_eq!(m.status_code.unwrap().value, 200);
        assert_eq!(
            m.body.unwrap().specifier,
            Some(Specifier::InlineString(r#"{"items":[]}"#.into()))
        );
        let h = m.headers_to_add[0].header.clone().unwrap();
        assert_eq!(
            (h.key.as_str(), h.value.as_str()),
            ("content-type", "application/json")
        );
    }
    // Without the annotation, no metadata.
    let plain = MeshTranslator::default().shared(&snapshot(&[TRAFFIC]));
    let c = cluster_named(&plain, &format!("outbound|8080||{SHOP}"));
    assert!(c.metadata.is_none());
}

fn cluster_named(
    set: &ResourceSet,
    name: &str,
) -> envoy_types::pb::envoy::config::cluster::v3::Cluster {
    decode(set, type_url::CLUSTER, name)
}
