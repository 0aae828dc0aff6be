//! Which secrets an agent may receive (pure): a host is given exactly the
//! versions that the revisions of its allocations use — allocations placed
//! on it and meant to run — and nothing else. Everything else is denied
//! with a reason that names the host and the secret, never a value.
//!
//! The session adapter (`grpc::secret_delivery`) gathers the host's
//! allocations, asks [`decide`], reads the granted values, and audits every
//! grant and denial before anything is sent.

use super::secret_refs::VersionedSecret;
use super::units::is_secret_name;
use std::collections::{BTreeMap, BTreeSet};

/// The most secrets one request may ask for; an agent needs as many as
/// its allocations reference, far fewer.
pub const MAX_REQUESTED: usize = 256;

/// The secret versions a host's allocations use, each with the allocations
/// that use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSecrets {
    pub host_id: String,
    pub used: BTreeMap<VersionedSecret, BTreeSet<String>>,
}

impl HostSecrets {
    pub fn new(host_id: impl Into<String>) -> Self {
        Self {
            host_id: host_id.into(),
            used: BTreeMap::new(),
        }
    }

    /// Notes that `allocation` uses every version in `secrets`.
    pub fn add(&mut self, allocation: &str, secrets: impl IntoIterator<Item = VersionedSecret>) {
        for secret in secrets {
            self.used
                .entry(secret)
                .or_default()
                .insert(allocation.to_owned());
        }
    }
}

/// Why a secret was not delivered. The text goes to the agent (and its
/// log) and into the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("{0:?} is not a secret reference: it needs a valid name and a version from 1")]
    NotAReference(String),
    #[error("no allocation on host {host} uses secret {name}")]
    NotUsed { host: String, name: String },
    #[error("allocations on host {host} use secret {name} in version {used}, not {asked}")]
    OtherVersion {
        host: String,
        name: String,
        asked: u32,
        /// The versions in use, `4` or `3, 4`.
        used: String,
    },
    #[error("the request asks for more than {MAX_REQUESTED} secrets at once")]
    TooMany,
    #[error("cannot check which secrets host {host} may receive: {reason}")]
    Unchecked { host: String, reason: String },
    #[error("the secret cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "the delivery cannot be written to the audit log ({0}), so the secret is not delivered; \
         the agent asks again when it retries the allocation"
    )]
    AuditUnavailable(String),
}

/// The decision for one requested version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted,
    Denied(Denial),
}

/// Decides every requested version for the host whose allocations use
/// `host.used`. Each version is decided once, in the order first asked;
/// past [`MAX_REQUESTED`] distinct versions the rest are denied.
pub fn decide(requested: &[VersionedSecret], host: &HostSecrets) -> Vec<(VersionedSecret, Access)> {
    let mut seen = BTreeSet::new();
    let mut decisions = Vec::new();
    for secret in requested {
        if !seen.insert(secret) {
            continue;
        }
        let access = if seen.len() > MAX_REQUESTED {
            Access::Denied(Denial::TooMany)
        } else {
            decide_one(secret, host)
        };
        decisions.push((secret.clone(), access));
    }
    decisions
}

fn decide_one(secret: &VersionedSecret, host: &HostSecrets) -> Access {
    if !is_secret_name(&secret.name) || secret.version == 0 {
        return Access::Denied(Denial::NotAReference(secret.to_string()));
    }
    if host.used.contains_key(secret) {
        return Access::Granted;
    }
    let other_versions: Vec<String> = host
        .used
        .keys()
        .filter(|used| used.name == secret.name)
        .map(|used| used.version.to_string())
        .collect();
    Access::Denied(if other_versions.is_empty() {
        Denial::NotUsed {
            host: host.host_id.clone(),
            name: secret.name.clone(),
        }
    } else {
        Denial::OtherVersion {
            host: host.host_id.clone(),
            name: secret.name.clone(),
            asked: secret.version,
            used: other_versions.join(", "),
        }
    })
}

/// The audit log's outcome for a decision: `ok` or `denied: <reason>`.
pub fn audit_outcome(access: &Access) -> String {
    match access {
        Access::Granted => "ok".to_owned(),
        Access::Denied(denial) => format!("denied: {denial}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, version: u32) -> VersionedSecret {
        VersionedSecret::new(name, version)
    }

    fn host() -> HostSecrets {
        let mut host = HostSecrets::new("h-1");
        host.add("a-web-1", [v("crm/db", 4), v("crm/api", 3)]);
        host.add("a-web-2", [v("crm/db", 4)]);
        host.add("a-old-1", [v("crm/tls", 1)]);
        host.add("a-new-1", [v("crm/tls", 2)]);
        host
    }

    fn denied(denial: Denial) -> Access {
        Access::Denied(denial)
    }

    #[test]
    fn exactly_the_versions_in_use_are_granted() {
        let requested = [
            v("crm/db", 4),
            v("crm/api", 3),
            v("crm/tls", 1),
            v("crm/tls", 2),
        ];
        let decisions = decide(&requested, &host());
        assert!(
            decisions.iter().all(|(_, a)| *a == Access::Granted),
            "{decisions:?}"
        );
        assert_eq!(
            decisions.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
            requested
        );
    }

    #[test]
    fn everything_else_is_denied_with_a_reason() {
        let cases = [
            (
                v("crm/other", 1),
                denied(Denial::NotUsed {
                    host: "h-1".into(),
                    name: "crm/other".into(),
                }),
                "no allocation on host h-1 uses secret crm/other",
            ),
            (
                v("crm/db", 3),
                denied(Denial::OtherVersion {
                    host: "h-1".into(),
                    name: "crm/db".into(),
                    asked: 3,
                    used: "4".into(),
                }),
                "allocations on host h-1 use secret crm/db in version 4, not 3",
            ),
            (
                v("crm/tls", 3),
                denied(Denial::OtherVersion {
                    host: "h-1".into(),
                    name: "crm/tls".into(),
                    asked: 3,
                    used: "1, 2".into(),
                }),
                "allocations on host h-1 use secret crm/tls in version 1, 2, not 3",
            ),
            (
                v("crm/db", 0),
                denied(Denial::NotAReference("crm/db@0".into())),
                "\"crm/db@0\" is not a secret reference: it needs a valid name and a version from 1",
            ),
            (
                v("../etc/shadow", 1),
                denied(Denial::NotAReference("../etc/shadow@1".into())),
                "\"../etc/shadow@1\" is not a secret reference: it needs a valid name and a version from 1",
            ),
            (
                v("", 1),
                denied(Denial::NotAReference("@1".into())),
                "\"@1\" is not a secret reference: it needs a valid name and a version from 1",
            ),
        ];
        for (secret, want, text) in cases {
            let got = decide(std::slice::from_ref(&secret), &host());
            assert_eq!(got, [(secret.clone(), want.clone())], "{secret}");
            assert_eq!(audit_outcome(&want), format!("denied: {text}"));
        }
        assert_eq!(audit_outcome(&Access::Granted), "ok");
    }

    #[test]
    fn a_host_without_allocations_gets_nothing() {
        let empty = HostSecrets::new("h-2");
        assert_eq!(
            decide(&[v("crm/db", 4)], &empty),
            [(
                v("crm/db", 4),
                denied(Denial::NotUsed {
                    host: "h-2".into(),
                    name: "crm/db".into()
                })
            )]
        );
        assert!(decide(&[], &empty).is_empty());
    }

    #[test]
    fn repeats_are_decided_once_and_floods_are_cut() {
        let decisions = decide(&[v("crm/db", 4), v("crm/x", 1), v("crm/db", 4)], &host());
        assert_eq!(decisions.len(), 2);
        let flood: Vec<VersionedSecret> = (1..=MAX_REQUESTED as u32 + 2)
            .map(|n| v("crm/db", n))
            .collect();
        let decisions = decide(&flood, &host());
        assert_eq!(decisions.len(), MAX_REQUESTED + 2);
        assert_eq!(decisions[3], (v("crm/db", 4), Access::Granted));
        assert!(
            decisions[MAX_REQUESTED..]
                .iter()
                .all(|(_, a)| *a == denied(Denial::TooMany))
        );
        assert_eq!(
            Denial::TooMany.to_string(),
            "the request asks for more than 256 secrets at once"
        );
    }

    #[test]
    fn adapter_reasons_read_well() {
        assert_eq!(
            audit_outcome(&denied(Denial::AuditUnavailable("disk full".into()))),
            "denied: the delivery cannot be written to the audit log (disk full), so the secret \
             is not delivered; the agent asks again when it retries the allocation"
        );
        assert_eq!(
            Denial::Unreadable("secret crm/db version 4 is corrupted".into()).to_string(),
            "the secret cannot be read: secret crm/db version 4 is corrupted"
        );
        assert_eq!(
            Denial::Unchecked {
                host: "h-1".into(),
                reason: "the store is unavailable".into()
            }
            .to_string(),
            "cannot check which secrets host h-1 may receive: the store is unavailable"
        );
    }
}
