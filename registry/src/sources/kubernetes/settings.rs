//! The `kubernetes:` settings of `control.yaml`, as written ([`RawKubernetesSettings`]) and
//! checked ([`KubernetesSettings`]). Every bad key is reported at once, named
//! `kubernetes.<key>`. The kubeconfig is read here, so a missing file or an unknown context
//! stops the control server at start with the reason instead of leaving a source that can
//! never connect.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::Kubeconfig;
use serde::Deserialize;

use crate::model::types::{Hostname, is_dns1123_label};
use crate::model::{Namespace, TrustDomain};

/// Kubernetes' default cluster domain: services are `<svc>.<ns>.svc.cluster.local`.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// As written in `control.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawKubernetesSettings {
    /// A kubeconfig file; its current context unless `context` is set.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Use the pod's service account (`KUBERNETES_SERVICE_HOST` and
    /// `/var/run/secrets/kubernetes.io/serviceaccount`) instead of a kubeconfig.
    pub in_cluster: Option<bool>,
    /// Only these namespaces [default: all].
    pub namespaces: Option<Vec<String>>,
    /// [default: cluster.local]
    pub cluster_domain: Option<String>,
}

/// Where the credentials come from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A kubeconfig already read (and its context checked).
    Kubeconfig {
        path: PathBuf,
        config: Box<Kubeconfig>,
        context: Option<String>,
    },
    InCluster,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    pub credentials: Credentials,
    /// Empty: every namespace (one cluster-wide watch per kind).
    pub namespaces: Vec<Namespace>,
    pub cluster_domain: String,
    pub trust_domain: TrustDomain,
    /// The longest pause between retries after an error.
    pub max_backoff: Duration,
    /// How often to look again for Istio's CRDs while the API server does not serve them.
    pub crd_recheck: Duration,
}

impl KubernetesSettings {
    /// Settings for a kubeconfig already in memory, with every default (tests and tools).
    pub fn new(config: Kubeconfig, trust_domain: TrustDomain) -> Self {
        Self {
            credentials: Credentials::Kubeconfig {
                path: PathBuf::from("(in memory)"),
                config: Box::new(config),
                context: None,
            },
            namespaces: Vec::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            trust_domain,
            max_backoff: Duration::from_secs(10),
            crd_recheck: Duration::from_secs(60),
        }
    }
}

impl RawKubernetesSettings {
    /// `self` where set, else `base`.
    pub fn over(self, base: RawKubernetesSettings) -> RawKubernetesSettings {
        RawKubernetesSettings {
            kubeconfig: self.kubeconfig.or(base.kubeconfig),
            context: self.context.or(base.context),
            in_cluster: self.in_cluster.or(base.in_cluster),
            namespaces: self.namespaces.or(base.namespaces),
            cluster_domain: self.cluster_domain.or(base.cluster_domain),
        }
    }

    /// Checks every key; problems are pushed to `errors` as `kubernetes.<key>: …`.
    pub fn validate(
        self,
        trust_domain: &TrustDomain,
        errors: &mut Vec<String>,
    ) -> Option<KubernetesSettings> {
        let before = errors.len();
        let mut err = |m: String| errors.push(format!("kubernetes.{m}"));
        let credentials = match (self.kubeconfig, self.in_cluster.unwrap_or(false)) {
            (Some(_), true) => {
                err("inCluster: set either kubeconfig or inCluster: true, not both".into());
                None
            }
            (None, false) => {
                err("kubeconfig: required unless inCluster: true (the source is off when the kubernetes section is absent)".into());
                None
            }
            (None, true) => {
                if self.context.is_some() {
                    err("context: only with a kubeconfig".into());
                }
                Some(Credentials::InCluster)
            }
            (Some(path), false) => match Kubeconfig::read_from(&path) {
                Err(e) => {
                    err(format!("kubeconfig: {}: {e}", path.display()));
                    None
                }
                Ok(config) => {
                    let known: Vec<&str> =
                        config.contexts.iter().map(|c| c.name.as_str()).collect();
                    let wanted = self
                        .context
                        .as_deref()
                        .or(config.current_context.as_deref());
                    match wanted {
                        Some(name) if known.contains(&name) => {}
                        Some(name) => err(format!(
                            "context: {name:?} is not a context of {} (it has: {})",
                            path.display(),
                            known.join(", ")
                        )),
                        None => err(format!(
                            "context: {} has no current-context; name one (it has: {})",
                            path.display(),
                            known.join(", ")
                        )),
                    }
                    Some(Credentials::Kubeconfig {
                        path,
                        config: Box::new(config),
                        context: self.context,
                    })
                }
            },
        };
        let mut namespaces = Vec::new();
        for ns in self.namespaces.unwrap_or_default() {
            match Namespace::new(&ns) {
                Ok(n) if is_dns1123_label(&ns) => namespaces.push(n),
                _ => err(format!("namespaces: {ns:?} is not a namespace name")),
            }
        }
        namespaces.sort();
        namespaces.dedup();
        let cluster_domain = self
            .cluster_domain
            .unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_owned());
        if Hostname::new(&format!("svc.{cluster_domain}")).is_err() || cluster_domain.contains('*')
        {
            err(format!(
                "clusterDomain: {cluster_domain:?} is not a DNS suffix"
            ));
        }
        if errors.len() > before {
            return None;
        }
        Some(KubernetesSettings {
            credentials: credentials?,
            namespaces,
            cluster_domain,
            trust_domain: trust_domain.clone(),
            max_backoff: Duration::from_secs(10),
            crd_recheck: Duration::from_secs(60),
        })
    }
}
