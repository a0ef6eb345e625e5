//! A supervised program: started (usually inside a namespace) with stdout and stderr in a log
//! file, in its own process group (a Ctrl-C at the terminal reaches the lab's owner, which
//! tears down in order), optionally with a `NOTIFY_SOCKET` the lab reads; stopped with
//! SIGTERM then SIGKILL, or killed with SIGKILL at once. Killed on drop.

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::error::{LabError, Result};

/// How long [`Process::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running (or exited) program.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    notify: Option<Notify>,
}

#[derive(Debug)]
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<String>,
}

impl Process {
    /// Starts `command` with its output appended to `log`.
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Self> {
        Self::start(name, command, log, None)
    }

    /// Like [`Process::spawn`], with `NOTIFY_SOCKET` set to a datagram socket at `socket`
    /// (systemd's protocol), read by [`Process::wait_notification`].
    pub fn spawn_notify(name: &str, command: Command, log: &Path, socket: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let bound = UnixDatagram::bind(socket).map_err(|e| LabError::io("binding", socket, e))?;
        let notify = Notify {
            socket: bound,
            path: socket.to_owned(),
            received: Vec::new(),
        };
        Self::start(name, command, log, Some(notify))
    }

    fn start(name: &str, mut command: Command, log: &Path, notify: Option<Notify>) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::io("opening the log", log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("opening the log", log, e))?;
        if let Some(n) = &notify {
            command.env("NOTIFY_SOCKET", &n.path);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| LabError::io("starting", format!("{command:?}"), e))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            notify,
        })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (`ip netns exec` execs the program, so this is the program's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal`; an exited process is not an error.
    pub fn signal(&mut self, signal: Signal) {
        if self.try_wait().is_some() {
            return;
        }
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, signal);
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::TERM);
        match self.wait_exit(STOP_GRACE) {
            Ok(status) => Ok(status),
            Err(_) => self.kill9(),
        }
    }

    /// SIGKILL at once (nothing is cleaned up by the program); the exit status.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::KILL);
        self.wait_exit(STOP_GRACE)
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, bound: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(format!("{} exiting", self.name), bound));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `NOTIFY_SOCKET` messages received so far (by [`Process::wait_notification`]).
    pub fn notifications(&self) -> &[String] {
        self.notify.as_ref().map_or(&[], |n| &n.received)
    }

    /// Waits (bounded) for a notification containing `what` (e.g. `READY=1`), failing early
    /// when the process exits; returns it.
    pub fn wait_notification(&mut self, what: &str, bound: Duration) -> Result<String> {
        let deadline = Instant::now() + bound;
        let mut buf = vec![0u8; 4096];
        loop {
            let Some(notify) = self.notify.as_mut() else {
                return Err(LabError::Timeout {
                    what: format!("{} has no NOTIFY_SOCKET", self.name),
                    bound,
                    detail: String::new(),
                });
            };
            if let Some(found) = notify.received.iter().find(|n| n.contains(what)) {
                return Ok(found.clone());
            }
            let _ = notify
                .socket
                .set_read_timeout(Some(Duration::from_millis(100)));
            if let Ok(n) = notify.socket.recv(&mut buf) {
                notify
                    .received
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                continue;
            }
            if let Some(status) = self.try_wait() {
                return Err(self.timeout(
                    format!("{} exited ({status}) before {what:?}", self.name),
                    bound,
                ));
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(format!("{what:?} from {}", self.name), bound));
            }
        }
    }

    fn timeout(&self, what: String, bound: Duration) -> LabError {
        LabError::Timeout {
            what,
            bound,
            detail: format!(
                "; last lines of {}:\n{}",
                self.log.display(),
                self.log_tail(20)
            ),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.kill9();
        }
        if let Some(n) = &self.notify {
            let _ = std::fs::remove_file(&n.path);
        }
    }
}

/// True when the status says the process was killed by SIGKILL.
pub fn killed_by_sigkill(status: &ExitStatus) -> bool {
    status.signal() == Some(Signal::KILL.as_raw())
}
