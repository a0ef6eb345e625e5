//! The state of the running Kubernetes source: the objects each watch keeps, the health of
//! the watches, and the view built from them ([`State::rebuild`] is pure: objects in, view
//! out).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use tracing::warn;

use super::convert::{SERVICE_NAME_LABEL, convert};
use super::istio::IstioObjects;
use super::settings::KubernetesSettings;
use crate::merge::{Precedence, Rejection, SourceView};
use crate::model::{ConfigObject, Kind, ObjectKey, Service, SourceName};
use crate::sources::health::{SourceStatus, now_rfc3339};

/// What the source publishes.
#[derive(Debug, Clone)]
pub struct KubernetesView {
    pub view: SourceView,
    pub status: SourceStatus,
}

/// (namespace, name)
pub(super) type Key = (String, String);

#[derive(Debug, Default)]
struct Built {
    services: Vec<Arc<Service>>,
    objects: Arc<BTreeMap<ObjectKey, ConfigObject>>,
    rejected: Vec<Rejection>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) services: BTreeMap<Key, KubeService>,
    pub(super) slices: BTreeMap<Key, EndpointSlice>,
    pub(super) service_entries: BTreeMap<Key, DynamicObject>,
    pub(super) workload_entries: BTreeMap<Key, DynamicObject>,
    /// Watches that have not completed their first list.
    pub(super) unsynced: BTreeSet<String>,
    /// Watch → its last error, while it fails.
    pub(super) failing: BTreeMap<String, String>,
    pub(super) last_error: Option<(String, String)>,
    last_update: Option<String>,
    revision: u64,
    pub(super) crds: Option<bool>,
    built: Built,
}

impl State {
    pub(super) fn rebuild(&mut self, settings: &KubernetesSettings) -> bool {
        let mut by_service: BTreeMap<Key, Vec<&EndpointSlice>> = BTreeMap::new();
        for ((ns, _), slice) in &self.slices {
            if let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                by_service
                    .entry((ns.clone(), svc.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut services = Vec::new();
        let mut rejected = Vec::new();
        for (key, svc) in &self.services {
            let slices = by_service.get(key).map(Vec::as_slice).unwrap_or_default();
            let c = convert(
                svc,
                slices,
                &settings.cluster_domain,
                &settings.trust_domain,
            );
            services.extend(c.service.map(Arc::new));
            rejected.extend(c.rejected);
        }
        let mut istio = IstioObjects::default();
        for o in self.service_entries.values() {
            istio.add(Kind::ServiceEntry, o);
        }
        for o in self.workload_entries.values() {
            istio.add(Kind::WorkloadEntry, o);
        }
        let (entries, objects) = istio.services(&settings.trust_domain);
        services.extend(entries.into_iter().map(Arc::new));
        rejected.extend(istio.rejected);
        rejected.sort();
        let changed = services != self.built.services
            || rejected != self.built.rejected
            || *self.built.objects != objects;
        if changed {
            for r in rejected.iter().filter(|r| !self.built.rejected.contains(r)) {
                warn!(object = %r.object, reason = %r.reason, "Kubernetes object rejected");
            }
            self.built = Built {
                services,
                objects: Arc::new(objects),
                rejected,
            };
            self.revision += 1;
            self.last_update = Some(now_rfc3339());
        }
        changed
    }

    pub(super) fn view(&self) -> KubernetesView {
        let b = &self.built;
        let note = match self.crds {
            Some(false) => Some(
                "Istio's CRDs (networking.istio.io) are not served: Services and EndpointSlices only"
                    .to_owned(),
            ),
            _ => None,
        };
        let status = SourceStatus {
            name: SourceName::KUBERNETES.to_owned(),
            healthy: self.unsynced.is_empty() && self.failing.is_empty(),
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: self.last_error.as_ref().map(|(_, at)| at.clone()),
            last_update: self.last_update.clone(),
            revision: self.revision,
            services: b.services.len(),
            endpoints: b.services.iter().map(|s| s.endpoints.len()).sum(),
            objects: b.objects.len(),
            rejected: b.rejected.len(),
            note,
        };
        let view = SourceView {
            revision: self.revision,
            services: b.services.clone().into(),
            objects: b.objects.clone(),
            rejected: b.rejected.clone().into(),
            ..SourceView::empty(
                SourceName::new(SourceName::KUBERNETES),
                Precedence::Kubernetes,
            )
        };
        KubernetesView { view, status }
    }
}
