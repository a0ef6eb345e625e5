//! Who may connect: certificate, namespace, node id, type URLs; the status over HTTP.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use hostmesh_registry::xds::server::http::{CONNECTIONS_PATH, serve_status};
use hostmesh_registry::xds::type_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn cds(node_id: &str, namespace: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url::CLUSTER.to_owned(),
        node: Some(node(node_id, namespace)),
        ..Default::default()
    }
}

#[tokio::test]
async fn no_certificate_no_config() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"])])).await;
    let err = SotwClient::open(env.channel(None).await, cds(NODE_ID, "demo"))
        .await
        .err()
        .expect("served without a certificate");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    assert!(err.message().contains("client certificate"), "{err}");
    let delta = DeltaDiscoveryRequest {
        type_url: type_url::CLUSTER.to_owned(),
        node: Some(node(NODE_ID, "demo")),
        ..Default::default()
    };
    let err = DeltaClient::open(env.channel(None).await, delta)
        .await
        .err()
        .expect("served without a certificate");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    assert!(env.ads.status().is_empty());
    env.stop();
}

#[tokio::test]
async fn a_node_claiming_another_namespace_is_refused() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"])])).await;
    // Certificate of namespace demo, metadata says prod.
    let err = SotwClient::open(env.agent_channel().await, cds(NODE_ID, "prod"))
        .await
        .err()
        .expect("served a node of another namespace");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains("spiffe://cluster.local/ns/demo/sa/bill"),
        "{err}"
    );
    // The node id says prod.
    let id = "sidecar~10.0.0.5~vm-1.prod~prod.svc.cluster.local";
    let err = SotwClient::open(env.agent_channel().await, cds(id, "demo"))
        .await
        .err()
        .expect("served a node of another namespace");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(env.ads.status().is_empty());
    env.stop();
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"])])).await;
    let err = SotwClient::open(env.agent_channel().await, cds("garbage", "demo"))
        .await
        .err()
        .expect("served a garbage node id");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("malformed node id \"garbage\""),
        "{err}"
    );

    let mut no_node = cds(NODE_ID, "demo");
    no_node.node = None;
    let err = SotwClient::open(env.agent_channel().await, no_node)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // An unknown type URL ends the stream with INVALID_ARGUMENT naming it.
    let mut unknown = cds(NODE_ID, "demo");
    unknown.type_url = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into();
    let mut client = SotwClient::open(env.agent_channel().await, unknown)
        .await
        .unwrap();
    let err = client.next().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("TypedExtensionConfig"), "{err}");
    env.stop();
}

#[tokio::test]
async fn status_is_served_as_json() {
    let env = Env::start(snapshot(1, &[("a", &["10.1.0.1"])])).await;
    let mut client = SotwClient::open(env.agent_channel().await, cds(NODE_ID, "demo"))
        .await
        .unwrap();
    let response = client.recv().await;
    client
        .send(DiscoveryRequest {
            type_url: type_url::CLUSTER.to_owned(),
            version_info: response.version_info.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    env.wait_status("ACKed", |s| {
        s.iter()
            .any(|n| n.types.values().any(|t| t.acked.is_some()))
    })
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_status(
        listener,
        env.ads.clone(),
        None,
        std::future::pending(),
    ));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let get = format!("GET {CONNECTIONS_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(get.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(BOUND, tcp.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let node = &json[0];
    assert_eq!(node["id"], NODE_ID);
    assert_eq!(node["identity"], "spiffe://cluster.local/ns/demo/sa/bill");
    assert_eq!(node["mode"], "state-of-the-world");
    assert_eq!(
        node["types"][type_url::CLUSTER]["acked"],
        response.version_info.as_str()
    );
    env.stop();
}
