//! Outbound L4 routes on the data path: a TLS route is chosen by the server name of the
//! client's `ClientHello` (read, never terminated: the bytes go on unchanged and the client's
//! TLS session ends at the backend), then a cluster by weight, then an endpoint. A connection
//! no route takes gets the listener's unknown-destination rule (passthrough or refusal).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::Proxy;
use crate::config::L4Routes;
use crate::outbound::{passthrough_or_refuse, tcp_to_cluster};
use crate::sni::read_client_hello;

/// How long a client may take to send its `ClientHello` (Envoy's listener filter timeout).
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) async fn serve(
    proxy: &Proxy,
    mut tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    listen: Option<SocketAddr>,
    service: &str,
    routes: &L4Routes,
) {
    let (initial, server_name) = if routes.needs_server_name() {
        read_client_hello(&mut tcp, CLIENT_HELLO_TIMEOUT).await
    } else {
        (Vec::new(), None)
    };
    let Some(clusters) = routes.choose(server_name.as_deref()) else {
        tracing::debug!(%peer, %dst, service, server_name, "no TLS route for the server name");
        let config = proxy.config.current();
        return passthrough_or_refuse(proxy, &config, tcp, peer, dst, listen, &initial).await;
    };
    let cluster = clusters.pick();
    tracing::debug!(%peer, %dst, service, server_name, cluster = cluster.name(), "L4 route");
    if let Err(error) = tcp_to_cluster(proxy, tcp, cluster, &initial).await {
        tracing::info!(%peer, %dst, service, %error, "TCP proxy failed");
    }
}
