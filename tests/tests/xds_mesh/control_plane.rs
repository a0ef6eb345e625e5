//! How the proxies live with their control server: a server that only speaks state of the
//! world, a server that goes away and comes back, readiness, and a config swap under a
//! request in flight.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use hostmesh_registry::xds::server::{Mode, NodeStatus};
use hostmesh_registry::xds::type_url;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::mesh::*;
use crate::world::{Setup, World};

/// Every node is connected in `mode` and runs what it was sent, for every type.
fn all_acked(nodes: &[NodeStatus], count: usize, mode: Mode) -> bool {
    nodes.len() == count
        && nodes.iter().all(|n| {
            n.mode == mode
                && type_url::ALL.iter().all(|t| {
                    n.types
                        .get(*t)
                        .is_some_and(|s| s.sent.is_some() && s.acked == s.sent)
                })
        })
}

#[tokio::test]
async fn a_server_without_delta_gets_state_of_the_world_and_traffic_flows() {
    let setup = Setup {
        delta: false,
        ..Setup::default()
    };
    let world = World::start(setup, [app("v1").await, app("v2").await]).await;
    let (v1, v2) = world.count(100).await;
    assert!(v1 > 0 && v2 > 0, "50/50 over state of the world: {v1}/{v2}");
    world
        .control
        .wait_status("three state-of-the-world streams, every type ACKed", |n| {
            all_acked(n, 3, Mode::StateOfTheWorld)
        })
        .await;
    let tap = world.control.tap();
    assert!(
        tap.delta_refused.load(Ordering::SeqCst) >= 3,
        "each proxy tried delta first"
    );
    let sent = tap.sent();
    assert!(
        sent[type_url::CLUSTER] > 0 && sent[type_url::ENDPOINT] > 0,
        "{sent:?}"
    );
}

#[tokio::test]
async fn traffic_survives_the_control_server_going_away_and_a_restart_resumes_without_a_resend() {
    let mut world = World::new((50, 50)).await;
    world
        .control
        .wait_status("every node ACKed", |n| all_acked(n, 3, Mode::Delta))
        .await;

    world.control.stop().await;
    for host in std::iter::once(&world.front).chain(&world.bills) {
        let xds = host.xds.as_ref().unwrap();
        assert!(
            *xds.ready.borrow(),
            "a proxy stays ready while the server is away"
        );
    }
    let (v1, v2) = world.count(200).await;
    assert!(
        v1 > 0 && v2 > 0,
        "still 50/50 on the config in place: {v1}/{v2}"
    );

    world.control.restart().await;
    world
        .control
        .wait_status("every node back, every type ACKed", |n| {
            all_acked(n, 3, Mode::Delta)
        })
        .await;
    // The clients said what they hold (`initial_resource_versions`): nothing is sent again.
    let resent: usize = world.control.tap().sent().values().sum();
    assert_eq!(
        resent,
        0,
        "resources sent again: {:?}",
        world.control.tap().sent()
    );

    // A change after the restart reaches the proxies, and only the change is sent.
    world.publish((100, 0)).await;
    world.until_only_v1(50).await;
    assert_eq!(world.count(200).await, (200, 0));
    let sent = world.control.tap().sent();
    assert!(
        sent[type_url::ROUTE] > 0 && sent.iter().all(|(t, n)| *n == 0 || t == type_url::ROUTE),
        "only route configurations changed: {sent:?}"
    );
}

#[tokio::test]
async fn readiness_waits_for_a_complete_config() {
    let setup = Setup {
        weights: (100, 0),
        start_front: false,
        ..Setup::default()
    };
    let mut world = World::start(setup, [app("v1").await, app("v2").await]).await;
    world.control.tap().hold_endpoints(true);
    world.control.start_xds(&mut world.front);

    // front holds clusters (ACKed) but not their endpoints: not ready, nothing served.
    world
        .control
        .wait_status("front ACKed the clusters", |nodes| {
            nodes.iter().any(|n| {
                n.id.contains("~front.demo~")
                    && n.types
                        .get(type_url::CLUSTER)
                        .is_some_and(|t| t.acked.is_some())
            })
        })
        .await;
    let ready = world.front.xds.as_ref().unwrap().ready.clone();
    assert!(!*ready.borrow(), "ready without endpoints");
    assert!(
        !answers(world.vip).await,
        "an unready proxy served bill-service"
    );

    world.control.tap().hold_endpoints(false);
    world.front.ready().await;
    assert_eq!(world.count(20).await, (20, 0));
}

#[tokio::test]
async fn a_proxy_whose_control_server_is_unreachable_never_becomes_ready() {
    let control = Control::start(snapshot(1, "")).await;
    // A port that accepts TCP and closes it at once: every attempt fails, and is counted.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let block = loopback_block();
    let mut host = control.host(ip(block, 20), "front", "front");
    host.settings.address = dead.local_addr().unwrap();
    let outbound = control
        .outbound(&host, SocketAddr::new(ip(block, 10), 0))
        .await;
    control.start_xds(&mut host);
    for attempt in 1..=3 {
        let accepted = tokio::time::timeout(BOUND, dead.accept()).await;
        assert!(accepted.is_ok(), "attempt {attempt} never came");
    }
    let xds = host.xds.as_ref().unwrap();
    assert!(!*xds.ready.borrow(), "ready without a control server");
    assert!(!xds.task.is_finished(), "the client gave up");
    assert!(!answers(outbound).await, "served without a config");
}

/// Whether an HTTP request for bill-service to `addr` gets any HTTP answer.
async fn answers(addr: SocketAddr) -> bool {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "bill-service.demo.svc.cluster.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let sent = tokio::time::timeout(BOUND, sender.send_request(req)).await;
    assert!(sent.is_ok(), "the proxy neither answered nor closed");
    matches!(sent, Ok(Ok(_)))
}

#[tokio::test]
async fn a_request_in_flight_across_a_config_swap_completes_where_it_started() {
    let (arrived_tx, mut arrived) = mpsc::channel(1);
    let (release, release_rx) = watch::channel(false);
    let hold = Hold {
        arrived: arrived_tx,
        release: release_rx,
    };
    let apps = [app_with("v1", Some(hold)).await, app("v2").await];
    let setup = Setup {
        weights: (100, 0),
        ..Setup::default()
    };
    let mut world = World::start(setup, apps).await;

    let mut slow = Client::connect(world.vip).await;
    let in_flight = tokio::spawn(async move { slow.get_path("/slow").await });
    let reached = tokio::time::timeout(BOUND, arrived.recv()).await;
    assert!(
        matches!(reached, Ok(Some(()))),
        "the slow request never reached v1"
    );

    // Everything moves to v2 while v1 still holds its answer.
    world.publish((0, 100)).await;
    world.until(50, (0, 50)).await;

    release.send_replace(true);
    let (status, app, xfcc) = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("the request in flight completed")
        .unwrap();
    assert_eq!(
        (status.as_u16(), app.as_str(), xfcc.as_str()),
        (200, "v1", "yes")
    );
}
