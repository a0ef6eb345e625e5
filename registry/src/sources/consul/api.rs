//! Consul's JSON, as the two endpoints used return it (field names are Consul's). Only
//! the fields hostmesh reads; unknown fields are ignored, as Consul adds some in new
//! versions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/catalog/services`: service name → tags.
pub type CatalogServices = BTreeMap<String, Vec<String>>;

/// One entry of `GET /v1/health/service/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    pub node: Node,
    pub service: AgentService,
    #[serde(default)]
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(default, rename = "ID")]
    pub id: String,
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub port: u32,
    #[serde(default)]
    pub weights: Option<Weights>,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    #[serde(default, rename = "ServiceID")]
    pub service_id: String,
}

/// Consul sends `null` for empty maps and lists in some versions.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
