//! `hostmesh-lab`: a mesh of hosts on one machine, made of network namespaces, for the demo,
//! end-to-end tests and benchmarks. Needs root, `ip` (iproute2) and `nft` (nftables);
//! [`require_tool`] checks for what a test needs beyond them (`curl`, …).
//!
//! ```text
//!  switch namespace  hm-<tag>-<pid>-<n>-sw   br0 10.77.0.254/24   (hostmesh-control here)
//!      │ p1              │ p2              │ p3      veth ends on the bridge
//!  host 10.77.0.1     host 10.77.0.2     host 10.77.0.3     (eth0, default route via .254)
//!  hm-<tag>-<pid>-<n>-<name>; /etc/netns/<that>/resolv.conf: nameserver 10.77.0.254
//! ```
//!
//! - [`Lab::new`] makes the switch; [`Lab::add_host`] a host. Namespace names carry the pid, so
//!   parallel test binaries never collide, and a new lab first removes namespaces of its tag
//!   whose process is gone (a test stopped by Ctrl-C).
//! - [`Lab::spawn`] / [`Process`]: a program inside a namespace (`ip netns exec`), output in
//!   `logs/<name>.log` under [`Lab::dir`]; [`Process::stop`] (SIGTERM, then SIGKILL),
//!   [`Process::kill9`], [`Process::wait_notification`] (systemd's `NOTIFY_SOCKET`).
//! - [`Lab::teardown`] (also on drop) kills every process in the lab's namespaces, deletes
//!   them (their nftables tables go with them) and their `/etc/netns` folders, and removes the
//!   working folder (kept when `HOSTMESH_LAB_KEEP` is set, for the logs).
//! - [`Netns::run`] runs a closure on a thread inside a namespace: bind sockets there, then use
//!   them from anywhere. [`HttpApp`] is a tiny HTTP server started that way; a request's
//!   query can make it answer a status or wait (`?status=503&sleep_ms=5000&only=v1`), it
//!   echoes what arrived in headers and counts arrivals by path ([`HttpApp::hits`]).
//! - [`Control`] starts the real `hostmesh-control` in the switch namespace (fresh CA, a
//!   registry folder, join tokens); [`Agent`] starts the real `hostmesh-agent run` on a host
//!   from an [`AgentSpec`] and waits for `READY=1`. [`Binaries::locate`] finds both programs.
//!
//! ```no_run
//! # fn main() -> hostmesh_lab::Result<()> {
//! use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, HttpApp, Lab};
//! let bins = Binaries::locate()?;
//! let mut lab = Lab::new("example")?;
//! let (a, b) = (lab.add_host("a")?, lab.add_host("b")?);
//! let control = Control::start(&lab, &bins, "# Istio YAML: ServiceEntry, WorkloadEntry, …")?;
//! let spec = AgentSpec { namespace: "demo".into(), service_account: "b".into(),
//!     inbound_ports: vec![(9999, "http".into())], ..AgentSpec::default() };
//! let _agent = Agent::start(&lab, &bins, &control, &b, &spec)?;
//! let _app = HttpApp::start(b.netns(), "0.0.0.0:9999".parse().unwrap(), "b")?;
//! let answer = a.netns().output("curl", &["-s", "http://10.77.0.2:9999/"])?;
//! lab.teardown();
//! # Ok(()) }
//! ```

mod app;
mod error;
mod lab;
mod mesh;
mod netns;
mod process;

pub use app::HttpApp;
pub use error::{LabError, Result};
pub use lab::{Host, Lab, PREFIX_LEN, SWITCH_IP, require_root_and_tools, require_tool};
pub use mesh::{Agent, AgentSpec, Binaries, CONTROL_PORT, Control, START_BOUND, STATUS_PORT};
pub use netns::Netns;
pub use process::{Process, STOP_GRACE, killed_by_sigkill};
