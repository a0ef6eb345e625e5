//! Outbound chains → L4 destinations: the chains of one set of addresses where any is a TLS
//! route (`server_names`) or a weighted TCP split become one [`L4Spec`], as Envoy would choose
//! among them per connection (server name, else the chain without names). Other chains stay
//! one destination each.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::super::wire::Problems;
use super::listener::{OutboundChain, Target};
use crate::config::spec::{L4Spec, SniRouteSpec, WeightedClusterSpec};

/// A destination: one plain chain, or the L4 routes of several.
#[derive(Debug)]
pub enum Destination<'a> {
    Chain(&'a OutboundChain),
    L4 {
        /// The chain that names the destination: the one without server names, else the first.
        named: &'a OutboundChain,
        spec: L4Spec,
    },
}

impl Destination<'_> {
    /// The clusters an L4 destination sends to.
    pub fn clusters(spec: &L4Spec) -> impl Iterator<Item = &str> {
        spec.sni
            .iter()
            .flat_map(|r| &r.clusters)
            .chain(spec.default.iter().flatten())
            .map(|c| c.cluster.as_str())
    }
}

fn is_l4(c: &OutboundChain) -> bool {
    !c.server_names.is_empty() || matches!(c.target, Target::TcpSplit(_))
}

pub fn destinations<'a>(chains: &'a [OutboundChain], p: &mut Problems<'_>) -> Vec<Destination<'a>> {
    let mut groups: BTreeMap<Vec<SocketAddr>, Vec<&OutboundChain>> = BTreeMap::new();
    let mut order = Vec::new();
    for c in chains {
        let mut key = c.addresses.clone();
        key.sort();
        let group = groups.entry(key.clone()).or_default();
        if group.is_empty() {
            order.push(key);
        }
        group.push(c);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(group) = groups.remove(&key) else {
            continue;
        };
        if !group.iter().any(|c| is_l4(c)) {
            out.extend(group.into_iter().map(Destination::Chain));
            continue;
        }
        if let Some(d) = l4(&group, p) {
            out.push(d);
        }
    }
    out
}

fn l4<'a>(group: &[&'a OutboundChain], p: &mut Problems<'_>) -> Option<Destination<'a>> {
    let before = p.count();
    let mut spec = L4Spec::default();
    let mut named = None;
    for c in group {
        let clusters = match &c.target {
            Target::Tcp(name) => vec![WeightedClusterSpec {
                cluster: name.clone(),
                weight: 1,
            }],
            Target::TcpSplit(split) => split
                .iter()
                .map(|(cluster, weight)| WeightedClusterSpec {
                    cluster: cluster.clone(),
                    weight: *weight,
                })
                .collect(),
            _ => {
                p.add(format!(
                    "filter chain {:?}: an HTTP chain shares its addresses with TLS or weighted TCP chains",
                    c.name
                ));
                continue;
            }
        };
        if c.server_names.is_empty() {
            if spec.default.is_some() {
                p.add(format!(
                    "filter chain {:?}: a second chain without server_names for the same addresses",
                    c.name
                ));
            }
            spec.default = Some(clusters);
            named = Some(*c);
        } else {
            spec.sni.push(SniRouteSpec {
                server_names: c.server_names.clone(),
                clusters,
            });
        }
    }
    let named = named.or(group.first().copied())?;
    (p.count() == before).then_some(Destination::L4 { named, spec })
}
