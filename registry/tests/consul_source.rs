//! The Consul source's production client against the Consul emulator on 127.0.0.1: the
//! first list, updates through blocking queries, the index going backwards, ACLs, and an
//! outage that keeps the last good view.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hostmesh_emulators::consul::{ConsulEmulator, Instance};
use hostmesh_registry::model::TrustDomain;
use hostmesh_registry::sources::consul::{ConsulSettings, ConsulSource, ConsulView};
use tokio::sync::watch;

fn settings(emulator: &ConsulEmulator) -> ConsulSettings {
    let mut s = ConsulSettings::new(emulator.url().parse().unwrap(), TrustDomain::default());
    // Long waits: an update that arrives quickly came through a blocking query's answer,
    // not a wait that ran out.
    s.wait = Duration::from_secs(30);
    s.max_backoff = Duration::from_millis(200);
    s
}

/// Waits (at most `within`) for a view that satisfies `ok`, and returns it.
async fn until(
    rx: &mut watch::Receiver<ConsulView>,
    within: Duration,
    what: &str,
    ok: impl Fn(&ConsulView) -> bool,
) -> ConsulView {
    let found = match tokio::time::timeout(within, rx.wait_for(|v| ok(v))).await {
        Ok(Ok(v)) => Some(v.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "{what}: not within {within:?}; last view: {:#?}",
            rx.borrow().status
        )
    })
}

/// Host → sorted endpoint addresses.
fn endpoints(view: &ConsulView) -> Vec<(String, Vec<String>)> {
    view.view
        .services
        .iter()
        .map(|s| {
            let mut e: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| format!("{}:{}", e.address, e.port))
                .collect();
            e.sort();
            (s.hostname.to_string(), e)
        })
        .collect()
}

fn pair(host: &str, eps: &[&str]) -> (String, Vec<String>) {
    (
        host.to_owned(),
        eps.iter().map(|e| (*e).to_owned()).collect(),
    )
}

#[tokio::test]
async fn first_list_then_updates_through_blocking_queries() {
    let consul = ConsulEmulator::start(None).await;
    consul.register("web", Instance::new("web-1", "10.0.0.1", 8080));
    consul.register("web", Instance::new("web-2", "10.0.0.2", 8080));
    let mut sick = Instance::new("web-3", "10.0.0.3", 8080);
    sick.status = "critical".into();
    consul.register("web", sick);
    consul.register("api", Instance::new("api-1", "10.0.1.1", 9000));
    let source = ConsulSource::start(settings(&consul)).unwrap();
    let mut rx = source.subscribe();
    let first = until(&mut rx, Duration::from_secs(5), "first list", |v| {
        v.view.services.len() == 2
    })
    .await;
    assert_eq!(
        endpoints(&first),
        [
            pair("api.service.consul", &["10.0.1.1:9000"]),
            pair("web.service.consul", &["10.0.0.1:8080", "10.0.0.2:8080"])
        ],
        "only healthy instances"
    );
    assert!(first.status.healthy, "{:?}", first.status);
    let revision = first.view.revision;

    // A new instance and a recovered one arrive through the blocking queries, long before
    // the 30 s wait would run out.
    consul.register("web", Instance::new("web-4", "10.0.0.4", 8080));
    consul.set_status("web", "web-3", "passing");
    let v = until(&mut rx, Duration::from_secs(3), "update", |v| {
        endpoints(v).get(1).is_some_and(|(_, e)| e.len() == 4)
    })
    .await;
    assert!(v.view.revision > revision);
    // A new service, and a service leaving the catalog.
    consul.register("db", Instance::new("db-1", "10.0.2.1", 5432));
    consul.deregister("api", "api-1");
    let v = until(&mut rx, Duration::from_secs(3), "catalog change", |v| {
        let hosts: Vec<String> = endpoints(v).into_iter().map(|(h, _)| h).collect();
        hosts == ["db.service.consul", "web.service.consul"]
    })
    .await;
    assert!(v.status.healthy);
    // Blocking queries carried the index and the wait.
    let requests = consul.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/v1/health/service/web?passing=1&index=")
                && r.ends_with("&wait=30s")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn an_index_that_goes_backwards_resets_the_query() {
    let consul = ConsulEmulator::start(None).await;
    for i in 0..20 {
        consul.register(
            "web",
            Instance::new(&format!("web-{i}"), &format!("10.0.0.{}", i + 1), 8080),
        );
    }
    let source = ConsulSource::start(settings(&consul)).unwrap();
    let mut rx = source.subscribe();
    until(&mut rx, Duration::from_secs(5), "first list", |v| {
        v.view.services.len() == 1
    })
    .await;
    // A restore from an older snapshot, once the catalog and service queries are blocked:
    // indexes are now far below the ones the client holds.
    assert!(consul.until_blocked(2, Duration::from_secs(3)).await);
    consul.restart_with_index(3);
    consul.register("web", Instance::new("web-new", "10.0.9.9", 8080));
    // Without a reset the client would wait for an index above its old one: 30 s.
    until(
        &mut rx,
        Duration::from_secs(3),
        "change after the restart",
        |v| {
            endpoints(v)
                .first()
                .is_some_and(|(_, e)| e.contains(&"10.0.9.9:8080".to_owned()))
        },
    )
    .await;
    let requests = consul.requests();
    let after = requests
        .iter()
        .rposition(|r| r.starts_with("/v1/health/service/web?passing=1&index="))
        .unwrap();
    assert!(
        requests[..after]
            .iter()
            .any(|r| r == "/v1/health/service/web?passing=1"),
        "a non-blocking read (index 0) after the reset: {requests:#?}"
    );
}

#[tokio::test]
async fn acl_tokens_are_sent_and_refusals_reported() {
    let consul = ConsulEmulator::start(Some("s3cr3t")).await;
    consul.register("web", Instance::new("web-1", "10.0.0.1", 8080));

    let mut wrong = settings(&consul);
    wrong.token = Some("not-the-token".into());
    let refused = ConsulSource::start(wrong).unwrap();
    let mut rx = refused.subscribe();
    let v = until(&mut rx, Duration::from_secs(5), "refusal", |v| {
        v.status.last_error.is_some()
    })
    .await;
    assert!(!v.status.healthy);
    let error = v.status.last_error.unwrap();
    assert!(
        error.contains("refused the ACL token") && error.contains("ACL not found"),
        "{error}"
    );
    assert!(v.view.services.is_empty());

    let mut anonymous = until(
        &mut ConsulSource::start(settings(&consul)).unwrap().subscribe(),
        Duration::from_secs(5),
        "anonymous",
        |v| v.status.healthy,
    )
    .await;
    assert!(anonymous.view.services.is_empty());
    assert!(anonymous.status.note.take().unwrap().contains("filtered"));

    let mut right = settings(&consul);
    right.token = Some("s3cr3t".into());
    let source = ConsulSource::start(right).unwrap();
    let v = until(
        &mut source.subscribe(),
        Duration::from_secs(5),
        "with the token",
        |v| v.view.services.len() == 1,
    )
    .await;
    assert!(
        v.status.healthy && v.status.note.is_none(),
        "{:?}",
        v.status
    );
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_view_and_the_source_catches_up() {
    let consul = ConsulEmulator::start(None).await;
    consul.register("web", Instance::new("web-1", "10.0.0.1", 8080));
    // A quiet service: nothing about it changes, so a blocking retry would wait 30 s.
    consul.register("db", Instance::new("db-1", "10.0.0.9", 5432));
    let source = ConsulSource::start(settings(&consul)).unwrap();
    let mut rx = source.subscribe();
    let good = until(&mut rx, Duration::from_secs(5), "first list", |v| {
        v.view.services.len() == 2
    })
    .await;
    assert!(consul.until_blocked(3, Duration::from_secs(5)).await);

    consul.stop();
    let down = until(&mut rx, Duration::from_secs(5), "unhealthy", |v| {
        !v.status.healthy
    })
    .await;
    assert_eq!(
        endpoints(&down),
        endpoints(&good),
        "the last good view stays"
    );
    assert_eq!(down.view.revision, good.view.revision);
    assert!(
        down.status
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot reach Consul"),
        "{:?}",
        down.status
    );

    // Changes made while the source could not see them arrive once Consul is back.
    consul.register("web", Instance::new("web-2", "10.0.0.2", 8080));
    consul.resume().await;
    // Healthy within seconds (not the 30 s wait): every query, db's too, answered again.
    let back = until(&mut rx, Duration::from_secs(5), "caught up", |v| {
        v.status.healthy
            && endpoints(v)
                .iter()
                .any(|(h, e)| h.starts_with("web.") && e.len() == 2)
    })
    .await;
    assert!(back.view.revision > good.view.revision);
}
