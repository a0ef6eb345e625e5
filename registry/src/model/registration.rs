//! A workload that registered itself: an agent connected with `AUTO_REGISTER_GROUP`, as the
//! auto-registration source hands it to the merge. Pure data, validated when built: the merge
//! turns it into a `WorkloadEntry` of its group ([`Registration::entry`]) once it knows the
//! group. No I/O.

use std::fmt;
use std::net::IpAddr;

use super::config::{Address, Kind, Meta, ObjectKey, Workload, WorkloadEntry, WorkloadGroup};
use super::provenance::Provenance;
use super::types::{
    Identity, InvalidValue, Labels, Locality, Namespace, Network, ObjectName, ServiceAccount,
};

/// One connected (or recently connected) agent that asked to join a `WorkloadGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The `WorkloadEntry` this registration becomes (`<group>-<ip>`, in the certificate's
    /// namespace).
    pub entry: ObjectKey,
    /// The `WorkloadGroup` named by the node, in the certificate's namespace.
    pub group: ObjectKey,
    pub ip: IpAddr,
    /// The node's labels (they win over the group template's).
    pub labels: Labels,
    pub network: Option<Network>,
    pub locality: Option<Locality>,
    /// What the node's certificate proves.
    pub identity: Identity,
    /// The Envoy node id, for operators.
    pub node: String,
    pub provenance: Provenance,
}

/// Why a registration does not become a `WorkloadEntry`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("{group} does not exist")]
    NoGroup { group: ObjectKey },
    #[error(
        "{group} runs as service account {expected:?} but the node's certificate proves {identity}"
    )]
    ServiceAccount {
        group: ObjectKey,
        expected: String,
        identity: Identity,
    },
}

/// What a node announced, before validation.
#[derive(Debug, Clone, Copy)]
pub struct NodeClaim<'a> {
    pub group: &'a str,
    pub ip: IpAddr,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub network: Option<&'a str>,
    pub locality: Option<&'a str>,
    pub identity: &'a Identity,
    pub node: &'a str,
}

impl Registration {
    /// Validates what a node announced; the entry is named `<group>-<ip>` (Istio's rule, with
    /// `.` and `:` of the address as `-`).
    pub fn new(claim: NodeClaim<'_>, provenance: Provenance) -> Result<Self, InvalidValue> {
        let namespace = Namespace::new(claim.identity.namespace())?;
        let group = ObjectName::new(claim.group)?;
        let ip_part: String = claim
            .ip
            .to_string()
            .chars()
            .map(|c| if c == '.' || c == ':' { '-' } else { c })
            .collect();
        let entry = ObjectName::new(&format!("{}-{ip_part}", claim.group))?;
        Ok(Self {
            entry: ObjectKey {
                kind: Kind::WorkloadEntry,
                namespace: namespace.clone(),
                name: entry,
            },
            group: ObjectKey {
                kind: Kind::WorkloadGroup,
                namespace,
                name: group,
            },
            ip: claim.ip,
            labels: Labels::new(claim.labels.clone())?,
            network: claim.network.map(Network::new).transpose()?,
            locality: claim.locality.map(Locality::parse).transpose()?,
            identity: claim.identity.clone(),
            node: claim.node.to_owned(),
            provenance,
        })
    }

    /// The `WorkloadEntry` made from `group`'s template (Istio's rule): the node's address,
    /// the template's ports, weight and service account, labels of the node over the group's
    /// `metadata` over the template's, the node's network and locality when given. Refused when the template's service account (Istio's
    /// `default` when unset) is not the certificate's.
    pub fn entry(&self, group: Option<&WorkloadGroup>) -> Result<WorkloadEntry, RegistrationError> {
        let Some(group) = group else {
            return Err(RegistrationError::NoGroup {
                group: self.group.clone(),
            });
        };
        let template = &group.template;
        let account = template
            .service_account
            .clone()
            .unwrap_or_else(ServiceAccount::default_account);
        if account.as_str() != self.identity.service_account() {
            return Err(RegistrationError::ServiceAccount {
                group: self.group.clone(),
                expected: account.as_str().to_owned(),
                identity: self.identity.clone(),
            });
        }
        Ok(WorkloadEntry {
            meta: Meta {
                name: self.entry.name.clone(),
                namespace: self.entry.namespace.clone(),
                labels: group.labels.clone(),
                annotations: group.annotations.clone(),
            },
            workload: Workload {
                address: Some(Address::Ip(self.ip)),
                ports: template.ports.clone(),
                labels: self
                    .labels
                    .merged_under(&group.labels.merged_under(&template.labels)),
                network: self.network.clone().or_else(|| template.network.clone()),
                locality: self.locality.clone().or_else(|| template.locality.clone()),
                weight: template.weight,
                service_account: Some(account),
            },
        })
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (node {})", self.entry, self.node)
    }
}
