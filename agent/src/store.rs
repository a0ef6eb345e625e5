//! The last good config under the state directory, for a start while the control server is
//! away.
//!
//! - `xds-resources.pb`: the xDS resources behind the running config, as the control server
//!   sent them: one length-delimited `DeltaDiscoveryResponse` per type (name, version and the
//!   resource's `Any` unchanged), rewritten atomically after every applied push;
//! - `dns-names.json`: the mesh's DNS names (host → addresses), for operators and for the DNS
//!   proxy before any config is applied;
//! - `key.pem` and `cert-chain.pem` are the identity keeper's (`hostmesh_ca::workload`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
use hostmesh_ca::files::{self, FileError};
use hostmesh_proxy::xds::{MeshNames, RawResource, ResourceType};
use prost::Message;

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: not a stored xDS config ({reason}); it will be replaced by the next push")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The state directory's last-good files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn xds_path(&self) -> PathBuf {
        self.dir.join("xds-resources.pb")
    }

    pub fn names_path(&self) -> PathBuf {
        self.dir.join("dns-names.json")
    }

    /// Replaces the stored resources with `resources`, atomically.
    pub fn save_xds(&self, resources: &[RawResource]) -> Result<(), StoreError> {
        files::create_dir(&self.dir, 0o700)?;
        let mut out = Vec::new();
        for ty in ResourceType::ALL {
            let response = DeltaDiscoveryResponse {
                type_url: ty.type_url().to_owned(),
                resources: resources
                    .iter()
                    .filter(|r| r.ty == ty)
                    .map(|r| Resource {
                        name: r.name.clone(),
                        version: r.version.clone(),
                        resource: Some((*r.any).clone()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            if response.resources.is_empty() {
                continue;
            }
            // Encoding into a Vec cannot run out of room.
            let _ = response.encode_length_delimited(&mut out);
        }
        files::write_atomic(&self.xds_path(), &out, files::SECRET_MODE)?;
        Ok(())
    }

    /// The stored resources, or `None` when nothing was stored yet.
    pub fn load_xds(&self) -> Result<Option<Vec<RawResource>>, StoreError> {
        let path = self.xds_path();
        if !path.exists() {
            return Ok(None);
        }
        let bytes = files::read(&path)?;
        decode(&bytes)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt { path, reason })
    }

    /// Replaces the stored DNS names.
    pub fn save_names(&self, names: &MeshNames) -> Result<(), StoreError> {
        files::create_dir(&self.dir, 0o700)?;
        let table: BTreeMap<&str, &[IpAddr]> = names
            .names
            .iter()
            .map(|(n, info)| (n.as_str(), info.ips.as_slice()))
            .collect();
        let path = self.names_path();
        let json = serde_json::to_vec_pretty(&table).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        files::write_atomic(&path, &json, files::PUBLIC_MODE)?;
        Ok(())
    }

    /// The stored DNS names (host → addresses), or `None`.
    pub fn load_names(&self) -> Result<Option<BTreeMap<String, Vec<IpAddr>>>, StoreError> {
        let path = self.names_path();
        if !path.exists() {
            return Ok(None);
        }
        let bytes = files::read(&path)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json { path, source })
    }
}

fn decode(mut bytes: &[u8]) -> Result<Vec<RawResource>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let response = DeltaDiscoveryResponse::decode_length_delimited(&mut bytes)
            .map_err(|e| e.to_string())?;
        let ty = ResourceType::from_url(&response.type_url)
            .ok_or_else(|| format!("unknown type {}", response.type_url))?;
        for r in response.resources {
            let any = r
                .resource
                .ok_or_else(|| format!("{} {:?} has no body", ty, r.name))?;
            out.push(RawResource {
                ty,
                name: r.name,
                version: r.version,
                any: Arc::new(any),
            });
        }
    }
    Ok(out)
}

/// The state directory's identity files exist (a host that joined before).
pub fn has_certificate(dir: &Path) -> bool {
    dir.join("cert-chain.pem").exists()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::util::pack_any;
    use hostmesh_proxy::xds::MeshName;

    use super::*;

    #[test]
    fn resources_round_trip_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        assert!(store.load_xds().unwrap().is_none());
        let any = pack_any(Cluster {
            name: "outbound|80||a.demo".into(),
            ..Default::default()
        });
        let saved = vec![RawResource {
            ty: ResourceType::Cluster,
            name: "outbound|80||a.demo".into(),
            version: "v7".into(),
            any: Arc::new(any),
        }];
        store.save_xds(&saved).unwrap();
        assert_eq!(store.load_xds().unwrap().unwrap(), saved);
    }

    #[test]
    fn a_corrupt_file_is_reported_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.xds_path(), b"\x05abc").unwrap();
        let err = store.load_xds().unwrap_err().to_string();
        assert!(err.contains("not a stored xDS config"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut names = MeshNames::default();
        names.names.insert(
            "bill.demo.svc.cluster.local".into(),
            MeshName {
                ips: vec!["240.240.0.1".parse().unwrap()],
                shortname: None,
                namespace: None,
                registry: String::new(),
            },
        );
        store.save_names(&names).unwrap();
        let loaded = store.load_names().unwrap().unwrap();
        assert_eq!(
            loaded["bill.demo.svc.cluster.local"],
            vec!["240.240.0.1".parse::<IpAddr>().unwrap()]
        );
    }
}
