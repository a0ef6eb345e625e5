//! Latency recording: an HDR histogram in nanoseconds and the summary the reports print.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded exactly; larger values are clamped to it (and still counted).
const MAX_NANOS: u64 = 60_000_000_000;

/// A latency histogram (ns, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // 1 ns .. 60 s with 3 significant digits is a valid, fixed configuration.
        let histogram =
            Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("fixed, valid histogram bounds");
        Self { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos())
            .unwrap_or(MAX_NANOS)
            .clamp(1, MAX_NANOS);
        self.histogram.saturating_record(nanos);
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so `add` cannot fail; saturate just in case.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let us = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        LatencySummary {
            count: self.histogram.len(),
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.histogram.max() as f64 / 1000.0,
            mean_us: self.histogram.mean() / 1000.0,
        }
    }
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}
