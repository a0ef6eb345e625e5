//! The shapes of Istio's configuration objects as users write them (camelCase field names,
//! `networking.istio.io` and `security.istio.io`), for serde. Unknown fields are refused.
//!
//! These are the wire shapes only: they carry no meaning until [`crate::model::validate`]
//! checks them and builds the model's typed objects. Every source that reads Istio objects
//! (static files, Kubernetes CRDs) deserialises into these types.

pub mod networking;
pub mod security;

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of an object. Only the fields hostmesh uses; others are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `selector` of policies and `workloadSelector` of DestinationRule: `matchLabels`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `targetRef`/`targetRefs` of policies (Gateway API style reference).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyTargetReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}
