//! Checks of `DestinationRule` `loadBalancer.consistentHash` and `localityLbSetting`: Istio's
//! rules (one hash key, a named cookie, one of `ringHash`/`maglev`, `failover` or `distribute`
//! but not both, a failover to another region), plus what Envoy would refuse at the proxy: a
//! maglev table size that is not a prime, a ring above Envoy's 8M points.

use super::Errors;
use crate::model::istio::networking::LoadBalancerSettings;
use crate::model::types::Locality;

const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

pub fn load_balancer(errs: &mut Errors, path: &str, lb: &LoadBalancerSettings) {
    if let Some(ch) = &lb.consistent_hash {
        let path = format!("{path}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            errs.push(
                path.clone(),
                "exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName must be set",
            );
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.as_deref().is_none_or(str::is_empty) {
                errs.push(
                    format!("{path}.httpCookie.name"),
                    "a cookie name is required",
                );
            }
            super::duration(errs, &format!("{path}.httpCookie.ttl"), c.ttl.as_deref());
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            errs.push(path.clone(), "only one of ringHash and maglev may be set");
        }
        let ring = ch
            .ring_hash
            .as_ref()
            .and_then(|r| r.minimum_ring_size)
            .or(ch.minimum_ring_size);
        if ring.is_some_and(|r| r > MAX_RING_SIZE) {
            errs.push(
                format!("{path}.ringHash.minimumRingSize"),
                format!("must be at most {MAX_RING_SIZE}"),
            );
        }
        if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size)
            && !is_prime(size)
        {
            errs.push(
                format!("{path}.maglev.tableSize"),
                format!("{size} is not a prime (Envoy requires one)"),
            );
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        let path = format!("{path}.localityLbSetting");
        if !l.failover.is_empty() && !l.distribute.is_empty() {
            errs.push(
                path.clone(),
                "only one of failover and distribute may be set",
            );
        }
        for (i, f) in l.failover.iter().enumerate() {
            let region = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && !s.contains('/'));
            if !region(f.from.as_deref()) || !region(f.to.as_deref()) {
                errs.push(
                    format!("{path}.failover[{i}]"),
                    "from and to must be regions",
                );
            } else if f.from == f.to {
                errs.push(format!("{path}.failover[{i}]"), "from and to must differ");
            }
        }
        for (i, d) in l.distribute.iter().enumerate() {
            if let Some(from) = &d.from
                && from != "*"
                && Locality::parse(from.trim_end_matches("/*")).is_err()
            {
                errs.push(format!("{path}.distribute[{i}].from"), "is not a locality");
            }
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}
