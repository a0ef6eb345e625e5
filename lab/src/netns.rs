//! Network namespaces by name: `ip` inside one, a program started in one, a closure run on a
//! thread that entered one, and removal of namespaces a dead lab left behind.
//!
//! Owns nothing on the host outside `/run/netns/<name>` and `/etc/netns/<name>/`. Deleting is
//! the [`Lab`](crate::Lab)'s job; a [`Netns`] is only a name.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::error::{LabError, Result};

/// A named network namespace (`/run/netns/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    pub(crate) fn create(name: String) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns exec NAME` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(drop)
    }

    /// `ip netns exec NAME PROGRAM`: a command that runs inside the namespace (with the
    /// namespace's `/etc/netns/NAME/*` files bind-mounted over `/etc`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program ARGS…` inside the namespace to completion; its standard output.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Runs `f` on a new thread that entered this namespace and returns its result. Sockets
    /// made there stay in the namespace when used from other threads afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path)
                        .map_err(|e| LabError::io("opening the namespace", &path, e))?;
                    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                        .map_err(|e| LabError::io("entering the namespace", &path, e.into()))?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Where `ip netns exec` finds this namespace's own `/etc` files (`resolv.conf`, `hosts`).
    pub fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// Writes `/etc/netns/NAME/resolv.conf`, which processes started with
    /// [`Netns::command`] see as `/etc/resolv.conf`.
    pub fn set_resolv_conf(&self, text: &str) -> Result<()> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating", &dir, e))?;
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text).map_err(|e| LabError::io("writing", &path, e))
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Kills every process inside, deletes the namespace and its `/etc/netns` folder.
    /// Best effort: reports what it could not do on stderr.
    pub(crate) fn destroy(&self) {
        if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", &self.name])) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("lab: could not delete network namespace {}: {e}", self.name);
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Deletes namespaces named `<prefix>-<pid>-…` whose pid is no longer running: what a lab
/// killed by a signal (Ctrl-C on a test) left behind.
pub(crate) fn remove_stale(prefix: &str) {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            Netns {
                name: name.to_owned(),
            }
            .destroy();
        }
    }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io("running", shown.clone(), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
