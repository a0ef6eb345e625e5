//! The real `hostmesh-agent run` as a child process: its config file, a `NOTIFY_SOCKET` the
//! test listens on, plain HTTP requests to its pages and listeners, SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

/// A bound on every wait.
pub const BOUND: Duration = Duration::from_secs(30);

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent process, killed on drop if still running.
pub struct Agent {
    pub child: Child,
    notify: UnixDatagram,
    /// Every notification received so far, in order.
    pub notifications: Vec<String>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Starts `hostmesh-agent run --config CONFIG` with `NOTIFY_SOCKET` at `dir/notify-N`.
    pub fn start(config: &Path, dir: &Path) -> Self {
        Self::start_in(None, config, dir)
    }

    /// Like [`Agent::start`], inside the network namespace `netns` when given.
    pub fn start_in(netns: Option<&str>, config: &Path, dir: &Path) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket: PathBuf = dir.join(format!("notify-{n}"));
        let notify = UnixDatagram::bind(&socket).unwrap();
        let bin = env!("CARGO_BIN_EXE_hostmesh-agent");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &socket)
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hostmesh-agent starts");
        Self {
            child,
            notify,
            notifications: Vec::new(),
        }
    }

    /// Waits (bounded) for a notification containing `what`; returns it.
    pub async fn wait_notification(&mut self, what: &str) -> String {
        if let Some(found) = self.notifications.iter().find(|n| n.contains(what)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + BOUND;
        let mut buf = vec![0u8; 4096];
        loop {
            let received = tokio::time::timeout_at(deadline, self.notify.recv(&mut buf)).await;
            let n = match received {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => panic!("notify socket: {e}"),
                Err(_) => panic!(
                    "no notification with {what:?} within {BOUND:?}; got {:?}; exit status {:?}",
                    self.notifications,
                    self.child.try_wait()
                ),
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.notifications.push(message.clone());
            if message.contains(what) {
                return message;
            }
        }
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.wait_exit()
    }

    /// The exit status (bounded).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.1 GET; (status, body).
pub fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    request(addr, "GET", path, host)
}

pub fn request(addr: SocketAddr, method: &str, path: &str, host: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response from {addr}{path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Retries `f` (bounded) until it returns `Some`.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
