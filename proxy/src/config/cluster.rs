//! Clusters: endpoints, their weights and priorities, the load-balancing policy and its state,
//! and how to secure connections to them.
//!
//! Priorities (Envoy's `LocalityLbEndpoints.priority`, set by the control server for locality
//! failover): a request goes to the lowest priority that has an endpoint not ejected by outlier
//! detection. Envoy spreads load over priorities by their health with an overprovisioning
//! factor of 1.4; the proxy moves to the next priority only when a level has no healthy
//! endpoint left (documented in `proxy/README.md`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use rand::Rng;

use super::LbPolicy;
use super::hash_lb::{HashTable, Maglev, Ring};
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
    priority: u32,
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
            priority: 0,
        }
    }

    /// Sets the endpoint's priority (0 is the highest).
    pub(crate) fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    pub fn priority(&self) -> u32 {
        self.priority
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

/// The endpoints of one priority.
#[derive(Debug)]
struct Level {
    /// Indices into the cluster's endpoints.
    members: Vec<usize>,
    /// Running sum of weights, for weighted picks by binary search.
    cumulative: Vec<u64>,
    /// The consistent-hash table, with `RING_HASH` and `MAGLEV`.
    table: Option<HashTable>,
}

/// A cluster: its endpoints (possibly none, Envoy's "no healthy upstream"), each with a weight
/// above zero, grouped by priority.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    endpoints: Vec<Arc<Endpoint>>,
    /// By priority, highest (0) first; empty priorities are left out.
    levels: Vec<Level>,
    lb: LbPolicy,
    tls: UpstreamTls,
    connect_timeout: Duration,
    http2: bool,
    next: AtomicU64,
    breaker: Breaker,
    outlier: Option<Detector>,
    max_requests_per_connection: Option<u32>,
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
        let mut priorities: Vec<u32> = endpoints.iter().map(|e| e.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let levels = priorities
            .into_iter()
            .map(|p| level(&endpoints, p, lb))
            .collect();
        Self {
            name,
            endpoints: endpoints.into_iter().map(Arc::new).collect(),
            levels,
            lb,
            tls,
            connect_timeout,
            http2,
            next: AtomicU64::new(0),
            breaker: Breaker::new(Thresholds::default(), http2),
            outlier: None,
            max_requests_per_connection: None,
            fallback: None,
        }
    }

    /// Retires upstream connections after `max` requests each.
    pub(crate) fn with_max_requests_per_connection(mut self, max: Option<u32>) -> Self {
        self.max_requests_per_connection = max;
        self
    }

    /// Requests one upstream connection carries before it is retired.
    pub fn max_requests_per_connection(&self) -> Option<u32> {
        self.max_requests_per_connection
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

    /// Chooses an endpoint for one request by the cluster's policy; `None` when the cluster
    /// has no endpoints (or, with outlier detection, none that is not ejected).
    pub fn pick(&self) -> Option<Picked> {
        self.pick_hashed(None)
    }

    /// [`Cluster::pick`] with the request's hash, for `RING_HASH` and `MAGLEV` (a request
    /// without one gets a random endpoint of the level, as in Envoy).
    pub fn pick_hashed(&self, hash: Option<u64>) -> Option<Picked> {
        let level = self.level()?;
        let chosen = match (&level.table, hash) {
            (Some(table), Some(hash)) => table
                .candidates(hash)
                .filter_map(|i| self.endpoints.get(i))
                .find(|e| !self.is_ejected(e))?,
            _ => {
                let mut chosen = self.pick_by_policy(level);
                if self.outlier.is_some() && self.is_ejected(chosen) {
                    // Another pick by the policy, then any endpoint still admitted (Istio
                    // disables Envoy's panic routing with outlier detection).
                    chosen = self.pick_by_policy(level);
                    if self.is_ejected(chosen) {
                        chosen = level
                            .members
                            .iter()
                            .filter_map(|i| self.endpoints.get(*i))
                            .find(|e| !self.is_ejected(e))?;
                    }
                }
                chosen
            }
        };
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Picked(chosen.clone()))
    }

    /// The highest priority with an endpoint that is not ejected (the highest at all without
    /// outlier detection).
    fn level(&self) -> Option<&Level> {
        if self.outlier.is_none() {
            return self.levels.first();
        }
        self.levels.iter().find(|l| {
            l.members
                .iter()
                .filter_map(|i| self.endpoints.get(*i))
                .any(|e| !self.is_ejected(e))
        })
    }

    fn pick_by_policy(&self, level: &Level) -> &Arc<Endpoint> {
        let by_ticket = |t: u64| &self.endpoints[level.by_ticket(t)];
        match self.lb {
            LbPolicy::RoundRobin => by_ticket(self.next.fetch_add(1, Ordering::Relaxed)),
            LbPolicy::Random | LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
                by_ticket(rand::rng().random())
            }
            LbPolicy::LeastRequest => {
                let mut rng = rand::rng();
                let a = by_ticket(rng.random());
                let b = by_ticket(rng.random());
                // Compare in_flight/weight without division.
                let load = |e: &Endpoint| e.in_flight() as u64 * u64::from(other(e, a, b).weight);
                if load(b) < load(a) { b } else { a }
            }
        }
    }
}

/// The level of `priority`: its members, their cumulative weights and, for hashing policies,
/// the table.
fn level(endpoints: &[Endpoint], priority: u32, lb: LbPolicy) -> Level {
    let members: Vec<usize> = (0..endpoints.len())
        .filter(|i| endpoints[*i].priority == priority)
        .collect();
    let mut total = 0u64;
    let cumulative = members
        .iter()
        .map(|i| {
            total += u64::from(endpoints[*i].weight);
            total
        })
        .collect();
    let weighted: Vec<(usize, SocketAddr, u32)> = members
        .iter()
        .map(|i| (*i, endpoints[*i].address, endpoints[*i].weight))
        .collect();
    let table = match lb {
        LbPolicy::RingHash { min_ring_size } => {
            Some(HashTable::Ring(Ring::new(&weighted, min_ring_size)))
        }
        LbPolicy::Maglev { table_size } => {
            Some(HashTable::Maglev(Maglev::new(&weighted, table_size)))
        }
        _ => None,
    };
    Level {
        members,
        cumulative,
        table,
    }
}

impl Level {
    /// The endpoint index whose weight range holds `ticket` (taken modulo the total weight).
    /// A level always has a member.
    fn by_ticket(&self, ticket: u64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0).max(1);
        let t = ticket % total;
        let i = self.cumulative.partition_point(|&c| c <= t);
        self.members[i.min(self.members.len() - 1)]
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
    use crate::config::resilience::OutlierSettings;

    /// Plaintext endpoint `10.0.0.<i + 1>:80`.
    fn endpoint(i: usize, weight: u32) -> Endpoint {
        let addr = format!("10.0.0.{}:80", i + 1).parse().unwrap();
        Endpoint::new(addr, weight, BTreeMap::new(), UpstreamTls::Plaintext)
    }

    fn plaintext_cluster(lb: LbPolicy, endpoints: Vec<Endpoint>) -> Cluster {
        let timeout = Duration::from_secs(1);
        Cluster::new(
            "c".into(),
            endpoints,
            lb,
            UpstreamTls::Plaintext,
            timeout,
            false,
        )
    }

    fn cluster(lb: LbPolicy, weights: &[u32]) -> Cluster {
        let eps = weights.iter().enumerate().map(|(i, w)| endpoint(i, *w));
        plaintext_cluster(lb, eps.collect())
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

    /// Endpoints `(priority)` each, outlier detection ejecting after one 5xx (every endpoint
    /// may be ejected).
    fn prioritised(lb: LbPolicy, priorities: &[u32]) -> Cluster {
        let eps = priorities
            .iter()
            .enumerate()
            .map(|(i, p)| endpoint(i, 1).with_priority(*p));
        let outlier = OutlierSettings {
            consecutive_5xx: Some(1),
            consecutive_gateway: None,
            base_ejection_time: Duration::from_secs(60),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 100,
        };
        plaintext_cluster(lb, eps.collect()).with_resilience(Thresholds::default(), Some(outlier))
    }

    fn eject(c: &Cluster, index: usize) {
        let picked = Picked({
            let e = c.endpoints()[index].clone();
            e.in_flight.fetch_add(1, Ordering::Relaxed);
            e
        });
        let failed = AttemptOutcome::Response(http::StatusCode::INTERNAL_SERVER_ERROR, None);
        c.report(&picked, failed);
        assert!(c.is_ejected(&c.endpoints()[index]));
    }

    #[test]
    fn the_highest_priority_with_a_healthy_endpoint_takes_every_request() {
        let c = prioritised(LbPolicy::RoundRobin, &[0, 0, 1, 2]);
        assert_eq!(counts(&c, 100), [50, 50, 0, 0]);
        eject(&c, 0);
        assert_eq!(counts(&c, 100), [0, 100, 0, 0]);
        eject(&c, 1);
        assert_eq!(
            counts(&c, 100),
            [0, 0, 100, 0],
            "priority 1 once 0 is all ejected"
        );
        eject(&c, 2);
        assert_eq!(counts(&c, 100), [0, 0, 0, 100]);
        eject(&c, 3);
        assert!(c.pick().is_none(), "no healthy upstream");
    }

    #[test]
    fn a_hash_sticks_to_one_endpoint_and_moves_when_it_is_ejected() {
        for lb in [
            LbPolicy::RingHash {
                min_ring_size: 1024,
            },
            LbPolicy::Maglev { table_size: 65_537 },
        ] {
            let c = prioritised(lb, &[0, 0, 0]);
            let owner = |h: u64| c.pick_hashed(Some(h)).unwrap().endpoint().address();
            let mut owners = std::collections::BTreeSet::new();
            for k in 0..300u64 {
                let h = super::super::hash_lb::hash64(&k.to_le_bytes());
                assert_eq!(owner(h), owner(h));
                owners.insert(owner(h));
            }
            assert_eq!(owners.len(), 3, "keys spread over every endpoint");
            let h = 7;
            let first = owner(h);
            let i = c
                .endpoints()
                .iter()
                .position(|e| e.address() == first)
                .unwrap();
            eject(&c, i);
            let second = owner(h);
            assert_ne!(second, first);
            assert_eq!(owner(h), second, "the moved key stays put");
        }
    }

    #[test]
    fn an_empty_cluster_picks_nothing() {
        assert!(cluster(LbPolicy::RoundRobin, &[]).pick().is_none());
    }
}
