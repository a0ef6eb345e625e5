//! The agent's settings: `/etc/hostmesh/agent.yaml`, then `HOSTMESH_…` environment variables.
//!
//! Every key has a default, so an empty (or missing) file is a valid config. The file is read
//! against a table of known keys ([`keys`]): an unknown key is refused with its name and line.
//! Then every value is checked and every problem is reported together, each naming its key and
//! where it came from (a line of the file or an environment variable). What comes out,
//! [`AgentConfig`], holds only types that cannot be invalid. `agent/agent.example.yaml`
//! documents every key.

mod file;
mod keys;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostmesh_ca::{SpiffeId, TrustDomain};
use ipnet::IpNet;

pub use validate::interception_spec;

/// Where the agent looks for its settings unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/hostmesh/agent.yaml";

/// The validated settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control server's xDS and certificate port.
    pub control_address: ControlAddress,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub identity: SpiffeId,
    pub workload_name: String,
    pub labels: BTreeMap<String, String>,
    /// The `WorkloadGroup` to auto-register in.
    pub workload_group: Option<String>,
    /// Where the host runs, `region[/zone[/subzone]]`, for locality load balancing.
    pub locality: Option<String>,
    /// The host's address in the mesh; `None`: the address this host reaches the control
    /// server from.
    pub host_ip: Option<IpAddr>,
    /// Ports the workload serves, with their protocol.
    pub inbound_ports: BTreeMap<u16, AppProtocol>,
    pub state_dir: PathBuf,
    pub join_token_path: PathBuf,
    pub root_cert_path: PathBuf,
    /// Lifetime asked for each certificate (the server may grant less).
    pub certificate_ttl: Duration,
    /// How long a start waits for the control server's config before serving the last good
    /// one (when there is one).
    pub first_config_timeout: Duration,
    /// Admin on 127.0.0.1.
    pub admin_port: u16,
    /// Health and metrics on every address.
    pub health_port: u16,
    /// The initial log filter (`info`, `hostmesh_proxy=debug,info`, …).
    pub log_level: String,
    /// Threads that run the proxy and everything else the agent does: one runs them all on
    /// the main thread (no work stealing, the least CPU and memory per request); `None` is
    /// two, or one on a single-core machine.
    pub proxy_threads: Option<NonZeroUsize>,
    pub listeners: Listeners,
    pub interception: Interception,
    pub dns: Dns,
}

impl AgentConfig {
    pub fn trust_domain(&self) -> &TrustDomain {
        self.identity.trust_domain()
    }

    /// The admin address (always loopback).
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    pub fn health_addr(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], self.health_port))
    }
}

/// `host:port` of the control server; the host is resolved when the agent starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ControlAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where the proxy's listeners bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
}

/// What happens to the interception table when the proxy stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Remove the table: traffic flows without the mesh.
    Open,
    /// Keep the table: traffic stops until the proxy is back.
    Closed,
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
        })
    }
}

/// The protocol of an inbound port, as Istio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
}

impl fmt::Display for AppProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "HTTP",
            Self::Http2 => "HTTP2",
            Self::Grpc => "GRPC",
            Self::Https => "HTTPS",
            Self::Tls => "TLS",
            Self::Tcp => "TCP",
        })
    }
}

/// Interception settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interception {
    pub enabled: bool,
    pub excluded_ports: Vec<u16>,
    pub excluded_cidrs: Vec<IpNet>,
    /// Sockets of this user are never redirected.
    pub agent_uid: Option<u32>,
    /// Sockets with this mark are never redirected; the proxy marks its own.
    pub mark: Option<u32>,
    pub fail_mode: FailMode,
    pub dns_capture: bool,
    /// The `nft` program.
    pub nft: PathBuf,
}

/// DNS proxy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub resolv_conf: PathBuf,
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Reads `path` (a missing file is fine unless `required`) and the environment through `env`,
/// and validates the result.
pub fn load(
    path: &Path,
    required: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigErrors> {
    let prefix = |errors: Vec<String>| {
        ConfigErrors(
            errors
                .into_iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect(),
        )
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
        Err(e) => return Err(prefix(vec![e.to_string()])),
    };
    let root = file::parse(&text).map_err(|(line, e)| prefix(vec![format!("line {line}: {e}")]))?;
    let settings = keys::collect(root, env).map_err(prefix)?;
    validate::validate(settings, &hostname()).map_err(prefix)
}

/// Reads the settings from the process environment.
pub fn load_from_env(path: &Path, required: bool) -> Result<AgentConfig, ConfigErrors> {
    load(path, required, &|var| std::env::var(var).ok())
}

/// The host's name, the default workload name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests;
