//! The xDS side of the proxy: Envoy v3 resources from the control server become the validated
//! runtime config.
//!
//! - `wire`: unpacking `Any`, finding fields a conversion did not consume, [`Rejection`]s;
//! - [`resources`]: the decoded resources held, by type and name, with versions;
//! - [`convert`]: resources → [`ConfigSpec`](crate::config::ConfigSpec) (pure);
//! - [`name_table`]: Istio's DNS name table and the checked [`MeshNames`];
//! - [`state`]: applying one response — convert outside any lock, validate with
//!   [`ProxyConfig::build`](crate::ProxyConfig::build), swap atomically, or refuse with a reason;
//! - [`node`]: the Istio-style `Node` this host announces;
//! - [`client`]: the ADS client (delta, falling back to state of the world), ACK/NACK,
//!   readiness, reconnection.
//!
//! `README.md` holds the support table: which Envoy fields are honoured, ignored or refused.

pub mod client;
pub mod convert;
pub mod name_table;
pub mod node;
pub mod resources;
pub mod state;
mod wire;

pub use client::{AdsClient, ClientSettings, XdsHandles};
pub use name_table::{MeshName, MeshNames, NameTable};
pub use node::NodeIdentity;
pub use resources::{RawResource, ResourceType, Resources};
pub use state::XdsState;
pub use wire::{Rejection, Rejections};
