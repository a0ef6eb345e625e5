//! Draining: the listener stops accepting, open connections finish, the drain completes.

use hostmesh_proxy::Settings;
use hostmesh_proxy::config::{MtlsMode, Protocol};
use hostmesh_proxy::drain;

use crate::common::*;

#[tokio::test]
async fn drain_stops_accepting_and_waits_for_open_connections() {
    let mesh = Mesh::new();
    let bill = mesh.proxy(mesh.slot(BILL), Settings::default());
    let app = echo_app("bill").await;
    let listener = bill.inbound("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let inbound = listener.local_addr().unwrap();
    install(
        &bill,
        &inbound_spec(&[(inbound, app, Protocol::Http1, MtlsMode::Strict)]),
    );
    let (trigger, watcher) = drain::channel();
    let serving = tokio::spawn(listener.run(watcher));

    let front = mesh.proxy(mesh.slot(FRONT), Settings::default());
    let (front_trigger, front_watcher) = drain::channel();
    let outbound = front.outbound(vip()).await.unwrap();
    let vip = outbound.local_addr().unwrap();
    let front_serving = tokio::spawn(outbound.run(front_watcher));
    let cluster = mtls_cluster("bill", &[inbound], &[BILL]);
    let service = http_service(vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&front, &outbound_spec(vec![cluster], vec![service]));

    let mut client = h1(vip).await;
    assert_eq!(send(&mut client, get("/")).await.0, 200);

    // Draining front: its listener closes, the idle keep-alive connection is shut down
    // gracefully, and the drain finishes within the bound.
    tokio::time::timeout(BOUND, front_trigger.drain())
        .await
        .expect("front drains");
    tokio::time::timeout(BOUND, front_serving)
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(vip).await.is_err());
    assert!(
        client.ready().await.is_err(),
        "the client connection was closed"
    );

    tokio::time::timeout(BOUND, trigger.drain())
        .await
        .expect("bill drains");
    tokio::time::timeout(BOUND, serving).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(inbound).await.is_err());
}
