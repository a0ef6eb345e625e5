//! A thin client for the two Consul endpoints hostmesh reads, on hyper-util's pooled
//! HTTP/1.1 client with hyper-rustls (aws-lc-rs) for TLS.
//!
//! Every call is one blocking query: `index` (0: answer at once) and `wait` are sent as
//! Consul documents them, the ACL token goes in `X-Consul-Token`, the datacenter in `dc`.
//! The whole exchange (headers and body) is bounded by `wait + wait/16` (the most Consul
//! adds as jitter) plus a margin, so a Consul that hangs is noticed.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;

use super::api::{CatalogServices, HealthEntry};
use super::error::ConsulError;
use super::settings::{ConsulSettings, TlsFiles};

/// Added to `wait + wait/16` for the network and Consul's own work.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// One answer of a blocking query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// `X-Consul-Index`.
    pub index: u64,
    /// `X-Consul-Results-Filtered-By-ACLs`: the token could not read everything.
    pub filtered_by_acls: bool,
    pub body: T,
}

/// The client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsulClient {
    http: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: Arc<str>,
    token: Option<Arc<str>>,
    datacenter: Option<Arc<str>>,
    wait: Duration,
}

impl ConsulClient {
    /// Builds the client; reads the TLS files now, so that a bad file fails at start.
    pub fn new(settings: &ConsulSettings) -> Result<Self, ConsulError> {
        let tls = tls_config(settings.tls.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let base = settings.address.to_string();
        Ok(Self {
            http,
            base: Arc::from(base.trim_end_matches('/')),
            token: settings.token.as_deref().map(Arc::from),
            datacenter: settings.datacenter.as_deref().map(Arc::from),
            wait: settings.wait,
        })
    }

    /// The time after which a query is given up: `wait + wait/16 + margin`.
    pub fn timeout(&self) -> Duration {
        self.wait + self.wait / 16 + TIMEOUT_MARGIN
    }

    /// `GET /v1/catalog/services`: every service name and its tags.
    pub async fn catalog_services(
        &self,
        index: u64,
    ) -> Result<Answer<CatalogServices>, ConsulError> {
        self.get("/v1/catalog/services", &[], index).await
    }

    /// `GET /v1/health/service/<name>?passing=1`: the instances whose checks all pass,
    /// optionally only those with `tag`.
    pub async fn healthy_instances(
        &self,
        name: &str,
        tag: Option<&str>,
        index: u64,
    ) -> Result<Answer<Vec<HealthEntry>>, ConsulError> {
        let mut params = vec![("passing", "1".to_owned())];
        if let Some(tag) = tag {
            params.push(("tag", encode(tag)));
        }
        self.get(
            &format!("/v1/health/service/{}", encode(name)),
            &params,
            index,
        )
        .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
        index: u64,
    ) -> Result<Answer<T>, ConsulError> {
        let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(dc) = &self.datacenter {
            query.push(format!("dc={}", encode(dc)));
        }
        if index > 0 {
            query.push(format!("index={index}"));
            query.push(format!("wait={}s", self.wait.as_secs().max(1)));
        }
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, query.join("&"))
        };
        let after = self.timeout();
        match tokio::time::timeout(after, self.exchange(&url)).await {
            Ok(result) => result,
            Err(_) => Err(ConsulError::Timeout { url, after }),
        }
    }

    async fn exchange<T: DeserializeOwned>(&self, url: &str) -> Result<Answer<T>, ConsulError> {
        let unreachable = |reason: String| ConsulError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| unreachable(e.to_string()))?;
        let mut request = Request::get(uri).header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("x-consul-token", &**token);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        if status == StatusCode::FORBIDDEN {
            return Err(ConsulError::AclDenied {
                url: url.to_owned(),
                body: String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        if !status.is_success() {
            return Err(ConsulError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        let index = headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ConsulError::MissingIndex {
                url: url.to_owned(),
            })?;
        let filtered_by_acls = headers
            .get("x-consul-results-filtered-by-acls")
            .is_some_and(|v| v.as_bytes() == b"true");
        let body = serde_json::from_slice(&body).map_err(|e| ConsulError::Decode {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Answer {
            index,
            filtered_by_acls,
            body,
        })
    }
}

/// The error and its causes on one line (hyper's own message is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// rustls (aws-lc-rs) trusting only the configured CA, presenting the client certificate
/// when one is set. Without TLS files the config is unused (plain http).
fn tls_config(files: Option<&TlsFiles>) -> Result<rustls::ClientConfig, ConsulError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsulError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let Some(files) = files else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let file_err = |path: &std::path::Path, reason: String| ConsulError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, ConsulError> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| file_err(path, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(path, e.to_string()))?;
        if certs.is_empty() {
            return Err(file_err(path, "no PEM certificate in the file".into()));
        }
        Ok(certs)
    };
    for cert in certs(&files.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| file_err(&files.ca_file, e.to_string()))?;
    }
    let builder = builder.with_root_certificates(roots);
    match &files.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConsulError::Tls(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
