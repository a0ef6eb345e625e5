//! Auto-registered workloads in the merge: each [`Registration`] becomes a `WorkloadEntry` of
//! its group, added to the snapshot's objects (the group must exist and run as the
//! certificate's service account, and no other source may define an entry of that name, else
//! the registration is rejected alone), and every kept service whose `ServiceEntry` selects the
//! entry's labels in its namespace gets its endpoints, as Istio's `workloadSelector` selects
//! `WorkloadEntry`s whichever way they were made. The groups and `ServiceEntry`s are looked
//! up in the merged objects, so they may come from any source.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::combine::Kept;
use super::view::{Rejection, SourceView};
use crate::model::config::WorkloadEntry;
use crate::model::snapshot::endpoint;
use crate::model::{ConfigObject, ObjectKey, Registration, Service};

/// Adds the `WorkloadEntry` of every valid registration to `objects` (so the translation
/// sees it like any other: a workload with a service account is meshed) and its endpoints
/// to the services that select it.
pub(super) fn add_registered(
    ordered: &[&SourceView],
    objects: &mut Arc<BTreeMap<ObjectKey, ConfigObject>>,
    kept: &mut [Kept],
    rejected: &mut Vec<Rejection>,
) {
    let mut entries: Vec<(&Registration, WorkloadEntry)> = Vec::new();
    for r in ordered.iter().flat_map(|v| v.registrations.iter()) {
        let group = match objects.get(&r.group) {
            Some(ConfigObject::WorkloadGroup(g)) => Some(g),
            _ => None,
        };
        let reject = |reason: String| Rejection {
            source: r.provenance.source.to_string(),
            object: r.to_string(),
            reason,
        };
        if objects.contains_key(&r.entry) {
            rejected.push(reject(format!(
                "{} is already defined by another source; it is not replaced",
                r.entry
            )));
            continue;
        }
        match r.entry(group) {
            Ok(entry) => entries.push((r, entry)),
            Err(e) => rejected.push(reject(e.to_string())),
        }
    }
    if entries.is_empty() {
        return;
    }
    let mut with_entries = BTreeMap::clone(objects);
    for (r, entry) in &entries {
        with_entries.insert(r.entry.clone(), ConfigObject::WorkloadEntry(entry.clone()));
    }
    *objects = Arc::new(with_entries);
    for k in kept.iter_mut() {
        let Some(ConfigObject::ServiceEntry(se)) = objects.get(&k.service.origin) else {
            continue;
        };
        let Some(selector) = &se.workload_selector else {
            continue;
        };
        let mut added = Vec::new();
        for (r, entry) in &entries {
            if entry.meta.namespace != k.service.namespace
                || !selector.selects(&entry.workload.labels)
            {
                continue;
            }
            added.extend(k.service.ports.iter().filter_map(|port| {
                endpoint(
                    port,
                    &entry.workload,
                    &r.entry,
                    r.identity.trust_domain(),
                    r.provenance.clone(),
                )
            }));
        }
        if added.is_empty() {
            continue;
        }
        let mut service = Service::clone(&k.service);
        service.endpoints.extend(added);
        service
            .endpoints
            .sort_by(|a, b| (a.service_port, &a.address).cmp(&(b.service_port, &b.address)));
        k.service = Arc::new(service);
    }
}
