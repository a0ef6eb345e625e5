//! A cluster's resilience settings from its `DestinationRule` policy: `connectionPool` →
//! Envoy `circuit_breakers` (Istio's defaults of "unlimited" where unset, plus a retry budget
//! of Envoy's defaults — 20 % of active requests, at least 3 — unless `maxRetries` is set,
//! so retries cannot multiply load without bound) and `outlierDetection` → Envoy
//! `outlier_detection` with panic routing off (Istio's `minHealthPercent` 0).
//! `maxRequestsPerConnection` is the cluster's HTTP protocol options (`super::cluster`).

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier,
    circuit_breakers::{Thresholds, thresholds::RetryBudget},
    cluster::CommonLbConfig,
};
use envoy_types::pb::envoy::r#type::v3::Percent;

use super::policy::ClusterPolicy;
use super::proto::{duration, parse_duration, u32_value};

const UNLIMITED: u32 = u32::MAX;

fn count(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(UNLIMITED)
}

/// Sets `circuit_breakers`, `outlier_detection` and `common_lb_config` on `c`.
pub fn apply(policy: &ClusterPolicy, c: &mut Cluster) {
    let pool = policy.connection_pool.as_ref();
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    let max_retries = http.and_then(|h| h.max_retries).filter(|r| *r > 0);
    c.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: u32_value(count(tcp.and_then(|t| t.max_connections))),
            max_pending_requests: u32_value(count(http.and_then(|h| h.http1_max_pending_requests))),
            max_requests: u32_value(count(http.and_then(|h| h.http2_max_requests))),
            max_retries: u32_value(count(max_retries)),
            retry_budget: max_retries.is_none().then(|| RetryBudget {
                budget_percent: Some(Percent { value: 20.0 }),
                min_retry_concurrency: u32_value(3),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let Some(od) = &policy.outlier_detection else {
        return;
    };
    let five = od
        .consecutive5xx_errors
        .or_else(|| od.consecutive_errors.and_then(|e| u32::try_from(e).ok()));
    let mut out = EnvoyOutlier {
        enforcing_success_rate: u32_value(0),
        interval: od
            .interval
            .as_deref()
            .and_then(parse_duration)
            .map(duration),
        base_ejection_time: od
            .base_ejection_time
            .as_deref()
            .and_then(parse_duration)
            .map(duration),
        max_ejection_percent: od
            .max_ejection_percent
            .and_then(|p| u32::try_from(p).ok())
            .and_then(u32_value),
        ..Default::default()
    };
    if let Some(n) = five {
        out.consecutive_5xx = u32_value(n);
        out.enforcing_consecutive_5xx = u32_value(if n > 0 { 100 } else { 0 });
    }
    if let Some(n) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = u32_value(n);
        out.enforcing_consecutive_gateway_failure = u32_value(if n > 0 { 100 } else { 0 });
    }
    c.outlier_detection = Some(out);
    let min_health = od.min_health_percent.unwrap_or(0).clamp(0, 100);
    c.common_lb_config = Some(CommonLbConfig {
        healthy_panic_threshold: Some(Percent {
            value: f64::from(min_health),
        }),
        ..Default::default()
    });
}
