//! A `Cluster`'s `circuit_breakers` (default priority), `outlier_detection` (consecutive 5xx
//! and gateway failures) and `common_lb_config.healthy_panic_threshold` (0 only: no panic
//! routing) → [`Thresholds`] and [`OutlierSettings`]. Takes the fields it understands out of
//! the cluster; the caller refuses what is left.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;

use super::super::wire::Problems;
use super::cluster::duration;
use crate::config::spec::{OutlierSettings, Thresholds};

/// Envoy's defaults for outlier detection.
const CONSECUTIVE_DEFAULT: u32 = 5;
const BASE_EJECTION: Duration = Duration::from_secs(30);
const MAX_EJECTION: Duration = Duration::from_secs(300);
const MAX_EJECTION_PERCENT: u32 = 10;

/// Istio's "unlimited" (u32::MAX) counts as no limit.
fn limit(v: Option<u32>) -> Option<u32> {
    v.filter(|v| *v != u32::MAX)
}

pub fn thresholds(c: &mut Cluster, p: &mut Problems<'_>) -> Thresholds {
    let Some(mut cb) = c.circuit_breakers.take() else {
        return Thresholds::default();
    };
    let mut out = Thresholds::default();
    for (i, mut t) in std::mem::take(&mut cb.thresholds).into_iter().enumerate() {
        let at = format!("circuit_breakers.thresholds[{i}]");
        if t.priority != RoutingPriority::Default as i32 {
            // The proxy has no priorities; only the default one applies.
            continue;
        }
        out.max_connections = limit(t.max_connections.take().map(|v| v.value));
        out.max_pending_requests = limit(t.max_pending_requests.take().map(|v| v.value));
        out.max_requests = limit(t.max_requests.take().map(|v| v.value));
        out.max_retries = limit(t.max_retries.take().map(|v| v.value));
        if let Some(mut b) = t.retry_budget.take() {
            // Envoy's defaults: 20 % and 3.
            let percent = b.budget_percent.take().map_or(20.0, |p| p.value);
            let min = b.min_retry_concurrency.take().map_or(3, |v| v.value);
            out.retry_budget = Some((percent, min));
            p.leftover(&format!("{at}.retry_budget"), &b);
        }
        // Remaining-capacity gauges: stats only.
        t.track_remaining = false;
        p.leftover(&at, &t);
    }
    p.leftover("circuit_breakers", &cb);
    out
}

pub fn outlier(c: &mut Cluster, p: &mut Problems<'_>) -> Option<OutlierSettings> {
    if let Some(mut lb) = c.common_lb_config.take() {
        match lb.healthy_panic_threshold.take() {
            Some(t) if t.value == 0.0 => {}
            _ => p.add(
                "common_lb_config: only healthy_panic_threshold 0 is supported (no panic routing)",
            ),
        }
        p.leftover("common_lb_config", &lb);
    }
    let mut o = c.outlier_detection.take()?;
    let enforced = |v: Option<u32>, default: u32, what: &str, p: &mut Problems<'_>| -> bool {
        match v.unwrap_or(default) {
            0 => false,
            100 => true,
            other => {
                p.add(format!(
                    "outlier_detection.{what} {other} is not supported (0 or 100)"
                ));
                false
            }
        }
    };
    let c5xx = o
        .consecutive_5xx
        .take()
        .map_or(CONSECUTIVE_DEFAULT, |v| v.value);
    let e5xx = enforced(
        o.enforcing_consecutive_5xx.take().map(|v| v.value),
        100,
        "enforcing_consecutive_5xx",
        p,
    );
    let cgw = o
        .consecutive_gateway_failure
        .take()
        .map_or(CONSECUTIVE_DEFAULT, |v| v.value);
    let egw = enforced(
        o.enforcing_consecutive_gateway_failure
            .take()
            .map(|v| v.value),
        0,
        "enforcing_consecutive_gateway_failure",
        p,
    );
    if o.enforcing_success_rate.take().is_none_or(|v| v.value != 0) {
        p.add("outlier_detection: success-rate ejection is not supported (set enforcing_success_rate 0)");
    }
    let d = |v: Option<envoy_types::pb::google::protobuf::Duration>, default| {
        v.and_then(|d| duration(&d)).unwrap_or(default)
    };
    // Ejections are checked as outcomes arrive and end when their time is up; the interval
    // only paces Envoy's periodic sweep.
    o.interval = None;
    let settings = OutlierSettings {
        consecutive_5xx: e5xx.then_some(c5xx),
        consecutive_gateway: egw.then_some(cgw),
        base_ejection_time: d(o.base_ejection_time.take(), BASE_EJECTION),
        max_ejection_time: d(o.max_ejection_time.take(), MAX_EJECTION),
        max_ejection_percent: o
            .max_ejection_percent
            .take()
            .map_or(MAX_EJECTION_PERCENT, |v| v.value),
    };
    p.leftover("outlier_detection", &o);
    Some(settings)
}
