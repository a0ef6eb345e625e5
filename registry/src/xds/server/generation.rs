//! Generations: one translated snapshot each. The shared resources are computed once per
//! snapshot, indexed by type and name, and diffed against the previous generation once, so
//! that each stream only looks at the names that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::model::Snapshot;
use crate::xds::{Resource, ResourceSet, type_url};

/// A resource name, shared between a generation and the streams that track it.
pub type Name = Arc<str>;

/// A short fingerprint of a resource version, for per-stream bookkeeping (8 bytes a name
/// instead of a string).
pub fn version_key(version: &str) -> u64 {
    let mut h = DefaultHasher::new();
    version.hash(&mut h);
    h.finish()
}

/// Resources of the served types, by type URL and name.
#[derive(Debug, Default)]
pub struct Indexed {
    by_type: HashMap<&'static str, BTreeMap<Name, Resource>>,
}

impl Indexed {
    /// Indexes the served types of `set` (types outside [`type_url::ALL`] are not served).
    pub fn new(set: &ResourceSet) -> Self {
        let mut by_type = HashMap::new();
        for t in type_url::ALL {
            let map: BTreeMap<Name, Resource> = set
                .of_type(t)
                .map(|r| (Name::from(r.name.as_str()), r.clone()))
                .collect();
            if !map.is_empty() {
                by_type.insert(t, map);
            }
        }
        Self { by_type }
    }

    pub fn of_type(&self, type_url: &str) -> Option<&BTreeMap<Name, Resource>> {
        self.by_type.get(type_url)
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<(&Name, &Resource)> {
        self.by_type.get(type_url)?.get_key_value(name)
    }

    /// Names whose version differs between `self` and `other` (added, changed or removed).
    pub fn changed_names(&self, other: &Indexed, type_url: &str) -> Vec<Name> {
        let empty = BTreeMap::new();
        let new = self.of_type(type_url).unwrap_or(&empty);
        let old = other.of_type(type_url).unwrap_or(&empty);
        let mut changed: Vec<Name> = new
            .iter()
            .filter(|(n, r)| old.get(*n).is_none_or(|o| o.version != r.version))
            .map(|(n, _)| n.clone())
            .collect();
        changed.extend(old.keys().filter(|n| !new.contains_key(*n)).cloned());
        changed
    }

    /// A digest of every (name, version) of one type, in name order.
    pub fn digest(&self, type_url: &str) -> u64 {
        let mut h = DefaultHasher::new();
        for (name, r) in self.of_type(type_url).into_iter().flatten() {
            name.hash(&mut h);
            r.version.hash(&mut h);
        }
        h.finish()
    }
}

/// One translated snapshot.
#[derive(Debug)]
pub struct Generation {
    /// Counts from 1 in each server process.
    pub number: u64,
    pub snapshot: Snapshot,
    pub shared: Indexed,
    /// Names added, changed or removed since generation `number - 1`, by type.
    changed: HashMap<&'static str, Vec<Name>>,
    /// [`Indexed::digest`] of each type.
    digests: HashMap<&'static str, u64>,
}

impl Generation {
    /// The first generation: every name counts as changed.
    pub fn first(snapshot: Snapshot, shared: &ResourceSet) -> Self {
        Self::build(1, snapshot, Indexed::new(shared), None)
    }

    /// The generation after `previous`, with the names that changed since.
    pub fn next(previous: &Generation, snapshot: Snapshot, shared: &ResourceSet) -> Self {
        Self::build(
            previous.number + 1,
            snapshot,
            Indexed::new(shared),
            Some(&previous.shared),
        )
    }

    fn build(number: u64, snapshot: Snapshot, shared: Indexed, prev: Option<&Indexed>) -> Self {
        let empty = Indexed::default();
        let prev = prev.unwrap_or(&empty);
        let mut changed = HashMap::new();
        let mut digests = HashMap::new();
        for t in type_url::ALL {
            let names = shared.changed_names(prev, t);
            if !names.is_empty() {
                changed.insert(t, names);
            }
            digests.insert(t, shared.digest(t));
        }
        Self {
            number,
            snapshot,
            shared,
            changed,
            digests,
        }
    }

    /// Names of `type_url` added, changed or removed since the previous generation.
    pub fn changed(&self, type_url: &str) -> &[Name] {
        self.changed.get(type_url).map_or(&[], Vec::as_slice)
    }

    pub fn digest(&self, type_url: &str) -> u64 {
        self.digests.get(type_url).copied().unwrap_or(0)
    }
}

/// What one node sees: the shared generation plus its own resources.
#[derive(Debug)]
pub struct NodeView {
    pub generation: Arc<Generation>,
    pub own: Indexed,
    /// Own names that changed in the last refresh, by type.
    own_changed: HashMap<&'static str, Vec<Name>>,
    /// Whether the last refresh skipped generations (so the per-generation diff is not
    /// enough and streams must compare everything).
    skipped: bool,
}

impl NodeView {
    pub fn new(generation: Arc<Generation>, own: &ResourceSet) -> Self {
        Self {
            generation,
            own: Indexed::new(own),
            own_changed: HashMap::new(),
            skipped: false,
        }
    }

    /// Moves to a newer generation with the node's own resources recomputed for it.
    pub fn refresh(&mut self, generation: Arc<Generation>, own: &ResourceSet) {
        let own = Indexed::new(own);
        self.own_changed = type_url::ALL
            .into_iter()
            .map(|t| (t, own.changed_names(&self.own, t)))
            .filter(|(_, names)| !names.is_empty())
            .collect();
        self.skipped = generation.number != self.generation.number + 1;
        self.own = own;
        // The last stream to move on would otherwise free the whole previous generation
        // before sending its push.
        crate::drop_later::drop_later(std::mem::replace(&mut self.generation, generation));
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<(&Name, &Resource)> {
        self.own
            .get(type_url, name)
            .or_else(|| self.generation.shared.get(type_url, name))
    }

    /// Every resource of one type, shared then own.
    pub fn all(&self, type_url: &str) -> impl Iterator<Item = (&Name, &Resource)> {
        let shared = self
            .generation
            .shared
            .of_type(type_url)
            .into_iter()
            .flatten();
        shared.chain(self.own.of_type(type_url).into_iter().flatten())
    }

    /// Names of one type that may differ from the previous view: `None` when generations
    /// were skipped and everything must be compared.
    pub fn changed(&self, type_url: &str) -> Option<BTreeSet<&str>> {
        if self.skipped {
            return None;
        }
        let own = self.own_changed.get(type_url).into_iter().flatten();
        Some(
            self.generation
                .changed(type_url)
                .iter()
                .chain(own)
                .map(|n| &**n)
                .collect(),
        )
    }

    /// A digest of the whole type (for state-of-the-world wildcard versions).
    pub fn digest(&self, type_url: &str) -> u64 {
        let mut h = DefaultHasher::new();
        self.generation.digest(type_url).hash(&mut h);
        self.own.digest(type_url).hash(&mut h);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::util::pack_any;

    use super::*;

    fn clusters(specs: &[(&str, &str)]) -> ResourceSet {
        let mut set = ResourceSet::new();
        for (name, alt) in specs {
            let cluster = Cluster {
                name: (*name).to_owned(),
                alt_stat_name: (*alt).to_owned(),
                ..Default::default()
            };
            set.insert(Resource::new(*name, pack_any(cluster)));
        }
        set
    }

    fn names(names: &[Name]) -> Vec<&str> {
        let mut names: Vec<&str> = names.iter().map(|n| &**n).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn the_diff_names_added_changed_and_removed_resources_only() {
        let first = Generation::first(
            Snapshot::default(),
            &clusters(&[("a", "1"), ("b", "1"), ("c", "1")]),
        );
        assert_eq!(names(first.changed(type_url::CLUSTER)), ["a", "b", "c"]);
        let next = Generation::next(
            &first,
            Snapshot::default(),
            &clusters(&[("a", "1"), ("b", "2"), ("d", "1")]),
        );
        assert_eq!(next.number, 2);
        assert_eq!(names(next.changed(type_url::CLUSTER)), ["b", "c", "d"]);
        assert!(next.changed(type_url::ENDPOINT).is_empty());
        assert_ne!(
            first.digest(type_url::CLUSTER),
            next.digest(type_url::CLUSTER)
        );
    }

    #[test]
    fn a_view_that_skipped_generations_compares_everything() {
        let g1 = Arc::new(Generation::first(
            Snapshot::default(),
            &clusters(&[("a", "1")]),
        ));
        let g2 = Arc::new(Generation::next(
            &g1,
            Snapshot::default(),
            &clusters(&[("a", "2")]),
        ));
        let g3 = Arc::new(Generation::next(
            &g2,
            Snapshot::default(),
            &clusters(&[("a", "3")]),
        ));
        let mut view = NodeView::new(g1, &ResourceSet::new());
        view.refresh(g2, &clusters(&[("own", "1")]));
        assert_eq!(
            view.changed(type_url::CLUSTER)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["a", "own"]
        );
        assert!(view.get(type_url::CLUSTER, "own").is_some());
        view.refresh(g3.clone(), &clusters(&[("own", "1")]));
        assert_eq!(
            view.changed(type_url::CLUSTER)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["a"]
        );
        let g5 = Generation::next(
            &Generation::next(&g3, Snapshot::default(), &clusters(&[])),
            Snapshot::default(),
            &clusters(&[("a", "5")]),
        );
        view.refresh(Arc::new(g5), &clusters(&[("own", "1")]));
        assert!(view.changed(type_url::CLUSTER).is_none());
    }
}
