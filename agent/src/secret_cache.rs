//! The agent's secret values, in memory only (pure: no I/O, no runtime).
//! Values are keyed by name and version, wiped (`Zeroizing`) when dropped,
//! and dropped as soon as no allocation references them; a denial from the
//! control plane is kept until the allocation asks again. Nothing here is
//! ever written to disk, and `Debug` shows names and versions only.

use argosy_proto::v1::{Allocation, SecretRef};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use zeroize::Zeroizing;

/// One version of one secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretId {
    pub name: String,
    pub version: u32,
}

impl SecretId {
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }

    pub fn from_wire(secret: &SecretRef) -> Self {
        Self::new(&secret.name, secret.version)
    }

    pub fn to_wire(&self) -> SecretRef {
        SecretRef {
            name: self.name.clone(),
            version: self.version,
        }
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The secrets an allocation's container needs, as env or as files.
pub fn wanted_by(allocation: &Allocation) -> BTreeSet<SecretId> {
    let Some(spec) = &allocation.container else {
        return BTreeSet::new();
    };
    spec.secret_env
        .iter()
        .filter_map(|e| e.secret.as_ref())
        .chain(spec.secret_files.iter().filter_map(|f| f.secret.as_ref()))
        .map(SecretId::from_wire)
        .collect()
}

/// The secrets the allocations meant to run need.
pub fn referenced<'a>(allocations: impl IntoIterator<Item = &'a Allocation>) -> BTreeSet<SecretId> {
    allocations
        .into_iter()
        .filter(|a| a.run)
        .flat_map(wanted_by)
        .collect()
}

/// What the cache knows about one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known<'a> {
    Value(&'a [u8]),
    Denied(&'a str),
    Unknown,
}

/// Secret values and denials, by name and version.
#[derive(Default)]
pub struct SecretCache {
    values: BTreeMap<SecretId, Zeroizing<Vec<u8>>>,
    denied: BTreeMap<SecretId, String>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .field("denied", &self.denied)
            .finish()
    }
}

impl SecretCache {
    /// Keeps a value (replacing a denial of the same version).
    pub fn insert(&mut self, id: SecretId, value: Zeroizing<Vec<u8>>) {
        self.denied.remove(&id);
        self.values.insert(id, value);
    }

    /// Keeps a denial, unless the value is already known.
    pub fn deny(&mut self, id: SecretId, reason: String) {
        if !self.values.contains_key(&id) {
            self.denied.insert(id, reason);
        }
    }

    pub fn get(&self, id: &SecretId) -> Known<'_> {
        if let Some(value) = self.values.get(id) {
            return Known::Value(value);
        }
        match self.denied.get(id) {
            Some(reason) => Known::Denied(reason),
            None => Known::Unknown,
        }
    }

    /// Forgets the denials of `ids`, so that they are asked for again.
    pub fn forget_denials<'a>(&mut self, ids: impl IntoIterator<Item = &'a SecretId>) {
        for id in ids {
            self.denied.remove(id);
        }
    }

    /// Those of `wanted` with neither a value nor a denial.
    pub fn unknown(&self, wanted: &BTreeSet<SecretId>) -> BTreeSet<SecretId> {
        wanted
            .iter()
            .filter(|id| self.get(id) == Known::Unknown)
            .cloned()
            .collect()
    }

    /// Drops (and wipes) every value and denial not in `referenced`.
    pub fn retain(&mut self, referenced: &BTreeSet<SecretId>) {
        self.values.retain(|id, _| referenced.contains(id));
        self.denied.retain(|id, _| referenced.contains(id));
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{ContainerSpec, SecretEnv, SecretFile};

    fn value(text: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(text.as_bytes().to_vec())
    }

    fn id(name: &str, version: u32) -> SecretId {
        SecretId::new(name, version)
    }

    fn allocation(id: &str, run: bool, env: &[(&str, u32)], files: &[(&str, u32)]) -> Allocation {
        let secret = |(name, version): &(&str, u32)| {
            Some(SecretRef {
                name: (*name).into(),
                version: *version,
            })
        };
        Allocation {
            id: id.into(),
            run,
            container: Some(ContainerSpec {
                secret_env: env
                    .iter()
                    .map(|s| SecretEnv {
                        variable: "V".into(),
                        secret: secret(s),
                    })
                    .collect(),
                secret_files: files
                    .iter()
                    .map(|s| SecretFile {
                        secret: secret(s),
                        file: "f".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn allocations_want_their_env_and_file_secrets() {
        let a = allocation(
            "a",
            true,
            &[("crm/db", 4), ("crm/api", 3)],
            &[("crm/db", 4)],
        );
        assert_eq!(
            wanted_by(&a),
            BTreeSet::from([id("crm/api", 3), id("crm/db", 4)])
        );
        let draining = allocation("b", false, &[("crm/old", 1)], &[]);
        let other = allocation("c", true, &[], &[("crm/tls", 2)]);
        assert_eq!(
            referenced([&a, &draining, &other]),
            BTreeSet::from([id("crm/api", 3), id("crm/db", 4), id("crm/tls", 2)])
        );
        assert!(wanted_by(&Allocation::default()).is_empty());
        assert_eq!(id("crm/db", 4).to_string(), "crm/db@4");
        assert_eq!(SecretId::from_wire(&id("x", 1).to_wire()), id("x", 1));
    }

    #[test]
    fn values_denials_and_what_is_still_unknown() {
        let mut cache = SecretCache::default();
        let wanted = BTreeSet::from([id("a", 1), id("b", 1), id("c", 1)]);
        assert_eq!(cache.unknown(&wanted), wanted);
        cache.insert(id("a", 1), value("alpha"));
        cache.deny(id("b", 1), "not yours".into());
        assert_eq!(cache.get(&id("a", 1)), Known::Value(b"alpha"));
        assert_eq!(cache.get(&id("b", 1)), Known::Denied("not yours"));
        assert_eq!(cache.get(&id("a", 2)), Known::Unknown);
        assert_eq!(cache.unknown(&wanted), BTreeSet::from([id("c", 1)]));
        // A retry asks again.
        cache.forget_denials([&id("b", 1)]);
        assert_eq!(cache.get(&id("b", 1)), Known::Unknown);
        // A value wins over a denial, in either order.
        cache.deny(id("a", 1), "late denial".into());
        assert_eq!(cache.get(&id("a", 1)), Known::Value(b"alpha"));
        cache.deny(id("c", 1), "first".into());
        cache.insert(id("c", 1), value("gamma"));
        assert_eq!(cache.get(&id("c", 1)), Known::Value(b"gamma"));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn values_no_allocation_references_are_dropped() {
        let mut cache = SecretCache::default();
        cache.insert(id("a", 1), value("alpha"));
        cache.insert(id("a", 2), value("alpha-2"));
        cache.deny(id("b", 1), "no".into());
        cache.retain(&BTreeSet::from([id("a", 2)]));
        assert_eq!(cache.get(&id("a", 1)), Known::Unknown);
        assert_eq!(cache.get(&id("a", 2)), Known::Value(b"alpha-2"));
        assert_eq!(cache.get(&id("b", 1)), Known::Unknown);
        cache.retain(&BTreeSet::new());
        assert!(cache.is_empty());
    }

    #[test]
    fn debug_shows_names_never_values() {
        let mut cache = SecretCache::default();
        cache.insert(id("crm/db", 4), value("hunter2"));
        let printed = format!("{cache:?}");
        assert!(
            printed.contains("crm/db") && !printed.contains("hunter2"),
            "{printed}"
        );
    }

    /// Pure: the caller reads the files and holds the clock.
    #[test]
    fn this_module_does_no_io() {
        let source = include_str!("secret_cache.rs");
        let code: String = source[..source.find("#[cfg(test)]").unwrap()]
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        for banned in [
            concat!("tok", "io"),
            concat!("std::", "fs"),
            concat!("std::", "net"),
            concat!("SystemTime", "::now"),
            concat!("Instant", "::now"),
            concat!("crate::", "docker"),
        ] {
            assert!(!code.contains(banned), "secret_cache.rs uses {banned}");
        }
    }
}
