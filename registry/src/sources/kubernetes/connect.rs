//! Clients for the API server: the kube `Config` from the settings (a kubeconfig and
//! context, or the pod's service account), and one `Client` per watch with a layer that
//! tells the source when the API server answered that watch's requests.
//!
//! Why the layer: kube's watcher reports errors but not recovery. After an outage it
//! resumes a watch from its last resource version, and when nothing changed meanwhile no
//! event follows (bookmarks stay inside the watcher), so without this the source would
//! stay unhealthy until the next change. A 2xx answer to the watch's own request is the
//! proof that it is back.

use std::sync::Arc;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::util::MapResponseLayer;

use super::error::KubernetesError;
use super::settings::{Credentials, KubernetesSettings};

/// Called with a watch's id each time the API server answers one of its requests with 2xx.
pub trait Answered: Send + Sync + 'static {
    fn answered(&self, watch: &str);
}

/// The kube configuration for the settings' credentials.
pub async fn kube_config(settings: &KubernetesSettings) -> Result<Config, KubernetesError> {
    match &settings.credentials {
        Credentials::Kubeconfig {
            path,
            config,
            context,
        } => {
            let options = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            Config::from_custom_kubeconfig(Kubeconfig::clone(config), &options)
                .await
                .map_err(|e| KubernetesError::Config(format!("{}: {e}", path.display())))
        }
        Credentials::InCluster => Config::incluster()
            .map_err(|e| KubernetesError::Config(format!("in-cluster credentials: {e}"))),
    }
}

/// A client whose 2xx answers are reported to `health` under `watch`.
pub fn observed_client(
    config: &Config,
    watch: &str,
    health: Arc<dyn Answered>,
) -> Result<Client, KubernetesError> {
    let watch: Arc<str> = Arc::from(watch);
    let builder = ClientBuilder::try_from(config.clone())
        .map_err(|e| KubernetesError::Config(format!("client: {e}")))?;
    Ok(builder
        .with_layer(&MapResponseLayer::new(observe(watch, health)))
        .build())
}

fn observe<B>(
    watch: Arc<str>,
    health: Arc<dyn Answered>,
) -> impl Fn(hyper::Response<B>) -> hyper::Response<B> + Clone {
    move |response| {
        if response.status().is_success() {
            health.answered(&watch);
        }
        response
    }
}
