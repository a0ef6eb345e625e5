//! `hostmesh-control run`'s settings: defaults, then `/etc/hostmesh/control.yaml`, then
//! environment variables and flags. Every bad setting is reported at once, naming the key
//! (and the line, for the file); what comes out cannot be invalid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostmesh_ca::TrustDomain;
use hostmesh_registry::sources::consul::ConsulSettings;
use hostmesh_registry::sources::consul::settings::RawConsulSettings;
use hostmesh_registry::sources::kubernetes::{KubernetesSettings, RawKubernetesSettings};
use hostmesh_registry::xds::OutboundPolicy;
use serde::Deserialize;

use crate::{DEFAULT_CA_DIR, DEFAULT_STATE_DIR};

pub const DEFAULT_CONFIG: &str = "/etc/hostmesh/control.yaml";

/// The validated settings.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    pub status_listen: SocketAddr,
    pub ca_dir: PathBuf,
    pub state_dir: PathBuf,
    pub trust_domain: Option<TrustDomain>,
    pub max_cert_ttl: Duration,
    pub server_names: Vec<String>,
    pub registry_dir: PathBuf,
    pub outbound_traffic_policy: OutboundPolicy,
    /// The Consul source, when configured. Its trust domain is the CA's unless set.
    pub consul: Option<ConsulSettings>,
    /// The Kubernetes source, when configured. Its trust domain is the CA's unless set.
    pub kubernetes: Option<KubernetesSettings>,
}

/// The settings as written in the file or given as flags: text, checked by [`Settings::validate`].
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Address of the xDS and certificate port [default: 0.0.0.0:15012].
    #[arg(long, env = "HOSTMESH_LISTEN")]
    pub listen: Option<String>,
    /// Address of the status API and metrics [default: 0.0.0.0:15014].
    #[arg(long, env = "HOSTMESH_STATUS_LISTEN")]
    pub status_listen: Option<String>,
    /// CA directory (Istio plug-in layout) [default: /var/lib/hostmesh/ca].
    #[arg(long, env = "HOSTMESH_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Join token key and spent-token record [default: /var/lib/hostmesh/control].
    #[arg(long, env = "HOSTMESH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Trust domain [default: the CA's].
    #[arg(long, env = "HOSTMESH_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Longest workload certificate lifetime [default: 24h].
    #[arg(long)]
    pub max_cert_ttl: Option<String>,
    /// DNS names for the server certificate besides its SPIFFE ID (repeatable).
    #[arg(long = "server-name")]
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Static registry folder [default: /etc/hostmesh/registry.d].
    #[arg(long, env = "HOSTMESH_REGISTRY_DIR")]
    pub registry_dir: Option<PathBuf>,
    /// ALLOW_ANY or REGISTRY_ONLY [default: ALLOW_ANY].
    #[arg(long)]
    pub outbound_traffic_policy: Option<String>,
    /// The Consul source (file only): address, token, datacenter, caFile, certFile,
    /// keyFile, tag, domainSuffix, namespace, wait.
    #[arg(skip)]
    #[serde(default)]
    pub consul: Option<RawConsulSettings>,
    /// The Kubernetes source (file only): kubeconfig, context, inCluster, namespaces,
    /// clusterDomain. Absent: no Kubernetes source.
    #[arg(skip)]
    #[serde(default)]
    pub kubernetes: Option<RawKubernetesSettings>,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl Settings {
    /// Reads `path`; a missing file is fine unless `required`.
    pub fn from_file(path: &Path, required: bool) -> Result<Self, ConfigErrors> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default());
            }
            Err(e) => return Err(ConfigErrors(vec![format!("{}: {e}", path.display())])),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let message = e.without_snippet().to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_owned(),
                None => message,
            };
            ConfigErrors(vec![format!("{}:{line}: {message}", path.display())])
        })
    }

    /// `self` where set, else `base`.
    pub fn over(self, base: Settings) -> Settings {
        Settings {
            listen: self.listen.or(base.listen),
            status_listen: self.status_listen.or(base.status_listen),
            ca_dir: self.ca_dir.or(base.ca_dir),
            state_dir: self.state_dir.or(base.state_dir),
            trust_domain: self.trust_domain.or(base.trust_domain),
            max_cert_ttl: self.max_cert_ttl.or(base.max_cert_ttl),
            server_names: if self.server_names.is_empty() {
                base.server_names
            } else {
                self.server_names
            },
            registry_dir: self.registry_dir.or(base.registry_dir),
            outbound_traffic_policy: self
                .outbound_traffic_policy
                .or(base.outbound_traffic_policy),
            consul: match (self.consul, base.consul) {
                (Some(over), Some(base)) => Some(over.over(base)),
                (over, base) => over.or(base),
            },
            kubernetes: match (self.kubernetes, base.kubernetes) {
                (Some(over), Some(base)) => Some(over.over(base)),
                (over, base) => over.or(base),
            },
        }
    }

    /// Checks every setting, reporting all problems at once.
    pub fn validate(self) -> Result<ControlConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut addr = |key: &str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_owned());
            text.parse::<SocketAddr>().unwrap_or_else(|_| {
                errors.push(format!(
                    "{key}: {text:?} is not an address of the form IP:PORT"
                ));
                SocketAddr::from(([0, 0, 0, 0], 0))
            })
        };
        let listen = addr("listen", self.listen, "0.0.0.0:15012");
        let status_listen = addr("statusListen", self.status_listen, "0.0.0.0:15014");
        let trust_domain = self.trust_domain.and_then(|td| {
            TrustDomain::new(&td)
                .map_err(|e| errors.push(format!("trustDomain: {e}")))
                .ok()
        });
        let ttl_text = self.max_cert_ttl.unwrap_or_else(|| "24h".to_owned());
        let max_cert_ttl = match humantime::parse_duration(&ttl_text) {
            Ok(d) if d >= Duration::from_secs(60) => d,
            Ok(_) => {
                errors.push(format!(
                    "maxCertTtl: {ttl_text:?} is shorter than one minute"
                ));
                Duration::ZERO
            }
            Err(e) => {
                errors.push(format!(
                    "maxCertTtl: {ttl_text:?} is not a duration ({e}); use e.g. 24h"
                ));
                Duration::ZERO
            }
        };
        for name in &self.server_names {
            let ok = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                errors.push(format!("serverNames: {name:?} is not a DNS name"));
            }
        }
        let outbound_traffic_policy = match self.outbound_traffic_policy.as_deref() {
            None | Some("ALLOW_ANY") => OutboundPolicy::AllowAny,
            Some("REGISTRY_ONLY") => OutboundPolicy::RegistryOnly,
            Some(other) => {
                errors.push(format!(
                    "outboundTrafficPolicy: {other:?} is not ALLOW_ANY or REGISTRY_ONLY"
                ));
                OutboundPolicy::AllowAny
            }
        };
        let consul = self.consul.and_then(|raw| {
            let td = trust_domain.clone().unwrap_or_default();
            raw.validate(&td, &mut errors)
        });
        let kubernetes = self.kubernetes.and_then(|raw| {
            let td = trust_domain.clone().unwrap_or_default();
            raw.validate(&td, &mut errors)
        });
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(ControlConfig {
            listen,
            status_listen,
            ca_dir: self.ca_dir.unwrap_or_else(|| DEFAULT_CA_DIR.into()),
            state_dir: self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            trust_domain,
            max_cert_ttl,
            server_names: self.server_names,
            registry_dir: self
                .registry_dir
                .unwrap_or_else(|| hostmesh_registry::sources::static_files::DEFAULT_DIR.into()),
            outbound_traffic_policy,
            consul,
            kubernetes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(text: &str) -> Result<Settings, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.yaml");
        std::fs::write(&path, text).unwrap();
        Settings::from_file(&path, true).map_err(|e| {
            ConfigErrors(
                e.0.into_iter()
                    .map(|l| l.replace(&path.display().to_string(), "control.yaml"))
                    .collect(),
            )
        })
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let from_file =
            file("listen: 127.0.0.1:1\nregistryDir: /srv/reg\nmaxCertTtl: 2h\n").unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:2".into()),
            ..Settings::default()
        };
        let config = flags.over(from_file).validate().unwrap();
        assert_eq!(config.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(config.registry_dir, PathBuf::from("/srv/reg"));
        assert_eq!(config.max_cert_ttl, Duration::from_secs(7200));
        assert_eq!(config.status_listen, "0.0.0.0:15014".parse().unwrap());
        assert_eq!(config.outbound_traffic_policy, OutboundPolicy::AllowAny);
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = file("listen: 0.0.0.0:15012\nlisten_port: 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("control.yaml:2: unknown field `listen_port`"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let settings = file(
            "listen: nowhere\nmaxCertTtl: forever\ntrustDomain: Not.Valid\noutboundTrafficPolicy: SOMETIMES\nserverNames: [\"a b\"]\n",
        )
        .unwrap();
        let err = settings.validate().unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        assert!(err.0[0].starts_with("listen: \"nowhere\" is not an address"));
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("maxCertTtl: \"forever\" is not a duration"))
        );
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("trustDomain: trust domain \"Not.Valid\""))
        );
        assert!(
            err.0
                .iter()
                .any(|l| l.starts_with("outboundTrafficPolicy: \"SOMETIMES\""))
        );
        assert!(err.0.iter().any(|l| l.starts_with("serverNames: \"a b\"")));
    }

    #[test]
    fn consul_settings_are_read_and_checked() {
        let config = file("consul:\n  address: http://127.0.0.1:8500\n  token: t0k\n  tag: mesh\n")
            .unwrap()
            .validate()
            .unwrap();
        let consul = config.consul.unwrap();
        assert_eq!(consul.address.to_string(), "http://127.0.0.1:8500/");
        assert_eq!(consul.tag.as_deref(), Some("mesh"));
        assert_eq!(consul.domain_suffix, "service.consul");
        let err = file("listen: nowhere\nconsul:\n  address: ftp://x\n  keyFile: k.pem\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.0.iter().any(|l| l.starts_with("consul.address:")),
            "{err}"
        );
        assert!(
            err.0.iter().any(|l| l.starts_with("consul.caFile:")),
            "{err}"
        );
        let err = file("consul:\n  adress: http://x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `adress`"), "{err}");
    }

    #[test]
    fn kubernetes_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\n\
             contexts:\n- name: a\n  context:\n    cluster: c\n    user: u\ncurrent-context: a\n\
             users:\n- name: u\n  user:\n    token: t\n",
        )
        .unwrap();
        let config = file(&format!(
            "kubernetes:\n  kubeconfig: {}\n  namespaces: [shop, default]\n",
            kubeconfig.display()
        ))
        .unwrap()
        .validate()
        .unwrap();
        let k = config.kubernetes.unwrap();
        let ns: Vec<&str> = k.namespaces.iter().map(|n| n.as_str()).collect();
        assert_eq!(ns, ["default", "shop"]);
        assert_eq!(k.cluster_domain, "cluster.local");
        assert!(
            file("listen: 0.0.0.0:1\n")
                .unwrap()
                .validate()
                .unwrap()
                .kubernetes
                .is_none()
        );
        let err = file(&format!(
            "kubernetes:\n  kubeconfig: {}\n  context: b\n  namespaces: [Bad_NS]\n  clusterDomain: \"a b\"\n",
            kubeconfig.display()
        ))
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.0[0].starts_with("kubernetes.context: \"b\" is not a context of"),
            "{err}"
        );
        assert!(err.0[0].ends_with("(it has: a)"), "{err}");
        assert!(
            err.0[1].starts_with("kubernetes.namespaces: \"Bad_NS\""),
            "{err}"
        );
        assert!(err.0[2].starts_with("kubernetes.clusterDomain:"), "{err}");
        let err = file("kubernetes:\n  kubeconfig: /nonexistent/kubeconfig\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.0[0].starts_with("kubernetes.kubeconfig: /nonexistent/kubeconfig:"),
            "{err}"
        );
        let err = file("kubernetes:\n  namespaces: [a]\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.0[0].starts_with("kubernetes.kubeconfig: required unless inCluster"),
            "{err}"
        );
    }
}
