//! Network namespaces made by a test and removed by a guard, even when the test fails.
//!
//! `setns` changes the namespace of one thread only, so [`Netns::run`] runs a closure on a
//! thread of its own that has entered the namespace. Sockets keep the namespace they were made
//! in, so a socket created inside can be used from any thread afterwards; processes started
//! from that thread (`nft`) run in the namespace too.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Fails loudly (never skips) when the tests cannot run: they need root and `ip`/`nft`.
pub fn require_root_and_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the network-namespace tests need root (CI runs them as root); run them with sudo"
    );
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is missing: install iproute2 and nftables (scripts/setup)"
        );
    }
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hm-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// `nft` with `input` on its standard input, inside the namespace; must succeed.
    pub fn nft_script(&self, script: &str) {
        let script = script.to_owned();
        self.run(move || {
            use std::io::Write;
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "nft refused:\n{script}");
        });
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                        .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `client` (10.200.0.1, default route via the server)
/// and `server` (10.200.0.2).
#[derive(Debug)]
pub struct Lab {
    pub client: Netns,
    pub server: Netns,
}

pub const CLIENT_IP: &str = "10.200.0.1";
pub const SERVER_IP: &str = "10.200.0.2";

impl Lab {
    pub fn new(tag: &str) -> Self {
        require_root_and_tools();
        let lab = Self {
            client: Netns::new(&format!("{tag}c")),
            server: Netns::new(&format!("{tag}s")),
        };
        lab.client.ip(&[
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
            "netns",
            lab.server.name(),
        ]);
        for (ns, dev, ip) in [
            (&lab.client, "veth0", CLIENT_IP),
            (&lab.server, "veth1", SERVER_IP),
        ] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        lab.client
            .ip(&["route", "add", "default", "via", SERVER_IP]);
        lab
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
