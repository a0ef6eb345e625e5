//! `DestinationRule` `loadBalancer` beyond `simple`, as Envoy fields:
//! - `consistentHash` → cluster `lb_policy` `RING_HASH` (with `ringHash.minimumRingSize`, or
//!   the deprecated `minimumRingSize`) or `MAGLEV` (`maglev.tableSize`), and the route's
//!   `hash_policy` (`httpHeaderName` → header, `httpCookie` → cookie with name, path and TTL,
//!   `useSourceIp` → connection source IP, `httpQueryParameterName` → query parameter);
//! - `localityLbSetting` → the `priority` of each locality group of a node's
//!   `ClusterLoadAssignment`, by Istio's rules ([`locality_priorities`]).
//!
//! Must not build clusters, routes or assignments itself: the callers place what this
//! returns.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    LbConfig, LbPolicy, MaglevLbConfig, RingHashLbConfig,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter},
};
use envoy_types::pb::google::protobuf::UInt64Value;

use super::policy::ClusterPolicy;
use super::proto::{duration, parse_duration};
use crate::model::istio::networking::{ConsistentHash, LocalityLbSetting};
use crate::model::types::Locality;

/// The cluster policy of a consistent hash: `MAGLEV` when `maglev` is set, else `RING_HASH`
/// (Istio's default).
pub fn hash_lb_policy(ch: &ConsistentHash) -> LbPolicy {
    if ch.maglev.is_some() {
        LbPolicy::Maglev
    } else {
        LbPolicy::RingHash
    }
}

/// The cluster's `lb_config` for its consistent hash, when the rule sizes the ring or table.
pub fn lb_config(policy: &ClusterPolicy) -> Option<LbConfig> {
    let ch = policy.consistent_hash.as_ref()?;
    if let Some(m) = &ch.maglev {
        return Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
            table_size: m.table_size.map(|value| UInt64Value { value }),
        }));
    }
    let min = ch
        .ring_hash
        .as_ref()
        .and_then(|r| r.minimum_ring_size)
        .or(ch.minimum_ring_size)?;
    Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
        minimum_ring_size: Some(UInt64Value { value: min }),
        ..Default::default()
    }))
}

/// The route hash policy of a consistent hash (none when it names no key).
pub fn hash_policy(ch: &ConsistentHash) -> Option<HashPolicy> {
    let specifier = if let Some(h) = &ch.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: h.to_ascii_lowercase(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: c.name.clone().unwrap_or_default(),
            ttl: c.ttl.as_deref().and_then(parse_duration).map(duration),
            path: c.path.clone().unwrap_or_default(),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: q.clone() })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    })
}

/// Does locality load balancing apply to the cluster? Istio's rule: only with
/// `outlierDetection` (without it Envoy would never see a priority as unhealthy), unless
/// `localityLbSetting.enabled` is `false`; the mesh default has it enabled, so a rule without
/// `localityLbSetting` gets locality failover too. `distribute` is not translated.
pub fn locality_enabled(policy: &ClusterPolicy) -> bool {
    policy.outlier_detection.is_some()
        && policy
            .locality
            .as_ref()
            .is_none_or(|l| l.enabled != Some(false))
}

/// The priority of each locality (in the order given) for a client at `client`, Istio's
/// failover rules: 0 for the client's own region/zone/subzone, 1 for its zone, 2 for its
/// region, 3 for other regions — except that when a `failover` entry names the client's
/// region as `from`, only its `to` region keeps 3 and the rest get 4. Priorities are then
/// renumbered without gaps, as Envoy requires. An endpoint without a locality shares nothing
/// with the client.
pub fn locality_priorities(
    client: &Locality,
    localities: &[Option<&Locality>],
    setting: Option<&LocalityLbSetting>,
) -> Vec<u32> {
    let failover = setting.map_or(&[][..], |s| s.failover.as_slice());
    let raw: Vec<u32> = localities
        .iter()
        .map(|l| {
            let Some(l) = l else {
                return other_region(client, None, failover);
            };
            if l.region != client.region {
                return other_region(client, Some(l), failover);
            }
            if l.zone != client.zone {
                2
            } else if l.subzone != client.subzone {
                1
            } else {
                0
            }
        })
        .collect();
    let mut used = raw.clone();
    used.sort_unstable();
    used.dedup();
    raw.iter()
        .map(|p| u32::try_from(used.partition_point(|u| u < p)).unwrap_or(u32::MAX))
        .collect()
}

fn other_region(
    client: &Locality,
    endpoint: Option<&Locality>,
    failover: &[crate::model::istio::networking::LocalityFailover],
) -> u32 {
    match failover
        .iter()
        .find(|f| f.from.as_deref() == Some(client.region.as_str()))
    {
        Some(f) if endpoint.map(|e| e.region.as_str()) != f.to.as_deref() => 4,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::istio::networking::LocalityFailover;

    fn loc(s: &str) -> Locality {
        Locality::parse(s).unwrap()
    }

    #[test]
    fn priorities_follow_istio_failover_rules() {
        let client = loc("us-east/z1/s1");
        let all = [
            loc("us-east/z1/s1"),
            loc("us-east/z1/s2"),
            loc("us-east/z2/s1"),
            loc("us-west/z1/s1"),
            loc("eu/z1/s1"),
        ];
        let refs: Vec<Option<&Locality>> = all.iter().map(Some).collect();
        assert_eq!(locality_priorities(&client, &refs, None), [0, 1, 2, 3, 3]);
        let setting = LocalityLbSetting {
            failover: vec![LocalityFailover {
                from: Some("us-east".into()),
                to: Some("eu".into()),
            }],
            ..Default::default()
        };
        assert_eq!(
            locality_priorities(&client, &refs, Some(&setting)),
            [0, 1, 2, 4, 3],
            "the failover region comes before the others"
        );
        // Gaps are closed: only the own zone and another region.
        let refs = [Some(&all[1]), Some(&all[4]), None];
        assert_eq!(locality_priorities(&client, &refs, None), [0, 1, 1]);
    }
}
