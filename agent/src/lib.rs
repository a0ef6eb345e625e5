//! The host agent's library: the parts of `hostmesh-agent` that the binary composes and the
//! tests drive directly.
//!
//! - [`config`]: `/etc/hostmesh/agent.yaml` and `HOSTMESH_…` variables, validated at once.
//! - [`nft`]: the `inet hostmesh` interception table (build, install, remove).
//! - [`dns`]: the DNS proxy on 127.0.0.1:15053 (mesh names from a swappable table, the rest
//!   forwarded to the host's resolvers).

pub mod config;
pub mod dns;
pub mod nft;
