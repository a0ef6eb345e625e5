#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use super::document::{PathIndex, split_documents};
use super::*;
use crate::model::config::{Address, ConfigObject, Kind, Resolution};
use crate::model::validate::Context;
use crate::model::{Protocol, Snapshot, TrustDomain};

const BILL: &str = include_str!("../../../tests/fixtures/bill.yaml");
const BROKEN: &str = include_str!("../../../tests/fixtures/broken.yaml");

fn parse(name: &str, text: &str) -> ParsedFile {
    parse_file(Path::new(name), text, &Context::default())
}

fn messages(errors: &[DocumentError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn bill_fixture_loads_every_object() {
    let parsed = parse("registry.d/bill.yaml", BILL);
    assert_eq!(messages(&parsed.errors), Vec::<String>::new());
    assert_eq!(parsed.documents, 5);
    let kinds: Vec<Kind> = parsed.objects.iter().map(|o| o.object.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::ServiceEntry,
            Kind::WorkloadEntry,
            Kind::WorkloadEntry,
            Kind::DestinationRule,
            Kind::VirtualService
        ]
    );
    let lines: Vec<usize> = parsed.objects.iter().map(|o| o.line).collect();
    assert_eq!(lines, [2, 20, 34, 49, 64]);

    let ConfigObject::ServiceEntry(se) = &parsed.objects[0].object else {
        panic!("not a ServiceEntry")
    };
    assert_eq!(se.meta.namespace.as_str(), "demo");
    assert_eq!(se.hosts[0].as_str(), "bill-service.demo.svc.cluster.local");
    assert_eq!(se.ports[0].number.get(), 9999);
    assert_eq!(se.ports[0].protocol, Protocol::Http);
    assert_eq!(se.resolution, Resolution::Static);
    assert_eq!(
        se.workload_selector.as_ref().unwrap().get("app"),
        Some("bill-service")
    );

    let ConfigObject::DestinationRule(dr) = &parsed.objects[3].object else {
        panic!("not a DestinationRule")
    };
    assert_eq!(dr.host.as_str(), "bill-service.demo.svc.cluster.local");
    let subsets: Vec<&str> = dr.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(subsets, ["v1", "v2"]);

    let ConfigObject::VirtualService(vs) = &parsed.objects[4].object else {
        panic!("not a VirtualService")
    };
    assert_eq!(vs.hosts[0].as_str(), "bill-service.demo.svc.cluster.local");
    let weights: Vec<Option<i32>> = vs.spec.http[0].route.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [Some(90), Some(10)]);
}

#[test]
fn bill_fixture_builds_a_snapshot_with_both_vms() {
    let parsed = parse("bill.yaml", BILL);
    let snapshot = Snapshot::build(
        7,
        parsed.objects.into_iter().map(|o| o.object),
        &TrustDomain::default(),
    );
    assert_eq!(snapshot.version(), 7);
    let services: Vec<_> = snapshot
        .services_named("bill-service.demo.svc.cluster.local")
        .collect();
    assert_eq!(services.len(), 1);
    let svc = services[0];
    let eps: Vec<String> = svc
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{}:{} v={} w={} id={} loc={} net={}",
                e.address,
                e.port,
                e.labels.get("version").unwrap_or("-"),
                e.weight.get(),
                e.identity,
                e.locality
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                e.network.as_ref().map(|n| n.as_str()).unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        eps,
        [
            "10.0.0.5:9999 v=v1 w=1 id=spiffe://cluster.local/ns/demo/sa/bill loc=eu-west/zone-a net=vm-net",
            "10.0.0.6:19999 v=v2 w=3 id=spiffe://cluster.local/ns/demo/sa/bill loc= net=-",
        ]
    );
    assert!(matches!(svc.endpoints[0].address, Address::Ip(_)));
    assert_eq!(
        svc.endpoints[0].origin.to_string(),
        "WorkloadEntry demo/bill-vm-1"
    );
    assert_eq!(snapshot.virtual_services().count(), 1);
    assert_eq!(snapshot.destination_rules().count(), 1);
    // Cheap clones share the contents.
    let clone = snapshot.clone();
    assert!(std::ptr::eq(clone.services(), snapshot.services()));
}

#[test]
fn broken_documents_are_rejected_alone_with_file_line_and_field() {
    let parsed = parse("registry.d/broken.yaml", BROKEN);
    assert_eq!(
        messages(&parsed.errors),
        [
            "registry.d/broken.yaml:10: ServiceEntry demo/bill-service: spec.ports[0].number: 70000 is not a valid port",
            "registry.d/broken.yaml:33: VirtualService demo/split: spec.http[0].route: the weights of the destinations add up to 110, not 100",
            "registry.d/broken.yaml:47: DestinationRule demo/bill: spec.subsets[0].name: a subset needs a name",
            "registry.d/broken.yaml:58: AuthorizationPolicy demo/allow-frontend: spec.action: \"PERMIT\" is not one of ALLOW, DENY, AUDIT, CUSTOM",
            "registry.d/broken.yaml:70: WorkloadEntry demo/typo: spec.adress: unknown field `adress`, expected one of address, ports, labels, network, locality, weight, serviceAccount",
            "registry.d/broken.yaml:77: illegal placement of ':' indicator",
        ]
    );
    // The good document between the broken ones still loads.
    assert_eq!(parsed.objects.len(), 1);
    assert_eq!(
        parsed.objects[0].object.key().to_string(),
        "PeerAuthentication demo/default"
    );
    // Errors of documents with a readable header carry the object's key.
    assert_eq!(
        parsed.errors[0].key.as_ref().unwrap().to_string(),
        "ServiceEntry demo/bill-service"
    );
    assert!(parsed.errors[5].key.is_none());
}

#[test]
fn header_errors_name_kind_and_api_version() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: security.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: y}\nspec: {hosts: [a.b]}\n---\nkind: Gateway\napiVersion: networking.istio.io/v1\nmetadata: {namespace: demo}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n";
    let parsed = parse("f.yaml", text);
    assert_eq!(
        messages(&parsed.errors),
        [
            "f.yaml:2: kind: kind \"Service\" is not supported (one of ServiceEntry, WorkloadEntry, WorkloadGroup, VirtualService, DestinationRule, Gateway, PeerAuthentication, AuthorizationPolicy)",
            "f.yaml:5: ServiceEntry default/y: apiVersion: apiVersion \"security.istio.io/v1\" is not accepted for ServiceEntry (one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)",
            "f.yaml:12: Gateway demo/<no name>: metadata.name: is required",
        ]
    );
}

#[test]
fn missing_namespace_defaults_and_short_names_are_qualified() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n";
    let parsed = parse("f.yaml", text);
    let ConfigObject::DestinationRule(dr) = &parsed.objects[0].object else {
        panic!("not a DestinationRule")
    };
    assert_eq!(dr.meta.namespace.as_str(), "default");
    assert_eq!(dr.host.as_str(), "reviews.default.svc.cluster.local");
}

#[test]
fn split_keeps_file_line_numbers() {
    let docs = split_documents("a: 1\n---\n# c\nb: 2\n--- \n...\n--- {c: 3}\n");
    let starts: Vec<usize> = docs.iter().map(|d| d.start_line).collect();
    assert_eq!(starts, [1, 2, 5, 6, 7]);
    let empty: Vec<bool> = docs.iter().map(|d| d.is_empty()).collect();
    assert_eq!(empty, [false, false, true, true, false]);
    assert_eq!(docs[1].text, "\n\n# c\nb: 2\n");
    assert_eq!(docs[1].content_line(), 4);
    assert_eq!(docs[4].text, "\n\n\n\n\n\n    {c: 3}\n");
    assert_eq!(docs[4].content_line(), 7);
}

#[test]
fn path_index_finds_lines_and_falls_back_to_ancestors() {
    let docs = split_documents(
        "x: 0\n---\nspec:\n  ports:\n  - number: 1\n    name: a\n  - {number: 2}\n",
    );
    let index = PathIndex::build(&docs[1]);
    assert_eq!(index.line_of("spec"), 3);
    assert_eq!(index.line_of("spec.ports[0].name"), 6);
    assert_eq!(index.line_of("spec.ports[1].number"), 7);
    assert_eq!(index.line_of("spec.ports[1].name"), 7);
    assert_eq!(index.line_of("spec.nothing.here"), 3);
}

fn file(name: &str, text: &str) -> FileContents {
    FileContents {
        path: PathBuf::from(name),
        text: Ok(text.into()),
    }
}

const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: demo}\nspec:\n  hosts: [db.example.com]\n  ports:\n  - {number: PORT, name: tcp}\n  resolution: DNS\n";

#[test]
fn invalid_new_version_keeps_the_last_good_one() {
    let ctx = Context::default();
    let first = load(
        &[file("a.yaml", &SE.replace("PORT", "5432"))],
        &State::default(),
        &ctx,
    );
    assert!(first.errors.is_empty());
    assert_eq!(first.state.objects.len(), 1);

    let second = load(
        &[file("a.yaml", &SE.replace("PORT", "0"))],
        &first.state,
        &ctx,
    );
    assert_eq!(
        messages(&second.errors),
        ["a.yaml:7: ServiceEntry demo/db: spec.ports[0].number: 0 is not a valid port"]
    );
    let entry = second.state.objects.values().next().unwrap();
    assert!(entry.stale);
    let ConfigObject::ServiceEntry(se) = &entry.object else {
        panic!("not a ServiceEntry")
    };
    assert_eq!(se.ports[0].number.get(), 5432);

    // Fixed again: the new version replaces the old one.
    let third = load(
        &[file("a.yaml", &SE.replace("PORT", "5433"))],
        &second.state,
        &ctx,
    );
    let entry = third.state.objects.values().next().unwrap();
    assert!(!entry.stale);
    let ConfigObject::ServiceEntry(se) = &entry.object else {
        panic!("not a ServiceEntry")
    };
    assert_eq!(se.ports[0].number.get(), 5433);

    // Removed from the file: gone.
    let fourth = load(&[file("a.yaml", "# empty\n")], &third.state, &ctx);
    assert!(fourth.state.objects.is_empty());
    assert!(fourth.errors.is_empty());
}

#[test]
fn unparsable_or_unreadable_file_keeps_its_objects() {
    let ctx = Context::default();
    let good = load(
        &[file("a.yaml", &SE.replace("PORT", "5432"))],
        &State::default(),
        &ctx,
    );
    let broken = load(&[file("a.yaml", "kind: [\n")], &good.state, &ctx);
    assert_eq!(broken.errors.len(), 1);
    assert_eq!(broken.state.objects.len(), 1);

    let unreadable = FileContents {
        path: PathBuf::from("a.yaml"),
        text: Err("permission denied".to_owned()),
    };
    let out = load(&[unreadable], &good.state, &ctx);
    assert_eq!(
        messages(&out.errors),
        ["a.yaml:0: cannot read file: permission denied"]
    );
    assert_eq!(out.state.objects.len(), 1);
}

#[test]
fn duplicate_objects_are_reported_and_the_first_wins() {
    let ctx = Context::default();
    let out = load(
        &[
            file("a.yaml", &SE.replace("PORT", "5432")),
            file("b.yaml", &format!("# dup\n{}", SE.replace("PORT", "6000"))),
        ],
        &State::default(),
        &ctx,
    );
    assert_eq!(
        messages(&out.errors),
        [
            "b.yaml:2: ServiceEntry demo/db: duplicate: already defined at a.yaml:1; this one is ignored"
        ]
    );
    let entry = out.state.objects.values().next().unwrap();
    assert_eq!(entry.file, PathBuf::from("a.yaml"));
}

mod watching {
    use std::collections::BTreeSet;
    use std::ffi::OsString;

    use notify::event::{AccessKind, AccessMode, CreateKind, Flag, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    use super::SE;
    use crate::model::TrustDomain;
    use crate::model::validate::Context;
    use crate::sources::static_files::StaticSource;
    use crate::sources::static_files::watch::{Change, change_of};

    fn names(list: &[&str]) -> Change {
        Change::Files(list.iter().map(OsString::from).collect::<BTreeSet<_>>())
    }

    #[test]
    fn reading_files_and_temporary_files_ask_for_nothing() {
        let read = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)))
            .add_path("/r/a.yaml".into());
        assert_eq!(change_of(&Ok(read)), None);
        let open = Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)))
            .add_path("/r/a.yaml".into());
        assert_eq!(change_of(&Ok(open)), None);
        let temporary =
            Event::new(EventKind::Create(CreateKind::File)).add_path("/r/.a.yaml.tmp".into());
        assert_eq!(change_of(&Ok(temporary)), None);
        let other = Event::new(EventKind::Create(CreateKind::File)).add_path("/r/notes.txt".into());
        assert_eq!(change_of(&Ok(other)), None);
    }

    #[test]
    fn a_rename_onto_a_registry_file_names_it_and_lost_events_ask_for_the_folder() {
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/r/.a.yaml.tmp".into())
            .add_path("/r/a.yaml".into());
        assert_eq!(change_of(&Ok(rename)), Some(names(&["a.yaml"])));
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(change_of(&Ok(overflow)), Some(Change::Folder));
        assert_eq!(
            change_of(&Err(notify::Error::generic("queue overflow"))),
            Some(Change::Folder)
        );
    }

    #[test]
    fn reload_files_reads_only_the_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, port: &str, ns: &str| {
            let text = SE
                .replace("PORT", port)
                .replace("namespace: demo", &format!("namespace: {ns}"));
            std::fs::write(dir.path().join(name), text).unwrap();
        };
        write("a.yaml", "5432", "demo");
        write("b.yaml", "6000", "other");
        let mut source = StaticSource::new(dir.path(), Context::default(), TrustDomain::default());
        let first = source.reload().unwrap();
        assert_eq!(first.snapshot.services().len(), 2);

        // b changes on disk but only a is named: b is not read again.
        write("a.yaml", "5433", "demo");
        write("b.yaml", "6001", "other");
        let names: BTreeSet<OsString> = [OsString::from("a.yaml")].into();
        let view = source.reload_files(&names).unwrap();
        let ports: Vec<u16> = view
            .snapshot
            .services()
            .iter()
            .flat_map(|s| s.ports.iter().map(|p| p.number.get()))
            .collect();
        assert_eq!(ports, [5433, 6000]);

        // Named again without a change: nothing new.
        assert!(source.reload_files(&names).is_none());

        // A named file that is gone drops out with its objects.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let view = source.reload_files(&names).unwrap();
        assert_eq!(view.snapshot.services().len(), 1);

        // The whole folder catches up with b.
        let view = source.reload_if_changed().unwrap().unwrap();
        assert_eq!(view.snapshot.services()[0].ports[0].number.get(), 6001);
    }
}
