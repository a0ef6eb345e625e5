//! [`L4Spec`] → [`L4Routes`]: clusters resolved, weights above 0, server names well formed.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::cluster::Cluster;
use super::super::l4::{L4Routes, ServerName, SniRoute};
use super::super::route::WeightedClusters;
use super::super::spec::{L4Spec, WeightedClusterSpec};
use super::Problems;

pub(super) fn routes(
    spec: &L4Spec,
    at: &str,
    clusters: &HashMap<&str, Arc<Cluster>>,
    problems: &mut Problems,
) -> Option<L4Routes> {
    let before = problems.0.len();
    let mut sni = Vec::new();
    for (i, r) in spec.sni.iter().enumerate() {
        let at = format!("{at} TLS route {i}");
        if r.server_names.is_empty() {
            problems.add(&at, "has no server name");
        }
        let mut names = Vec::new();
        for n in &r.server_names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            let ok = !bare.is_empty()
                && bare.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if ok {
                names.push(ServerName::parse(n));
            } else {
                problems.add(
                    &at,
                    format!("{n:?} is not a server name (name or *.suffix)"),
                );
            }
        }
        if let Some(clusters) = weighted(&r.clusters, &at, clusters, problems) {
            sni.push(SniRoute { names, clusters });
        }
    }
    let default = spec
        .default
        .as_ref()
        .and_then(|d| weighted(d, &format!("{at} default route"), clusters, problems));
    if spec.sni.is_empty() && spec.default.is_none() {
        problems.add(at, "has no route");
    }
    (problems.0.len() == before).then_some(L4Routes { sni, default })
}

fn weighted(
    spec: &[WeightedClusterSpec],
    at: &str,
    clusters: &HashMap<&str, Arc<Cluster>>,
    problems: &mut Problems,
) -> Option<WeightedClusters> {
    let before = problems.0.len();
    let mut out = Vec::new();
    for wc in spec {
        match clusters.get(wc.cluster.as_str()) {
            Some(c) if wc.weight > 0 => out.push((c.clone(), wc.weight)),
            Some(_) => {}
            None => problems.add(at, format!("cluster {:?} does not exist", wc.cluster)),
        }
    }
    if out.is_empty() && problems.0.len() == before {
        problems.add(at, "sends to no cluster (no cluster with a weight above 0)");
    }
    (problems.0.len() == before).then(|| WeightedClusters::new(out))
}
