//! Clusters: endpoints, their weights, the load-balancing policy and its state, and how to
//! secure connections to them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use rand::Rng;

use super::LbPolicy;
use super::l7::Fallback;
use super::policy::AttemptOutcome;
use super::resilience::{
    Admitted, Breaker, Detector, EndpointHealth, OutlierSettings, RetryAdmitted, Thresholds,
};

/// How the proxy secures connections to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamTls {
    Plaintext,
    /// Istio mutual TLS; the server must present one of these identities (never empty, sorted).
    Mtls {
        expected: Arc<[SpiffeId]>,
    },
}

#[derive(Debug)]
pub struct Endpoint {
    address: SocketAddr,
    weight: u32,
    labels: BTreeMap<String, String>,
    tls: UpstreamTls,
    in_flight: AtomicUsize,
    health: EndpointHealth,
}

impl Endpoint {
    pub(crate) fn new(
        address: SocketAddr,
        weight: u32,
        labels: BTreeMap<String, String>,
        tls: UpstreamTls,
    ) -> Self {
        Self {
            address,
            weight,
            labels,
            tls,
            in_flight: AtomicUsize::new(0),
            health: EndpointHealth::default(),
        }
    }

    /// How connections to this endpoint are secured (the cluster's unless it overrides it).
    pub fn tls(&self) -> &UpstreamTls {
        &self.tls
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Requests sent to this endpoint and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A cluster: its endpoints (possibly none, Envoy's "no healthy upstream"), each with a weight
/// above zero.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    endpoints: Vec<Arc<Endpoint>>,
    /// Running sum of weights, for weighted picks by binary search.
    cumulative: Vec<u64>,
    lb: LbPolicy,
    tls: UpstreamTls,
    connect_timeout: Duration,
    http2: bool,
    next: AtomicU64,
    breaker: Breaker,
    outlier: Option<Detector>,
    fallback: Option<Fallback>,
}

/// An endpoint chosen for one request; counts as in flight until dropped.
#[derive(Debug)]
pub struct Picked(Arc<Endpoint>);

impl Picked {
    pub fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cluster {
    pub(crate) fn new(
        name: String,
        endpoints: Vec<Endpoint>,
        lb: LbPolicy,
        tls: UpstreamTls,
        connect_timeout: Duration,
        http2: bool,
    ) -> Self {
        let mut total = 0u64;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                total += u64::from(e.weight);
                total
            })
            .collect();
        Self {
            name,
            endpoints: endpoints.into_iter().map(Arc::new).collect(),
            cumulative,
            lb,
            tls,
            connect_timeout,
            http2,
            next: AtomicU64::new(0),
            breaker: Breaker::new(Thresholds::default(), http2),
            outlier: None,
            fallback: None,
        }
    }

    /// Sets the service-degradation answer.
    pub(crate) fn with_fallback(mut self, fallback: Option<Fallback>) -> Self {
        self.fallback = fallback;
        self
    }

    /// The answer to give instead of the `UO`/`UH` error page, when configured.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref()
    }

    /// Sets the circuit breaker's thresholds and outlier detection.
    pub(crate) fn with_resilience(
        mut self,
        thresholds: Thresholds,
        outlier: Option<OutlierSettings>,
    ) -> Self {
        self.breaker = Breaker::new(thresholds, self.http2);
        self.outlier = outlier.map(Detector::new);
        self
    }

    pub fn thresholds(&self) -> &Thresholds {
        self.breaker.thresholds()
    }

    /// Admits a request through the circuit breaker (`None`: overflow, answer 503 `UO`).
    pub async fn admit_request(&self) -> Option<Admitted<'_>> {
        self.breaker.admit().await
    }

    /// Admits a retry within `max_retries` or the retry budget.
    pub fn admit_retry(&self) -> Option<RetryAdmitted<'_>> {
        self.breaker.admit_retry()
    }

    /// Reports how an attempt on `picked` ended, for outlier detection.
    pub fn report(&self, picked: &Picked, outcome: AttemptOutcome) {
        if let Some(d) = &self.outlier {
            let all = self.endpoints.iter().map(|e| &e.health);
            d.report(&picked.0.health, all, outcome);
        }
    }

    /// Is the endpoint ejected by outlier detection now?
    pub fn is_ejected(&self, e: &Endpoint) -> bool {
        self.outlier
            .as_ref()
            .is_some_and(|d| d.is_ejected(&e.health))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    pub fn lb(&self) -> LbPolicy {
        self.lb
    }

    pub fn tls(&self) -> &UpstreamTls {
        &self.tls
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The endpoints speak HTTP/2 whatever the service's protocol.
    pub fn http2(&self) -> bool {
        self.http2
    }

    fn total_weight(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0).max(1)
    }

    /// The endpoint whose weight range holds `ticket` (taken modulo the total weight).
    fn by_ticket(&self, ticket: u64) -> &Arc<Endpoint> {
        let t = ticket % self.total_weight();
        let i = self.cumulative.partition_point(|&c| c <= t);
        // `pick` checked that there is an endpoint; `i` is in range because t < total.
        &self.endpoints[i.min(self.endpoints.len() - 1)]
    }

    /// Chooses an endpoint for one request by the cluster's policy; `None` when the cluster
    /// has no endpoints.
    pub fn pick(&self) -> Option<Picked> {
        if self.endpoints.is_empty() {
            return None;
        }
        let mut chosen = self.pick_by_policy();
        if self.outlier.is_some() && self.is_ejected(chosen) {
            // Another pick by the policy, then any endpoint still admitted; none: no healthy
            // upstream (Istio disables Envoy's panic routing with outlier detection).
            chosen = self.pick_by_policy();
            if self.is_ejected(chosen) {
                chosen = self.endpoints.iter().find(|e| !self.is_ejected(e))?;
            }
        }
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Picked(chosen.clone()))
    }

    fn pick_by_policy(&self) -> &Arc<Endpoint> {
        match self.lb {
            LbPolicy::RoundRobin => self.by_ticket(self.next.fetch_add(1, Ordering::Relaxed)),
            LbPolicy::Random => self.by_ticket(rand::rng().random()),
            LbPolicy::LeastRequest => {
                let mut rng = rand::rng();
                let a = self.by_ticket(rng.random());
                let b = self.by_ticket(rng.random());
                // Compare in_flight/weight without division.
                let load = |e: &Endpoint| e.in_flight() as u64 * u64::from(other(e, a, b).weight);
                if load(b) < load(a) { b } else { a }
            }
        }
    }
}

/// The one of `a`, `b` that is not `e` (or `e` itself when both are the same endpoint).
fn other<'a>(e: &Endpoint, a: &'a Endpoint, b: &'a Endpoint) -> &'a Endpoint {
    if std::ptr::eq(e, a) { b } else { a }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cluster(lb: LbPolicy, weights: &[u32]) -> Cluster {
        let eps = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Endpoint::new(
                    format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                    *w,
                    BTreeMap::new(),
                    UpstreamTls::Plaintext,
                )
            })
            .collect();
        Cluster::new(
            "c".into(),
            eps,
            lb,
            UpstreamTls::Plaintext,
            Duration::from_secs(1),
            false,
        )
    }

    fn counts(c: &Cluster, n: usize) -> Vec<usize> {
        let mut counts = vec![0; c.endpoints().len()];
        for _ in 0..n {
            let p = c.pick().unwrap();
            let i = c
                .endpoints()
                .iter()
                .position(|e| e.address() == p.endpoint().address())
                .unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_weights_exactly() {
        assert_eq!(
            counts(&cluster(LbPolicy::RoundRobin, &[3, 1]), 400),
            [300, 100]
        );
    }

    #[test]
    fn random_follows_weights_roughly() {
        let c = counts(&cluster(LbPolicy::Random, &[1, 1]), 2000);
        assert!((850..=1150).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let c = cluster(LbPolicy::LeastRequest, &[1, 1]);
        let busy: Vec<_> = (0..50)
            .map(|_| c.pick().unwrap())
            .filter(|p| p.endpoint().address() == c.endpoints()[0].address())
            .collect();
        assert!(!busy.is_empty());
        // With endpoint 0 holding requests, a pick of two distinct endpoints always takes 1.
        let picks = counts(&c, 200);
        assert!(picks[1] > picks[0], "{picks:?}");
        drop(busy);
        assert_eq!(c.endpoints()[0].in_flight(), 0);
    }

    #[test]
    fn an_empty_cluster_picks_nothing() {
        assert!(cluster(LbPolicy::RoundRobin, &[]).pick().is_none());
    }
}
