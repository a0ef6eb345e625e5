//! API discovery of Istio's CRDs: which versions of `networking.istio.io` the API server
//! serves, and whether they include `ServiceEntry` and `WorkloadEntry`. A 404 means "not
//! installed", not an error.

use kube::Client;
use kube::api::ApiResource;

use super::error::KubernetesError;
use super::istio;

/// `(ServiceEntry, WorkloadEntry)` resources as served, each `None` when not.
pub async fn find_resources(
    client: &Client,
) -> Result<(Option<ApiResource>, Option<ApiResource>), KubernetesError> {
    for version in istio::VERSIONS {
        let api_version = format!("{}/{version}", istio::GROUP);
        match client.list_api_group_resources(&api_version).await {
            Ok(list) => {
                let find = |kind: &str| {
                    list.resources
                        .iter()
                        .find(|r| r.kind == kind && !r.name.contains('/'))
                        .map(|r| ApiResource {
                            group: istio::GROUP.to_owned(),
                            version: (*version).to_owned(),
                            api_version: api_version.clone(),
                            kind: kind.to_owned(),
                            plural: r.name.clone(),
                        })
                };
                return Ok((find("ServiceEntry"), find("WorkloadEntry")));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => {
                return Err(KubernetesError::Discovery {
                    group: api_version,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok((None, None))
}
