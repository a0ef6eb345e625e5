//! Envoy xDS v3: what the control server sends to agents.
//!
//! - [`resources`]: the contract between translation and serving — type URLs, encoded
//!   [`Resource`]s with content versions, [`ResourceSet`]s, the [`NodeInfo`] of a connected
//!   agent, and the [`Translator`] trait.
//! - `translate`: model [`Snapshot`](crate::model::Snapshot) in, Envoy resources out (pure).
//! - `server`: the ADS server (state of the world and delta), ACK/NACK, per-node status.
//!
//! The translation knows nothing of streams; the server knows nothing of the model's
//! contents: it asks the [`Translator`] for resources and diffs them by version.

pub mod resources;
pub mod server;
pub mod translate;

pub use resources::{NodeInfo, Resource, ResourceSet, Translator, type_url};
pub use translate::{MeshTranslator, OutboundPolicy, TranslatorConfig};
