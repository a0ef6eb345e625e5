//! Pure: Istio `ServiceEntry` and `WorkloadEntry` custom resources (as kube's
//! `DynamicObject`s) → the model's validated config objects, and the services they build,
//! with Kubernetes provenance. Each object is validated alone by the same rules as the
//! static registry's files; a bad one is rejected with its reason and the rest go on.

use std::collections::BTreeMap;

use kube::api::DynamicObject;

use crate::merge::Rejection;
use crate::model::istio::ObjectMeta;
use crate::model::istio::networking::{ServiceEntrySpec, WorkloadEntrySpec};
use crate::model::validate::{self, Context, FieldError};
use crate::model::{
    ConfigObject, Kind, Namespace, ObjectKey, Provenance, Service, Snapshot, SourceName,
    TrustDomain,
};

/// The API group of the CRDs.
pub const GROUP: &str = "networking.istio.io";
/// Versions tried, newest first.
pub const VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Validated objects with each one's `resourceVersion`, and the rejected ones.
#[derive(Debug, Default)]
pub struct IstioObjects {
    pub objects: BTreeMap<ObjectKey, (ConfigObject, String)>,
    pub rejected: Vec<Rejection>,
}

impl IstioObjects {
    /// Validates one object of `kind` (ServiceEntry or WorkloadEntry).
    pub fn add(&mut self, kind: Kind, object: &DynamicObject) {
        let m = &object.metadata;
        let name = format!(
            "{} {}/{}",
            kind.as_str(),
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        );
        match config_object(kind, object) {
            Ok(o) => {
                let revision = m.resource_version.clone().unwrap_or_default();
                self.objects.insert(o.key(), (o, revision));
            }
            Err(reason) => self.rejected.push(Rejection {
                source: SourceName::KUBERNETES.to_owned(),
                object: name,
                reason,
            }),
        }
    }

    /// The services the objects build (a `ServiceEntry` selects `WorkloadEntry`s of its
    /// namespace), with Kubernetes provenance, and the objects for the merge.
    pub fn services(
        &self,
        trust_domain: &TrustDomain,
    ) -> (Vec<Service>, BTreeMap<ObjectKey, ConfigObject>) {
        let objects: BTreeMap<ObjectKey, ConfigObject> = self
            .objects
            .iter()
            .map(|(k, (o, _))| (k.clone(), o.clone()))
            .collect();
        let built = Snapshot::build(0, objects.values().cloned(), trust_domain);
        let source = SourceName::new(SourceName::KUBERNETES);
        let provenance = |key: &ObjectKey| {
            let revision = self.objects.get(key).map(|(_, r)| r.as_str()).unwrap_or("");
            Provenance::new(source.clone(), key.to_string(), revision)
        };
        let services = built
            .services()
            .iter()
            .map(|s| {
                let mut s = Service::clone(s);
                s.provenance = provenance(&s.origin);
                for e in &mut s.endpoints {
                    e.provenance = provenance(&e.origin);
                }
                s
            })
            .collect();
        (services, objects)
    }
}

fn config_object(kind: Kind, object: &DynamicObject) -> Result<ConfigObject, String> {
    let m = &object.metadata;
    let meta = ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
    };
    let ctx = Context {
        default_namespace: m
            .namespace
            .as_deref()
            .and_then(|ns| Namespace::new(ns).ok())
            .unwrap_or_else(Namespace::default_namespace),
        ..Context::default()
    };
    let meta = validate::meta(&meta, &ctx).map_err(join)?;
    let spec = object
        .data
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Object(Default::default()));
    match kind {
        Kind::ServiceEntry => {
            let spec: ServiceEntrySpec = decode(spec)?;
            validate::service_entry(meta, &spec, &ctx)
                .map(ConfigObject::ServiceEntry)
                .map_err(join)
        }
        Kind::WorkloadEntry => {
            let spec: WorkloadEntrySpec = decode(spec)?;
            validate::workload_entry(meta, &spec, &ctx)
                .map(ConfigObject::WorkloadEntry)
                .map_err(join)
        }
        other => Err(format!("{} is not read from Kubernetes", other.as_str())),
    }
}

fn decode<T: serde::de::DeserializeOwned>(spec: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        format!("spec.{path}: {}", e.into_inner())
    })
}

fn join(errors: Vec<FieldError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
