//! The Kubernetes source: `Service`s with their `EndpointSlice`s, and Istio's
//! `ServiceEntry`/`WorkloadEntry` custom resources when the API server serves them, through
//! the Kubernetes API's list/watch (kube's watchers: resource versions, bookmarks, a new
//! list after `410 Gone`).
//!
//! - [`settings`]: the validated `kubernetes:` settings (kubeconfig and context, or
//!   in-cluster credentials; namespaces; cluster domain).
//! - [`connect`]: kube's config and clients; a layer that reports the API server's answers.
//! - [`convert`]: pure: a Service and its slices → a mesh service `<svc>.<ns>.svc.<domain>`.
//! - [`istio`]: pure: the CRDs → validated config objects and the services they build.
//! - [`discovery`]: whether the API server serves the Istio CRDs.
//! - `state`: the objects each watch keeps and the view built from them (pure rebuild).
//! - [`watch`]: the running source, publishing [`KubernetesView`]s; keeps its last good
//!   view and reports itself unhealthy while the API server is away.
//!
//! Owns: everything Kubernetes-specific. Must not touch: the merge, xDS, other sources.

pub mod connect;
pub mod convert;
pub mod discovery;
pub mod error;
pub mod istio;
pub mod settings;
mod state;
pub mod watch;

pub use error::KubernetesError;
pub use settings::{KubernetesSettings, RawKubernetesSettings};
pub use watch::{KubernetesSource, KubernetesView};
