//! `hostmesh-agent`: the daemon systemd runs on every VM or bare-metal host.
//!
//! Will own: bootstrap from `/etc/hostmesh/agent.yaml`, the workload certificate and its
//! rotation, the nftables table `inet hostmesh`, the DNS proxy, the last-good-config store under
//! `/var/lib/hostmesh`, systemd notify and watchdog, and embedding `hostmesh-proxy`.
//!
//! Must not contain proxy logic: traffic handling lives in `hostmesh-proxy`.

fn main() {}
