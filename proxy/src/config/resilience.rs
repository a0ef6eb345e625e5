//! A cluster's resilience state: the circuit breaker (Envoy's thresholds: requests in flight,
//! pending requests, active retries or a retry budget) and outlier detection (consecutive
//! 5xx and gateway errors eject an endpoint for `base_ejection_time × ejections`, never more
//! than `max_ejection_percent` of the endpoints but always at least one). Owned by the
//! cluster; the data path (`crate::route_exec`) asks it for admission and reports outcomes.
//!
//! Differences from Envoy, documented in the proxy README: `max_connections` bounds the
//! requests in flight on HTTP/1.1 clusters (each needs its own connection) rather than
//! counting pooled connections; an ejected endpoint comes back when its time is up (at its
//! next pick) rather than at the next `interval` tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::policy::AttemptOutcome;

/// Envoy's circuit-breaker thresholds (default priority); `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    /// (budget percent of active requests, minimum retry concurrency).
    pub retry_budget: Option<(f64, u32)>,
}

/// Outlier detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway: Option<u32>,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Admission state of one cluster.
#[derive(Debug)]
pub(crate) struct Breaker {
    thresholds: Thresholds,
    /// Permits for requests in flight, when bounded.
    slots: Option<Arc<Semaphore>>,
    active: AtomicUsize,
    pending: AtomicUsize,
    retries: AtomicUsize,
}

/// A request admitted by the circuit breaker; counts as active until dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    breaker: &'a Breaker,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.breaker.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry admitted by the budget; counts as active until dropped.
#[derive(Debug)]
pub struct RetryAdmitted<'a>(&'a Breaker);

impl Drop for RetryAdmitted<'_> {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Breaker {
    pub(crate) fn new(thresholds: Thresholds, http2: bool) -> Self {
        let limit = match (thresholds.max_requests, thresholds.max_connections, http2) {
            (r, Some(c), false) => Some(r.map_or(c, |r| r.min(c))),
            (r, _, _) => r,
        };
        Self {
            slots: limit.map(|n| Arc::new(Semaphore::new(n as usize))),
            thresholds,
            active: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Admits a request now, after waiting as one of at most `max_pending_requests`, or not
    /// at all (overflow: the caller answers 503 `UO`).
    pub(crate) async fn admit(&self) -> Option<Admitted<'_>> {
        let permit = match &self.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let max = self
                        .thresholds
                        .max_pending_requests
                        .map_or(usize::MAX, |m| m as usize);
                    if self.pending.fetch_add(1, Ordering::AcqRel) >= max {
                        self.pending.fetch_sub(1, Ordering::AcqRel);
                        return None;
                    }
                    let waited = slots.clone().acquire_owned().await;
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    Some(waited.ok()?)
                }
            },
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            breaker: self,
            _permit: permit,
        })
    }

    /// Admits one more retry under `max_retries`, or the retry budget (a share of the
    /// active requests, at least the minimum concurrency).
    pub(crate) fn admit_retry(&self) -> Option<RetryAdmitted<'_>> {
        let limit = match (self.thresholds.retry_budget, self.thresholds.max_retries) {
            (Some((percent, min)), _) => {
                let active = self.active.load(Ordering::Relaxed) as f64;
                // Non-negative and bounded by the active count.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let share = (active * percent / 100.0) as usize;
                share.max(min as usize)
            }
            (None, Some(max)) => max as usize,
            (None, None) => usize::MAX,
        };
        if self.retries.fetch_add(1, Ordering::AcqRel) >= limit {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RetryAdmitted(self))
    }
}

/// One endpoint's outlier state.
#[derive(Debug, Default)]
pub(crate) struct EndpointHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Milliseconds since the detector's epoch until which the endpoint is ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

/// Outlier detection of one cluster.
#[derive(Debug)]
pub(crate) struct Detector {
    settings: OutlierSettings,
    epoch: Instant,
}

impl Detector {
    pub(crate) fn new(settings: OutlierSettings) -> Self {
        Self {
            settings,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_ejected(&self, h: &EndpointHealth) -> bool {
        h.ejected_until.load(Ordering::Relaxed) > self.now_ms()
    }

    /// Records an attempt's outcome on `h`, one of `all`; ejects it when a threshold is met.
    pub(crate) fn report<'a>(
        &self,
        h: &EndpointHealth,
        all: impl Iterator<Item = &'a EndpointHealth>,
        outcome: AttemptOutcome,
    ) -> bool {
        // Local-origin failures count as the status Envoy would answer with.
        let status = match outcome {
            AttemptOutcome::Response(s, _) => s.as_u16(),
            AttemptOutcome::ConnectFailure | AttemptOutcome::Reset => 503,
            AttemptOutcome::Timeout => 504,
        };
        if status < 500 {
            h.consecutive_5xx.store(0, Ordering::Relaxed);
            h.consecutive_gateway.store(0, Ordering::Relaxed);
            return false;
        }
        let n5xx = h.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let gateway = if matches!(status, 502..=504) {
            h.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            h.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let s = &self.settings;
        let hit = s.consecutive_5xx.is_some_and(|t| t > 0 && n5xx >= t)
            || s.consecutive_gateway.is_some_and(|t| t > 0 && gateway >= t);
        if !hit || self.is_ejected(h) {
            return false;
        }
        let (mut total, mut ejected) = (0u64, 0u64);
        for e in all {
            total += 1;
            ejected += u64::from(self.is_ejected(e));
        }
        // Envoy ejects at least one endpoint whatever the percentage.
        if ejected > 0 && (ejected + 1) * 100 > total * u64::from(s.max_ejection_percent) {
            return false;
        }
        let times = h.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = s
            .base_ejection_time
            .saturating_mul(times)
            .min(s.max_ejection_time.max(s.base_ejection_time));
        let until = self.now_ms() + u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2);
        h.ejected_until.store(until, Ordering::Relaxed);
        h.consecutive_5xx.store(0, Ordering::Relaxed);
        h.consecutive_gateway.store(0, Ordering::Relaxed);
        tracing::info!(?duration, "endpoint ejected by outlier detection");
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::StatusCode;

    #[tokio::test]
    async fn one_in_flight_and_one_pending_then_overflow() {
        let b = Breaker::new(
            Thresholds {
                max_connections: Some(1),
                max_pending_requests: Some(1),
                ..Default::default()
            },
            false,
        );
        let first = b.admit().await.unwrap();
        let waiting = b.admit();
        tokio::pin!(waiting);
        // The second waits (pending); a third overflows.
        assert!(futures_poll(&mut waiting).is_none());
        assert!(b.admit().await.is_none());
        drop(first);
        assert!(waiting.await.is_some());
    }

    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn retry_budget_bounds_concurrent_retries() {
        let b = Breaker::new(
            Thresholds {
                retry_budget: Some((20.0, 2)),
                ..Default::default()
            },
            false,
        );
        let a = b.admit_retry().unwrap();
        let c = b.admit_retry().unwrap();
        assert!(
            b.admit_retry().is_none(),
            "min concurrency 2 with nothing active"
        );
        drop((a, c));
        assert!(b.admit_retry().is_some());
    }

    #[test]
    fn consecutive_errors_eject_within_the_percentage() {
        let d = Detector::new(OutlierSettings {
            consecutive_5xx: Some(2),
            consecutive_gateway: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        });
        let hs: Vec<EndpointHealth> = (0..2).map(|_| EndpointHealth::default()).collect();
        let err = AttemptOutcome::Response(StatusCode::INTERNAL_SERVER_ERROR, None);
        assert!(!d.report(&hs[0], hs.iter(), err));
        assert!(d.report(&hs[0], hs.iter(), err));
        assert!(d.is_ejected(&hs[0]));
        // 10 % of 2 would be none; one is always allowed, a second is not.
        d.report(&hs[1], hs.iter(), err);
        assert!(!d.report(&hs[1], hs.iter(), err));
        assert!(!d.is_ejected(&hs[1]));
        // A success resets the count.
        d.report(
            &hs[1],
            hs.iter(),
            AttemptOutcome::Response(StatusCode::OK, None),
        );
        assert!(!d.report(&hs[1], hs.iter(), err));
    }
}
