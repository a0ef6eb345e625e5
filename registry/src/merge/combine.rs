//! [`merge`]: the views of every source → one snapshot, conflicts and rejections.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::registered::add_registered;
use super::view::{Conflict, ConflictKind, MergeOutcome, Rejection, SourceView};
use crate::model::config::ServicePort;
use crate::model::{ConfigObject, ObjectKey, Service, Snapshot};

/// Merges the views (in any order) into a snapshot of `version`.
///
/// - Views are taken by [`Precedence`](super::Precedence), then source name: the result
///   does not depend on the order they are given in.
/// - A host name is owned by the first view that defines it; the same host from a later
///   view is dropped and reported ([`ConflictKind::Host`]). One source may define a host in
///   several namespaces, as Istio allows.
/// - A declared address claimed by two hosts stays with the host of the higher source
///   (then the smaller host name); the other host loses that address
///   ([`ConflictKind::Address`]).
/// - A config object defined by two sources is taken from the higher one
///   ([`ConflictKind::Object`]).
/// - A service without ports is refused alone, as is an endpoint for a port its service
///   does not declare ([`Rejection`]).
/// - Registrations (auto-registered workloads) become endpoints of the services whose
///   `ServiceEntry` selects them; one whose group is missing or runs as another service
///   account is refused alone (see `registered`).
///
/// Services nobody changed are shared with the views, not copied.
pub fn merge(version: u64, views: &[SourceView]) -> MergeOutcome {
    let mut ordered: Vec<&SourceView> = views.iter().collect();
    ordered.sort_by(|a, b| (a.precedence, &a.source).cmp(&(b.precedence, &b.source)));
    let mut conflicts = Vec::new();
    let mut rejected: Vec<Rejection> = ordered
        .iter()
        .flat_map(|v| v.rejected.iter().cloned())
        .collect();
    let mut objects = merge_objects(&ordered, &mut conflicts);
    let mut services = own_hosts(&ordered, &mut conflicts, &mut rejected);
    add_registered(&ordered, &mut objects, &mut services, &mut rejected);
    settle_addresses(&mut services, &mut conflicts);
    conflicts.sort();
    rejected.sort();
    MergeOutcome {
        snapshot: Snapshot::assemble(
            version,
            services.into_iter().map(|k| k.service).collect(),
            objects,
        ),
        conflicts,
        rejected,
    }
}

/// A service kept, and the rank of its view in the ordered list.
pub(super) struct Kept {
    rank: usize,
    pub(super) service: Arc<Service>,
}

fn merge_objects(
    ordered: &[&SourceView],
    conflicts: &mut Vec<Conflict>,
) -> Arc<BTreeMap<ObjectKey, ConfigObject>> {
    let with: Vec<&&SourceView> = ordered.iter().filter(|v| !v.objects.is_empty()).collect();
    match with.as_slice() {
        [] => Arc::default(),
        [only] => only.objects.clone(),
        _ => {
            let mut out: BTreeMap<ObjectKey, ConfigObject> = BTreeMap::new();
            let mut from: BTreeMap<ObjectKey, &str> = BTreeMap::new();
            for view in with {
                for (key, object) in view.objects.iter() {
                    if let Some(first) = from.get(key) {
                        conflicts.push(Conflict {
                            kind: ConflictKind::Object,
                            subject: key.to_string(),
                            winner_source: (*first).to_owned(),
                            winner_object: key.to_string(),
                            loser_source: view.source.to_string(),
                            loser_object: key.to_string(),
                            detail: String::new(),
                        });
                        continue;
                    }
                    from.insert(key.clone(), view.source.as_str());
                    out.insert(key.clone(), object.clone());
                }
            }
            Arc::new(out)
        }
    }
}

fn own_hosts(
    ordered: &[&SourceView],
    conflicts: &mut Vec<Conflict>,
    rejected: &mut Vec<Rejection>,
) -> Vec<Kept> {
    let total = ordered.iter().map(|v| v.services.len()).sum();
    let mut owner: HashMap<&str, (usize, &Arc<Service>)> = HashMap::with_capacity(total);
    let mut kept = Vec::with_capacity(total);
    for (rank, view) in ordered.iter().enumerate() {
        for service in view.services.iter() {
            let host = service.hostname.as_str();
            if let Some((first_rank, first)) = owner.get(host)
                && *first_rank != rank
            {
                conflicts.push(Conflict {
                    kind: ConflictKind::Host,
                    subject: host.to_owned(),
                    winner_source: first.provenance.source.to_string(),
                    winner_object: first.provenance.object.to_string(),
                    loser_source: service.provenance.source.to_string(),
                    loser_object: service.provenance.object.to_string(),
                    detail: port_difference(&first.ports, &service.ports),
                });
                continue;
            }
            let original = service;
            let Some(service) = checked(service, rejected) else {
                continue;
            };
            owner.entry(host).or_insert((rank, original));
            kept.push(Kept { rank, service });
        }
    }
    kept
}

/// The service as it may enter the snapshot: without ports it is refused; endpoints for
/// ports it does not declare are dropped, each reported.
fn checked(service: &Arc<Service>, rejected: &mut Vec<Rejection>) -> Option<Arc<Service>> {
    let reject = |object: &str, reason: String| Rejection {
        source: service.provenance.source.to_string(),
        object: object.to_owned(),
        reason,
    };
    if service.ports.is_empty() {
        rejected.push(reject(
            &service.provenance.object,
            format!("service {} declares no port", service.hostname),
        ));
        return None;
    }
    let declared =
        |e: &crate::model::Endpoint| service.ports.iter().any(|p| p.number == e.service_port);
    if service.endpoints.iter().all(declared) {
        return Some(service.clone());
    }
    let mut fixed = Service::clone(service);
    fixed.endpoints.retain(|e| {
        let ok = declared(e);
        if !ok {
            rejected.push(reject(
                &e.provenance.object,
                format!(
                    "endpoint {}:{} is for port {}, which {} does not declare",
                    e.address, e.port, e.service_port, service.hostname
                ),
            ));
        }
        ok
    });
    Some(Arc::new(fixed))
}

fn port_difference(winner: &[ServicePort], loser: &[ServicePort]) -> String {
    let show = |ports: &[ServicePort]| {
        ports
            .iter()
            .map(|p| format!("{}/{}", p.number, p.protocol.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (w, l) = (show(winner), show(loser));
    if w == l {
        format!("both declare ports {w}")
    } else {
        format!("ports {w} kept, ports {l} not used")
    }
}

fn settle_addresses(kept: &mut [Kept], conflicts: &mut Vec<Conflict>) {
    let mut order: Vec<usize> = (0..kept.len())
        .filter(|&i| !kept[i].service.addresses.is_empty())
        .collect();
    if order.is_empty() {
        return;
    }
    order.sort_by(|&a, &b| {
        let key = |k: &Kept| {
            (
                k.rank,
                k.service.hostname.clone(),
                k.service.namespace.clone(),
            )
        };
        key(&kept[a]).cmp(&key(&kept[b]))
    });
    let mut claims: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for i in order {
        for address in &kept[i].service.addresses {
            match claims.get(address) {
                Some(&first) if kept[first].service.hostname != kept[i].service.hostname => {
                    let (w, l) = (&kept[first].service, &kept[i].service);
                    conflicts.push(Conflict {
                        kind: ConflictKind::Address,
                        subject: address.clone(),
                        winner_source: w.provenance.source.to_string(),
                        winner_object: format!("{} ({})", w.hostname, w.provenance.object),
                        loser_source: l.provenance.source.to_string(),
                        loser_object: format!("{} ({})", l.hostname, l.provenance.object),
                        detail: format!(
                            "{address} stays with {}; {} does not use it",
                            w.hostname, l.hostname
                        ),
                    });
                    lost.entry(i).or_default().insert(address.clone());
                }
                Some(_) => {}
                None => {
                    claims.insert(address.clone(), i);
                }
            }
        }
    }
    for (i, addresses) in lost {
        let mut fixed = Service::clone(&kept[i].service);
        fixed.addresses.retain(|a| !addresses.contains(a));
        kept[i].service = Arc::new(fixed);
    }
}
