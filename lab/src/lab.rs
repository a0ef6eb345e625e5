//! The lab: a switch namespace holding a bridge (`br0`, 10.77.0.254/24), hosts as namespaces
//! with a veth to it, a working folder for configs and logs, and the teardown that removes all
//! of it. Owns the namespaces it made and their `/etc/netns` folders; nothing else on the
//! machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{LabError, Result};
use crate::netns::{self, Netns};
use crate::process::Process;

/// The switch namespace's address on the bridge; hosts use it as their default route.
pub const SWITCH_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// Prefix length of the lab's network (10.77.0.0/24).
pub const PREFIX_LEN: u8 = 24;

/// A host: a network namespace with `eth0` on the lab's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    netns: Netns,
    ip: Ipv4Addr,
    switch_port: String,
}

impl Host {
    /// The name given to [`Lab::add_host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The host's address on the bridge.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's veth end in the switch namespace (capture its traffic there).
    pub fn switch_port(&self) -> &str {
        &self.switch_port
    }
}

/// A mesh of hosts on one machine. Torn down on drop or by [`Lab::teardown`].
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    switch: Netns,
    hosts: Vec<Host>,
    dir: PathBuf,
    torn_down: bool,
}

impl Lab {
    /// Makes the switch namespace and the bridge. `tag` names the lab's namespaces
    /// `hm-<tag>-<pid>-<n>-…`; namespaces of an earlier `hm-<tag>` lab whose process is gone
    /// (a test stopped by Ctrl-C) are removed first.
    pub fn new(tag: &str) -> Result<Self> {
        require_root_and_tools()?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = format!("hm-{tag}");
        netns::remove_stale(&base);
        let prefix = format!(
            "{base}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(|e| LabError::io("creating the lab folder", &dir, e))?;
        let switch = Netns::create(format!("{prefix}-sw"))?;
        let lab = Self {
            prefix,
            switch,
            hosts: Vec::new(),
            dir,
            torn_down: false,
        };
        let sw = &lab.switch;
        sw.ip(&["link", "add", "br0", "type", "bridge"])?;
        sw.ip(&[
            "addr",
            "add",
            &format!("{SWITCH_IP}/{PREFIX_LEN}"),
            "dev",
            "br0",
        ])?;
        sw.ip(&["link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// The switch namespace (the bridge, and where the control server runs).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The lab's working folder (configs, state, `logs/`), removed at teardown unless
    /// `HOSTMESH_LAB_KEEP` is set.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hosts added so far, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Adds a host at 10.77.0.<n> (n = 1, 2, …) with a default route via the switch and a
    /// `resolv.conf` naming the switch as its resolver.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        let n = self.hosts.len() + 1;
        let ip = Ipv4Addr::new(10, 77, 0, n as u8);
        let netns = Netns::create(format!("{}-{name}", self.prefix))?;
        let host = Host {
            name: name.to_owned(),
            netns,
            ip,
            switch_port: format!("p{n}"),
        };
        self.hosts.push(host.clone());
        let ns = &host.netns;
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &host.switch_port,
            "netns",
            self.switch.name(),
        ])?;
        ns.ip(&["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", &SWITCH_IP.to_string()])?;
        self.switch
            .ip(&["link", "set", &host.switch_port, "master", "br0", "up"])?;
        ns.set_resolv_conf(&format!("nameserver {SWITCH_IP}\n"))?;
        Ok(host)
    }

    /// A folder of the lab's, created on first use.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::create_dir_all(&path).map_err(|e| LabError::io("creating", &path, e))?;
        Ok(path)
    }

    /// The log file for a process called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts `program args…` inside `netns`, its output in `logs/<name>.log`.
    pub fn spawn(
        &self,
        netns: &Netns,
        name: &str,
        program: &Path,
        args: &[&str],
    ) -> Result<Process> {
        let mut command = netns.command(program);
        command.args(args);
        Process::spawn(name, command, &self.log_path(name))
    }

    /// Kills every process in the lab's namespaces and deletes them and their `/etc/netns`
    /// folders (nftables tables go with their namespace), then removes the working folder.
    /// Idempotent; also run on drop.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for host in self.hosts.drain(..) {
            host.netns.destroy();
        }
        self.switch.destroy();
        if std::env::var_os("HOSTMESH_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab: kept {}", self.dir.display());
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Fails (with what is missing) unless this process is root and `ip` and `nft` run.
pub fn require_root_and_tools() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    require_tool("ip", "install iproute2 (scripts/setup)")?;
    require_tool("nft", "install nftables (scripts/setup)")
}

/// Fails (naming `program` and `hint`) unless `program -V` runs: for the tools a test needs
/// beyond the lab's own (`curl`, …).
pub fn require_tool(program: &str, hint: &'static str) -> Result<()> {
    match netns::run(Command::new(program).arg("-V")) {
        Ok(_) => Ok(()),
        Err(_) => Err(LabError::MissingTool {
            program: program.to_owned(),
            hint,
        }),
    }
}
