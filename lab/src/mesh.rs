//! The real hostmesh programs in a lab: `hostmesh-control` (a fresh CA, a registry folder,
//! join tokens) in the switch namespace, and `hostmesh-agent run` on hosts with their
//! `agent.yaml`, root certificate and join token. Finding the binaries is
//! [`Binaries::locate`]'s job; nothing here knows the programs' internals beyond their
//! command lines and settings files.

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::{Host, Lab, SWITCH_IP};
use crate::netns::{self, Netns};
use crate::process::Process;

/// A generous bound for anything starting on a loaded machine.
pub const START_BOUND: Duration = Duration::from_secs(60);
/// The control server's xDS and certificate port in the lab.
pub const CONTROL_PORT: u16 = 15012;
/// The control server's status API port in the lab.
pub const STATUS_PORT: u16 = 15014;

/// Where the hostmesh programs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub control: PathBuf,
    pub agent: PathBuf,
}

impl Binaries {
    /// Looks in `$HOSTMESH_BIN_DIR`, then beside the running executable (and its parent, for
    /// test executables in `target/debug/deps`), then on `PATH`.
    pub fn locate() -> Result<Self> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("HOSTMESH_BIN_DIR") {
            dirs.push(dir.into());
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_owned))
        {
            if dir.ends_with("deps") {
                dirs.extend(dir.parent().map(Path::to_owned));
            }
            dirs.push(dir);
        }
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        let find = |name: &str| {
            dirs.iter()
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| LabError::MissingBinary {
                    name: name.to_owned(),
                    searched: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        };
        Ok(Self {
            control: find("hostmesh-control")?,
            agent: find("hostmesh-agent")?,
        })
    }
}

/// A `hostmesh-control run` in the switch namespace on 10.77.0.254 (xDS 15012, status
/// 15014), with its own CA and registry folder.
#[derive(Debug)]
pub struct Control {
    bin: PathBuf,
    dir: PathBuf,
    netns: Netns,
    log: PathBuf,
    process: Option<Process>,
}

impl Control {
    /// `ca init`, the registry folder with `registry` as `mesh.yaml`, and the server, ready
    /// when both ports accept.
    pub fn start(lab: &Lab, bins: &Binaries, registry: &str) -> Result<Self> {
        let dir = lab.subdir("control")?;
        netns::run(
            std::process::Command::new(&bins.control)
                .args(["ca", "init", "--dir"])
                .arg(dir.join("ca")),
        )?;
        let registry_dir = dir.join("registry.d");
        std::fs::create_dir_all(&registry_dir)
            .map_err(|e| LabError::io("creating", &registry_dir, e))?;
        let settings = format!(
            "listen: {SWITCH_IP}:{CONTROL_PORT}\nstatusListen: {SWITCH_IP}:{STATUS_PORT}\n\
             caDir: {}\nstateDir: {}\nregistryDir: {}\n",
            dir.join("ca").display(),
            dir.join("state").display(),
            registry_dir.display(),
        );
        write(&dir.join("control.yaml"), &settings)?;
        let mut control = Self {
            bin: bins.control.clone(),
            dir,
            netns: lab.switch().clone(),
            log: lab.log_path("control"),
            process: None,
        };
        control.write_registry("mesh.yaml", registry)?;
        control.restart()?;
        Ok(control)
    }

    /// The xDS and certificate address agents use.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((SWITCH_IP, CONTROL_PORT))
    }

    /// The status API address (`hostmesh status --address …`, from the switch namespace).
    pub fn status_address(&self) -> SocketAddr {
        SocketAddr::from((SWITCH_IP, STATUS_PORT))
    }

    /// The mesh's root certificate (the agents' trust anchor).
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca").join("root-cert.pem")
    }

    /// Writes (or replaces) a file in the registry folder; the server picks it up.
    pub fn write_registry(&self, file: &str, yaml: &str) -> Result<()> {
        write(&self.dir.join("registry.d").join(file), yaml)
    }

    /// A join token for `namespace`/`service_account` (`hostmesh-control token create`).
    pub fn token(&self, namespace: &str, service_account: &str) -> Result<String> {
        let out = netns::run(
            std::process::Command::new(&self.bin)
                .args(["token", "create", "--namespace", namespace])
                .args(["--service-account", service_account, "--state-dir"])
                .arg(self.dir.join("state")),
        )?;
        Ok(out.trim().to_owned())
    }

    /// The running process, if any.
    pub fn process(&mut self) -> Option<&mut Process> {
        self.process.as_mut()
    }

    /// Stops the server (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop()?;
        }
        Ok(())
    }

    /// SIGKILL: an abrupt outage (and no wait for open streams to end).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill9()?;
        }
        Ok(())
    }

    /// Starts the server (again), ready when both ports accept.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let mut command = self.netns.command(&self.bin);
        command
            .args(["run", "--config"])
            .arg(self.dir.join("control.yaml"));
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut process = Process::spawn("control", command, &self.log)?;
        for port in [CONTROL_PORT, STATUS_PORT] {
            wait_accepting(
                &self.netns,
                SocketAddrV4::new(SWITCH_IP, port),
                &mut process,
            )?;
        }
        self.process = Some(process);
        Ok(())
    }
}

/// What an agent is told about its host (the rest of `agent.yaml` is filled in by the lab).
#[derive(Debug, Clone, Default)]
pub struct AgentSpec {
    /// Mesh namespace (identity `spiffe://cluster.local/ns/<namespace>/sa/<account>`).
    pub namespace: String,
    pub service_account: String,
    /// Labels, e.g. `app`, `version`.
    pub labels: Vec<(String, String)>,
    /// Workload ports and protocol names, e.g. `(9999, "http")`.
    pub inbound_ports: Vec<(u16, String)>,
    /// The WorkloadGroup to auto-register in.
    pub workload_group: Option<String>,
    /// More `agent.yaml` lines, appended as written (top-level keys).
    pub extra_yaml: String,
    /// Environment variables for the agent process (e.g. `WATCHDOG_USEC`).
    pub env: Vec<(String, String)>,
}

/// A `hostmesh-agent run` on a host: its folder holds `agent.yaml`, `join-token` and
/// `state/`; its output is in the lab's `logs/agent-<host>.log`.
#[derive(Debug)]
pub struct Agent {
    bin: PathBuf,
    host: Host,
    dir: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    process: Option<Process>,
}

impl Agent {
    /// Writes the agent's files (a fresh join token) and starts it; returns once the agent
    /// says `READY=1` (certificate, first config, nftables table, DNS).
    pub fn start(
        lab: &Lab,
        bins: &Binaries,
        control: &Control,
        host: &Host,
        spec: &AgentSpec,
    ) -> Result<Self> {
        let dir = lab.subdir(&format!("hosts/{}", host.name()))?;
        write(
            &dir.join("join-token"),
            &control.token(&spec.namespace, &spec.service_account)?,
        )?;
        write(
            &dir.join("agent.yaml"),
            &agent_yaml(control, host, &dir, spec),
        )?;
        let mut agent = Self {
            bin: bins.agent.clone(),
            host: host.clone(),
            dir,
            log: lab.log_path(&format!("agent-{}", host.name())),
            env: spec.env.clone(),
            process: None,
        };
        agent.restart()?;
        Ok(agent)
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The agent's folder (`agent.yaml`, `join-token`, `state/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running process, if any.
    pub fn process(&mut self) -> Option<&mut Process> {
        self.process.as_mut()
    }

    /// Starts the agent (again) and waits for `READY=1`.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let mut command = self.host.netns().command(&self.bin);
        command
            .args(["run", "--config"])
            .arg(self.dir.join("agent.yaml"))
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let name = format!("agent-{}", self.host.name());
        let socket = self.dir.join("notify");
        let mut process = Process::spawn_notify(&name, command, &self.log, &socket)?;
        process.wait_notification("READY=1", START_BOUND)?;
        self.process = Some(process);
        Ok(())
    }

    /// SIGTERM (the agent removes its table), then SIGKILL after a grace period.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop()?;
        }
        Ok(())
    }

    /// SIGKILL: the agent cleans nothing up.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill9()?;
        }
        Ok(())
    }

    /// `hostmesh-agent cleanup` on the host.
    pub fn cleanup(&self) -> Result<()> {
        self.host
            .netns()
            .output(&self.bin.to_string_lossy(), &["cleanup"])
            .map(drop)
    }
}

fn agent_yaml(control: &Control, host: &Host, dir: &Path, spec: &AgentSpec) -> String {
    let mut yaml = format!(
        "controlAddress: {}\nworkloadName: {}\nnamespace: {}\nserviceAccount: {}\n\
         stateDir: {}\njoinTokenPath: {}\nrootCertPath: {}\n",
        control.address(),
        host.name(),
        spec.namespace,
        spec.service_account,
        dir.join("state").display(),
        dir.join("join-token").display(),
        control.root_cert().display(),
    );
    if !spec.labels.is_empty() {
        yaml.push_str("labels:\n");
        for (k, v) in &spec.labels {
            let _ = writeln!(yaml, "  {k}: {v}");
        }
    }
    if !spec.inbound_ports.is_empty() {
        yaml.push_str("inboundPorts:\n");
        for (port, protocol) in &spec.inbound_ports {
            let _ = writeln!(yaml, "  {port}: {protocol}");
        }
    }
    if let Some(group) = &spec.workload_group {
        let _ = writeln!(yaml, "workloadGroup: {group}");
    }
    yaml.push_str(&spec.extra_yaml);
    yaml
}

/// Polls (bounded) until `addr` accepts a TCP connection from inside `netns`, failing early
/// if `process` exits.
fn wait_accepting(netns: &Netns, addr: SocketAddrV4, process: &mut Process) -> Result<()> {
    let deadline = Instant::now() + START_BOUND;
    loop {
        let connected = netns
            .run(|| TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1)).is_ok())?;
        if connected {
            return Ok(());
        }
        if let Some(status) = process.try_wait() {
            return Err(LabError::Timeout {
                what: format!("{} accepting on {addr}", process.name()),
                bound: START_BOUND,
                detail: format!(" (exited: {status}); log:\n{}", process.log_tail(20)),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("{} accepting on {addr}", process.name()),
                bound: START_BOUND,
                detail: format!("; log:\n{}", process.log_tail(20)),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io("writing", path, e))
}
