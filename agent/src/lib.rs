//! The host agent's library: the parts of `hostmesh-agent` that the binary composes and the
//! tests drive directly.
//!
//! - [`config`]: `/etc/hostmesh/agent.yaml` and `HOSTMESH_…` variables, validated at once;
//! - [`app`]: `hostmesh-agent run`, the daemon: start-up in order, serving, shutdown;
//! - [`identity`]: the host's certificate at start (stored, or with the join token);
//! - [`store`]: the last good config under the state directory;
//! - [`nft`]: the `inet hostmesh` interception table (build, install, remove);
//! - [`dns`]: the DNS proxy on 127.0.0.1:15053 (mesh names from a swappable table, the rest
//!   forwarded to the host's resolvers);
//! - [`doctor`]: the read-only preflight report (`hostmesh-agent doctor`);
//! - [`admin`]: the admin (15000) and health/metrics (15020) pages;
//! - [`liveness`]: the proxy's listeners checked, the watchdog fed, fail open or closed;
//! - [`systemd`], [`logging`], [`http`]: the edges.

pub mod admin;
pub mod app;
pub mod config;
pub mod dns;
pub mod doctor;
pub mod http;
pub mod identity;
pub mod liveness;
pub mod logging;
pub mod nft;
pub mod store;
pub mod systemd;
