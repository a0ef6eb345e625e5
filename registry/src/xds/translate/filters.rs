//! Network filters shared by the listeners: the HTTP connection manager (with RDS or an
//! inline route table, and the router filter) and the TCP proxy.

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{
        ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    },
    http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::util::pack_any;

use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;

use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;

use super::names::{
    CORS_FILTER, FAULT_FILTER, HTTP_CONNECTION_MANAGER, LOCAL_RATE_LIMIT_FILTER,
    LOCAL_RATE_LIMIT_STATS, ROUTER, TCP_PROXY,
};
use super::proto::{ads, bool_value, network_filter};

fn router() -> HttpFilter {
    HttpFilter {
        name: ROUTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    }
}

/// The fault filter with no fault of its own: routes configure it (`typed_per_filter_config`).
fn fault() -> HttpFilter {
    HttpFilter {
        name: FAULT_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            HttpFault::default(),
        ))),
        ..Default::default()
    }
}

/// The CORS filter with no policy of its own: routes configure it.
fn cors() -> HttpFilter {
    HttpFilter {
        name: CORS_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Cors::default(),
        ))),
        ..Default::default()
    }
}

/// The local rate limit filter without a bucket of its own: virtual hosts configure it.
fn local_rate_limit() -> HttpFilter {
    HttpFilter {
        name: LOCAL_RATE_LIMIT_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            LocalRateLimit {
                stat_prefix: LOCAL_RATE_LIMIT_STATS.to_owned(),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

/// Outbound HTTP: routes come from RDS (`route_config_name`) over ADS; the CORS, local rate
/// limit and fault filters before the router (CORS first, as Istio orders them: a preflight
/// it answers spends no token).
pub fn http_rds(stat_prefix: &str, route_config_name: &str) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config_name.to_owned(),
        })),
        http_filters: vec![cors(), local_rate_limit(), fault(), router()],
        ..Default::default()
    };
    network_filter(HTTP_CONNECTION_MANAGER, pack_any(hcm))
}

/// Inbound HTTP: an inline route table; the peer's certificate details (its SPIFFE ID among
/// them) go to the application in `x-forwarded-client-cert`, as Istio does.
pub fn http_inline(stat_prefix: &str, routes: RouteConfiguration) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(RouteSpecifier::RouteConfig(routes)),
        http_filters: vec![router()],
        forward_client_cert_details: ForwardClientCertDetails::AppendForward as i32,
        set_current_client_cert_details: Some(SetCurrentClientCertDetails {
            subject: bool_value(true),
            dns: true,
            uri: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    network_filter(HTTP_CONNECTION_MANAGER, pack_any(hcm))
}

/// Opaque TCP to one cluster.
pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
        ..Default::default()
    };
    network_filter(TCP_PROXY, pack_any(proxy))
}
