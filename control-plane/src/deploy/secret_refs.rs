//! Secret references resolved to versions (pure): which version each
//! reference of a spec means in one revision, what `apply` reports when a
//! secret or a pinned version is missing, which versions a revision's
//! allocations may receive, and which versions a rotation moves a revision
//! to.
//!
//! A reference either pins a version (`crm/api-key@3`) or follows the
//! latest one (`crm/db-password`). The versions the followed names had when
//! a revision was created are stored with it ([`ResolvedVersions`]), so a
//! rollback runs the versions that revision ran, and a rotation creates a
//! new revision rather than changing an old one.

use super::model::{SecretVersion, ServiceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One version of one secret: what an agent asks for and may be given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionedSecret {
    pub name: String,
    pub version: u32,
}

impl VersionedSecret {
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for VersionedSecret {
    /// `crm/db-password@3`, the audit log's target.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The version each followed (not pinned) secret had when a revision was
/// created, by name. Stored with the revision as JSON
/// (`{"crm/db-password": 4}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ResolvedVersions(pub BTreeMap<String, u32>);

impl ResolvedVersions {
    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads the stored form.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The version a reference means in this revision: its pin, or what
    /// its name resolved to. `None` for a followed name that was not
    /// resolved (a revision stored before the name was referenced).
    pub fn version_of(&self, name: &str, version: SecretVersion) -> Option<u32> {
        match version {
            SecretVersion::Pinned(pinned) => Some(pinned),
            SecretVersion::Latest => self.0.get(name).copied(),
        }
    }
}

/// The names `spec` follows at their latest version.
pub fn followed_names(spec: &ServiceSpec) -> BTreeSet<String> {
    spec.secret_refs()
        .into_iter()
        .filter(|r| r.version == SecretVersion::Latest)
        .map(|r| r.name.clone())
        .collect()
}

/// Every secret name `spec` references, followed or pinned.
pub fn referenced_names(spec: &ServiceSpec) -> BTreeSet<String> {
    spec.secret_refs()
        .into_iter()
        .map(|r| r.name.clone())
        .collect()
}

/// The versions `spec` pins.
pub fn pinned_versions(spec: &ServiceSpec) -> BTreeSet<VersionedSecret> {
    spec.secret_refs()
        .into_iter()
        .filter_map(|r| match r.version {
            SecretVersion::Pinned(version) => Some(VersionedSecret::new(&r.name, version)),
            SecretVersion::Latest => None,
        })
        .collect()
}

/// Every version a revision of `spec` that resolved to `resolved` uses:
/// exactly what the agents running its allocations may receive.
pub fn used_versions(spec: &ServiceSpec, resolved: &ResolvedVersions) -> BTreeSet<VersionedSecret> {
    spec.secret_refs()
        .into_iter()
        .filter_map(|r| {
            resolved
                .version_of(&r.name, r.version)
                .map(|version| VersionedSecret::new(&r.name, version))
        })
        .collect()
}

/// One reference `apply` cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No secret has this name.
    Missing { name: String },
    /// The secret exists, but not (any more) in the pinned version.
    MissingVersion { name: String, version: u32 },
}

/// Every reference of a service's spec that cannot be resolved, one per
/// line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.lines())]
pub struct UnresolvedSecrets {
    pub service: String,
    pub problems: Vec<Unresolved>,
}

impl UnresolvedSecrets {
    fn lines(&self) -> String {
        let service = &self.service;
        self.problems
            .iter()
            .map(|problem| match problem {
                Unresolved::Missing { name } => format!(
                    "service {service} references secret {name}, which does not exist; \
                     create it with `argosy secret set {name} --from-file FILE`"
                ),
                Unresolved::MissingVersion { name, version } => format!(
                    "service {service} references version {version} of secret {name}, which \
                     does not exist; `argosy secret versions {name}` lists the versions kept"
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Resolves the references of `spec`: `latest` holds the newest version of
/// every referenced secret that exists, `absent_pins` the pinned versions
/// found missing. Fails naming every missing secret and version, in name
/// order.
pub fn resolve(
    spec: &ServiceSpec,
    latest: &BTreeMap<String, u32>,
    absent_pins: &BTreeSet<VersionedSecret>,
) -> Result<ResolvedVersions, UnresolvedSecrets> {
    let mut problems = Vec::new();
    for name in referenced_names(spec) {
        if !latest.contains_key(&name) {
            problems.push(Unresolved::Missing { name });
        }
    }
    for pin in pinned_versions(spec) {
        if latest.contains_key(&pin.name) && absent_pins.contains(&pin) {
            problems.push(Unresolved::MissingVersion {
                name: pin.name,
                version: pin.version,
            });
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| problem_key(a).cmp(&problem_key(b)));
        return Err(UnresolvedSecrets {
            service: spec.name.clone(),
            problems,
        });
    }
    Ok(ResolvedVersions(
        followed_names(spec)
            .into_iter()
            .filter_map(|name| latest.get(&name).map(|v| (name, *v)))
            .collect(),
    ))
}

fn problem_key(problem: &Unresolved) -> (&str, u32) {
    match problem {
        Unresolved::Missing { name } => (name, 0),
        Unresolved::MissingVersion { name, version } => (name, *version),
    }
}

/// The highest version of each secret that any of a service's revisions
/// resolved to: the rotations its revisions have already taken in.
pub fn highest_resolved<'a>(
    revisions: impl IntoIterator<Item = &'a ResolvedVersions>,
) -> BTreeMap<String, u32> {
    let mut highest: BTreeMap<String, u32> = BTreeMap::new();
    for resolved in revisions {
        for (name, version) in &resolved.0 {
            let entry = highest.entry(name.clone()).or_default();
            *entry = (*entry).max(*version);
        }
    }
    highest
}

/// A rotation a service has not taken in yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// What the new revision resolves to: the newest version of every
    /// followed name (as `apply` would resolve it).
    pub versions: ResolvedVersions,
    /// The versions no revision of the service has had yet, which are why.
    pub news: Vec<VersionedSecret>,
}

/// Whether a service running `spec` (resolved to `resolved`) must move now
/// that the newest versions are `latest`, given the highest versions its
/// revisions ever had (`handled`, from [`highest_resolved`]). It must when
/// a secret it follows has a version newer than any of its revisions had:
/// so a lost event is caught up by comparing, and a service rolled back to
/// an older version on purpose stays there until the next rotation.
/// Pinned references never move; a deleted secret keeps its version.
pub fn after_rotation(
    spec: &ServiceSpec,
    resolved: &ResolvedVersions,
    latest: &BTreeMap<String, u32>,
    handled: &BTreeMap<String, u32>,
) -> Option<Rotation> {
    let followed = followed_names(spec);
    let news: Vec<VersionedSecret> = followed
        .iter()
        .filter_map(|name| {
            let newest = *latest.get(name)?;
            let seen = handled
                .get(name)
                .copied()
                .max(resolved.0.get(name).copied());
            (seen.is_none_or(|seen| newest > seen)).then(|| VersionedSecret::new(name, newest))
        })
        .collect();
    if news.is_empty() {
        return None;
    }
    let versions = followed
        .into_iter()
        .filter_map(|name| {
            let version = latest.get(&name).or_else(|| resolved.0.get(&name))?;
            Some((name, *version))
        })
        .collect();
    Some(Rotation {
        versions: ResolvedVersions(versions),
        news,
    })
}

/// What set a rotation off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationCause {
    /// A new version of `name` was stored by `actor` (`user:alice`).
    Changed { name: String, actor: String },
    /// A rescan after change events were lost (or at start).
    Rescan,
}

/// Who created a revision for a rotation, as its `created_by`:
/// `secret rotation crm/db-password v4 (user:alice)`.
pub fn rotation_actor(cause: &RotationCause, news: &[VersionedSecret]) -> String {
    let what = news
        .iter()
        .map(|n| format!("{} v{}", n.name, n.version))
        .collect::<Vec<_>>()
        .join(", ");
    match cause {
        RotationCause::Changed { actor, .. } => format!("secret rotation {what} ({actor})"),
        RotationCause::Rescan => format!("secret rotation {what} (found by a rescan)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::{Format, parse};

    fn spec(env: &str, secrets: &str) -> ServiceSpec {
        let text = format!("name: web\nimage: nginx\nenv:\n{env}\nsecrets:\n{secrets}\n");
        parse(&text, Format::Yaml).unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    /// Follows db and cache, pins api@3 and tls@2.
    fn mixed() -> ServiceSpec {
        spec(
            "  DB: {secret: crm/db}\n  API: {secret: crm/api@3}\n  CACHE: {secret: crm/cache}",
            "  - crm/db\n  - crm/tls@2",
        )
    }

    fn versions(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    fn set(items: &[(&str, u32)]) -> BTreeSet<VersionedSecret> {
        items
            .iter()
            .map(|(n, v)| VersionedSecret::new(*n, *v))
            .collect()
    }

    #[test]
    fn names_and_pins_of_a_spec() {
        let spec = mixed();
        assert_eq!(
            followed_names(&spec),
            BTreeSet::from(["crm/cache".to_owned(), "crm/db".to_owned()])
        );
        assert_eq!(referenced_names(&spec).len(), 4);
        assert_eq!(
            pinned_versions(&spec),
            set(&[("crm/api", 3), ("crm/tls", 2)])
        );
    }

    #[test]
    fn resolution_takes_the_latest_of_followed_names_only() {
        let latest = versions(&[
            ("crm/db", 4),
            ("crm/api", 7),
            ("crm/cache", 1),
            ("crm/tls", 2),
        ]);
        let resolved = resolve(&mixed(), &latest, &BTreeSet::new()).unwrap();
        assert_eq!(resolved.0, versions(&[("crm/cache", 1), ("crm/db", 4)]));
        assert_eq!(
            used_versions(&mixed(), &resolved),
            set(&[
                ("crm/api", 3),
                ("crm/cache", 1),
                ("crm/db", 4),
                ("crm/tls", 2)
            ])
        );
        // A spec without secrets resolves to nothing and uses nothing.
        let plain = parse("name: web\nimage: nginx\n", Format::Yaml).unwrap();
        let none = resolve(&plain, &BTreeMap::new(), &BTreeSet::new()).unwrap();
        assert_eq!(none, ResolvedVersions::default());
        assert!(used_versions(&plain, &none).is_empty());
    }

    #[test]
    fn every_missing_secret_and_version_is_named() {
        // crm/cache does not exist; crm/api has no version 3; crm/tls is
        // missing altogether (its pin is not reported twice).
        let latest = versions(&[("crm/db", 4), ("crm/api", 7)]);
        let error =
            resolve(&mixed(), &latest, &set(&[("crm/api", 3), ("crm/tls", 2)])).unwrap_err();
        assert_eq!(
            error.problems,
            [
                Unresolved::MissingVersion {
                    name: "crm/api".into(),
                    version: 3
                },
                Unresolved::Missing {
                    name: "crm/cache".into()
                },
                Unresolved::Missing {
                    name: "crm/tls".into()
                },
            ]
        );
        assert_eq!(
            error.to_string(),
            "service web references version 3 of secret crm/api, which does not exist; \
             `argosy secret versions crm/api` lists the versions kept\n\
             service web references secret crm/cache, which does not exist; create it with \
             `argosy secret set crm/cache --from-file FILE`\n\
             service web references secret crm/tls, which does not exist; create it with \
             `argosy secret set crm/tls --from-file FILE`"
        );
    }

    #[test]
    fn a_rotation_moves_followed_names_only() {
        let spec = mixed();
        let resolved = ResolvedVersions(versions(&[("crm/db", 4), ("crm/cache", 1)]));
        let handled = highest_resolved([&resolved]);
        let rotate =
            |latest: &[(&str, u32)]| after_rotation(&spec, &resolved, &versions(latest), &handled);
        // Nothing newer: nothing to do (pinned secrets do not count).
        assert_eq!(
            rotate(&[
                ("crm/db", 4),
                ("crm/cache", 1),
                ("crm/api", 9),
                ("crm/tls", 9)
            ]),
            None
        );
        // db rotated: the new revision takes the newest of every followed name.
        assert_eq!(
            rotate(&[("crm/db", 5), ("crm/cache", 1), ("crm/api", 9)]),
            Some(Rotation {
                versions: ResolvedVersions(versions(&[("crm/db", 5), ("crm/cache", 1)])),
                news: vec![VersionedSecret::new("crm/db", 5)],
            })
        );
        // Both rotated while events were lost: both move at once.
        let both = rotate(&[("crm/db", 6), ("crm/cache", 2)]).unwrap();
        assert_eq!(
            both.versions.0,
            versions(&[("crm/db", 6), ("crm/cache", 2)])
        );
        assert_eq!(both.news.len(), 2);
        // A deleted secret keeps its version; nothing else changed.
        assert_eq!(rotate(&[("crm/db", 4)]), None);
        // A followed name the revision never resolved counts as news.
        let old = ResolvedVersions(versions(&[("crm/db", 4)]));
        assert_eq!(
            after_rotation(
                &spec,
                &old,
                &versions(&[("crm/db", 4), ("crm/cache", 1)]),
                &highest_resolved([&old])
            )
            .map(|r| r.versions),
            Some(resolved.clone())
        );
        // A spec that only pins is never moved.
        assert_eq!(
            after_rotation(
                &spec_pinned(),
                &ResolvedVersions::default(),
                &versions(&[("crm/api", 9)]),
                &BTreeMap::new()
            ),
            None
        );
    }

    #[test]
    fn a_service_rolled_back_on_purpose_stays_until_the_next_rotation() {
        let spec = mixed();
        // Revision 1 ran db@3, revision 2 db@4; rolled back to revision 1.
        let rev1 = ResolvedVersions(versions(&[("crm/db", 3), ("crm/cache", 1)]));
        let rev2 = ResolvedVersions(versions(&[("crm/db", 4), ("crm/cache", 1)]));
        let handled = highest_resolved([&rev1, &rev2]);
        assert_eq!(handled, versions(&[("crm/db", 4), ("crm/cache", 1)]));
        let latest = versions(&[("crm/db", 4), ("crm/cache", 1)]);
        assert_eq!(after_rotation(&spec, &rev1, &latest, &handled), None);
        // db@5 is news: the rolled-back revision's spec moves to it.
        let latest = versions(&[("crm/db", 5), ("crm/cache", 1)]);
        assert_eq!(
            after_rotation(&spec, &rev1, &latest, &handled).map(|r| r.versions.0),
            Some(latest.clone())
        );
    }

    fn spec_pinned() -> ServiceSpec {
        spec("  API: {secret: crm/api@3}", "  - crm/api@3")
    }

    #[test]
    fn stored_form_and_names() {
        let resolved = ResolvedVersions(versions(&[("crm/db", 4), ("a", 1)]));
        assert_eq!(resolved.to_json(), r#"{"a":1,"crm/db":4}"#);
        assert_eq!(
            ResolvedVersions::from_json(&resolved.to_json()).unwrap(),
            resolved
        );
        assert_eq!(
            ResolvedVersions::from_json("{}").unwrap(),
            ResolvedVersions::default()
        );
        assert!(ResolvedVersions::from_json("[1]").is_err());
        assert_eq!(
            resolved.version_of("crm/db", SecretVersion::Latest),
            Some(4)
        );
        assert_eq!(
            resolved.version_of("crm/db", SecretVersion::Pinned(2)),
            Some(2)
        );
        assert_eq!(resolved.version_of("other", SecretVersion::Latest), None);
        assert_eq!(VersionedSecret::new("crm/db", 3).to_string(), "crm/db@3");
        let news = [VersionedSecret::new("crm/db-password", 4)];
        let changed = RotationCause::Changed {
            name: "crm/db-password".into(),
            actor: "user:alice".into(),
        };
        assert_eq!(
            rotation_actor(&changed, &news),
            "secret rotation crm/db-password v4 (user:alice)"
        );
        let news = [VersionedSecret::new("a", 2), VersionedSecret::new("b", 7)];
        assert_eq!(
            rotation_actor(&RotationCause::Rescan, &news),
            "secret rotation a v2, b v7 (found by a rescan)"
        );
    }
}
