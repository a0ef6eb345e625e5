//! Small constructors of Envoy messages shared by the builders (config sources, addresses,
//! CIDR ranges, durations, typed filters, metadata), and the parsing of Istio durations.

use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiConfigSource, ApiVersion, CidrRange, ConfigSource, GrpcService,
    Metadata, Pipe, SocketAddress, TransportSocket, address, api_config_source,
    config_source::ConfigSourceSpecifier, grpc_service, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::google::protobuf::{
    Any, BoolValue, Duration, Struct, UInt32Value, Value, value,
};

/// The cluster Istio's bootstrap names for the local secret discovery service.
pub const SDS_CLUSTER: &str = "sds-grpc";

/// `ConfigSource { ads: {}, resource_api_version: V3 }`: fetch over the ADS stream.
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// A secret fetched from the local SDS server, as Istio names them (`default`, `ROOTCA`).
pub fn sds_secret(name: &str) -> SdsSecretConfig {
    let grpc = GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: SDS_CLUSTER.to_owned(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: ApiVersion::V3 as i32,
                    grpc_services: vec![grpc],
                    set_node_on_first_message_only: true,
                    ..Default::default()
                },
            )),
            initial_fetch_timeout: Some(Duration::default()),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
    }
}

/// A TCP socket address.
pub fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// A Unix domain socket address.
pub fn pipe_address(path: &str) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: path.to_owned(),
            mode: 0,
        })),
    }
}

/// A CIDR range from an address (`10.0.0.5`, a host route) or a block (`10.1.0.0/16`).
/// `None` when the text is neither.
pub fn cidr(s: &str) -> Option<CidrRange> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, Some(len.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then(|| CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    })
}

pub fn u32_value(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

pub fn bool_value(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

/// A protobuf duration from a standard one (saturating at `i64::MAX` seconds).
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Parses an Istio (Go-style) duration: decimal numbers with units `ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`, e.g. `1.5s`, `1m30s`, `250ms`. `None` when malformed; validation has
/// already refused malformed durations, so callers treat `None` as "not set".
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().ok()?;
        let (unit, scale) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .filter(|(u, _)| tail.starts_with(u))
        .max_by_key(|(u, _)| u.len())?;
        total += n * scale;
        rest = &tail[unit.len()..];
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

/// A protobuf map whose iteration order, and so prost's encoding, is its keys' order: the
/// same entries always encode the same (resource versions are hashes of the encoding).
/// `HashMap`s built anew get new hash keys, so this rebuilds until the order comes out
/// sorted; meant for the two or three entries of a `typed_per_filter_config`.
pub fn ordered_map<V: Clone>(mut entries: Vec<(String, V)>) -> HashMap<String, V> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut map = HashMap::new();
    for _ in 0..1024 {
        map = entries.iter().cloned().collect::<HashMap<_, _>>();
        if map.keys().is_sorted() {
            break;
        }
    }
    map
}

/// A network filter with a typed config.
pub fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

/// A transport socket with a typed config.
pub fn transport_socket(name: &str, config: Any) -> TransportSocket {
    TransportSocket {
        name: name.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

/// Metadata with one filter namespace holding one string field. One key per map keeps the
/// encoding deterministic (prost encodes its `HashMap`s in iteration order), so that equal
/// inputs give equal resource versions.
pub fn metadata(filter: &str, key: &str, val: &str) -> Metadata {
    let fields = HashMap::from([(
        key.to_owned(),
        Value {
            kind: Some(value::Kind::StringValue(val.to_owned())),
        },
    )]);
    Metadata {
        filter_metadata: HashMap::from([(filter.to_owned(), Struct { fields })]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_parse_like_istio() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("1s"), std::time::Duration::from_secs(1));
        assert_eq!(d("250ms"), std::time::Duration::from_millis(250));
        assert_eq!(d("1m30s"), std::time::Duration::from_secs(90));
        assert_eq!(d("1.5h"), std::time::Duration::from_secs(5400));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn ordered_maps_iterate_in_key_order() {
        for _ in 0..50 {
            let m = ordered_map(vec![
                ("b".to_owned(), 2),
                ("a".to_owned(), 1),
                ("c".to_owned(), 3),
            ]);
            assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        }
    }

    #[test]
    fn cidrs_from_addresses_and_blocks() {
        let c = cidr("10.0.0.5").unwrap();
        assert_eq!(
            (c.address_prefix.as_str(), c.prefix_len.unwrap().value),
            ("10.0.0.5", 32)
        );
        let c = cidr("10.1.0.0/16").unwrap();
        assert_eq!(c.prefix_len.unwrap().value, 16);
        assert_eq!(cidr("2001:db8::1").unwrap().prefix_len.unwrap().value, 128);
        assert!(cidr("10.0.0.0/33").is_none());
        assert!(cidr("example.com").is_none());
    }
}
