//! The static source's watcher, for real: a temporary folder, a file renamed into place the
//! way editors and Ansible do it, and a new snapshot seen within a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hostmesh_registry::model::TrustDomain;
use hostmesh_registry::model::validate::Context;
use hostmesh_registry::sources::static_files::{StaticSource, StaticView};
use tokio::sync::watch;

const BILL: &str = include_str!("fixtures/bill.yaml");
const HOST: &str = "bill-service.demo.svc.cluster.local";

/// Waits (at most `bound`) for a view that satisfies `pred`.
async fn wait_for(
    rx: &mut watch::Receiver<StaticView>,
    bound: Duration,
    pred: impl Fn(&StaticView) -> bool,
) -> StaticView {
    tokio::time::timeout(bound, async {
        loop {
            {
                let view = rx.borrow_and_update();
                if pred(&view) {
                    return view.clone();
                }
            }
            rx.changed().await.expect("watcher stopped");
        }
    })
    .await
    .expect("no matching snapshot in time")
}

#[tokio::test]
async fn file_renamed_into_place_is_published() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let source = StaticSource::new(dir.path(), Context::default(), TrustDomain::default());
    let watcher = source.watch().unwrap();
    let first = watcher.current();
    assert_eq!(first.snapshot.version(), 1);
    assert!(first.snapshot.services().is_empty());

    let mut rx = watcher.subscribe();
    let tmp = dir.path().join(".bill.yaml.tmp");
    std::fs::write(&tmp, BILL).unwrap();
    std::fs::rename(&tmp, dir.path().join("bill.yaml")).unwrap();

    let view = wait_for(&mut rx, Duration::from_secs(1), |v| {
        v.snapshot.services_named(HOST).count() == 1
    })
    .await;
    assert!(view.snapshot.version() > 1);
    assert!(view.errors.is_empty());
    let svc = view.snapshot.services_named(HOST).next().unwrap();
    assert_eq!(svc.endpoints.len(), 2);

    // A broken edit keeps the last good ServiceEntry and reports the error.
    let broken = BILL.replace("number: 9999", "number: 70000");
    std::fs::write(&tmp, broken).unwrap();
    std::fs::rename(&tmp, dir.path().join("bill.yaml")).unwrap();
    let view = wait_for(&mut rx, Duration::from_secs(1), |v| !v.errors.is_empty()).await;
    let errors: Vec<String> = view.errors.iter().map(ToString::to_string).collect();
    let file = dir.path().join("bill.yaml");
    assert_eq!(
        errors,
        [format!(
            "{}:12: ServiceEntry demo/bill-service: spec.ports[0].number: 70000 is not a valid port",
            file.display()
        )]
    );
    let svc = view.snapshot.services_named(HOST).next().unwrap();
    assert_eq!(svc.ports[0].number.get(), 9999);

    // Removing the file removes its objects.
    std::fs::remove_file(&file).unwrap();
    wait_for(&mut rx, Duration::from_secs(1), |v| {
        v.snapshot.services().is_empty() && v.errors.is_empty()
    })
    .await;
}

#[test]
fn missing_folder_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = StaticSource::new(&missing, Context::default(), TrustDomain::default())
        .watch()
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read registry folder {}: ",
            missing.display()
        )),
        "{err}"
    );
}
