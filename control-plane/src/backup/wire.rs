//! A policy as the agent's job messages carry it (pure): the source, the
//! destinations and the key, with every secret reference resolved to the
//! exact version the job may ask for.

use std::collections::{BTreeMap, BTreeSet};

use argosy_proto::v1 as pb;

use super::model::{BackupPolicySpec, DestinationKind, Source};
use crate::deploy::model::{SecretRef, SecretVersion};

/// Every secret name `spec` references (connection, S3 keys, encryption key).
pub fn secret_names(spec: &BackupPolicySpec) -> BTreeSet<String> {
    let mut refs: Vec<&SecretRef> = Vec::new();
    if let Source::Postgres { connection, .. } = &spec.source {
        refs.push(connection);
    }
    for destination in &spec.destinations {
        if let DestinationKind::S3 {
            access_key_id,
            secret_access_key,
            ..
        } = &destination.kind
        {
            refs.push(access_key_id);
            refs.push(secret_access_key);
        }
    }
    refs.extend(spec.encryption_key.as_ref());
    refs.into_iter().map(|r| r.name.clone()).collect()
}

/// The version a reference means, given the newest version of each name
/// (a name missing from `latest` resolves to version 0, which the agent is
/// never granted: the job then fails naming the secret).
pub fn resolve(reference: &SecretRef, latest: &BTreeMap<String, u32>) -> pb::SecretRef {
    let version = match reference.version {
        SecretVersion::Pinned(version) => version,
        SecretVersion::Latest => latest.get(&reference.name).copied().unwrap_or(0),
    };
    pb::SecretRef {
        name: reference.name.clone(),
        version,
    }
}

/// The source as the agent runs it; `service_container` is the container
/// of the service's allocation when the policy runs on a service.
pub fn source(
    spec: &BackupPolicySpec,
    service_container: Option<&str>,
    latest: &BTreeMap<String, u32>,
) -> pb::BackupSource {
    let kind = match &spec.source {
        Source::Postgres {
            connection,
            container,
        } => pb::backup_source::Kind::Postgres(pb::PostgresSource {
            connection: Some(resolve(connection, latest)),
            container: container
                .as_deref()
                .or(service_container)
                .unwrap_or_default()
                .to_owned(),
        }),
        Source::Volume { name } => {
            pb::backup_source::Kind::Volume(pb::VolumeSource { name: name.clone() })
        }
        Source::Path { path } => {
            pb::backup_source::Kind::Path(pb::PathSource { path: path.clone() })
        }
        Source::Command { backup, restore } => {
            pb::backup_source::Kind::Command(pb::CommandSource {
                backup: backup.clone(),
                restore: restore.clone(),
            })
        }
    };
    pb::BackupSource { kind: Some(kind) }
}

/// The destinations in the policy's order.
pub fn destinations(
    spec: &BackupPolicySpec,
    latest: &BTreeMap<String, u32>,
) -> Vec<pb::BackupDestination> {
    spec.destinations
        .iter()
        .map(|d| {
            let kind = match &d.kind {
                DestinationKind::Dir { path } => {
                    pb::backup_destination::Kind::Dir(pb::DirDestination { path: path.clone() })
                }
                DestinationKind::S3 {
                    endpoint,
                    bucket,
                    prefix,
                    region,
                    access_key_id,
                    secret_access_key,
                } => pb::backup_destination::Kind::S3(pb::S3Destination {
                    endpoint: endpoint.clone(),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    region: region.clone(),
                    access_key_id: Some(resolve(access_key_id, latest)),
                    secret_access_key: Some(resolve(secret_access_key, latest)),
                }),
            };
            pb::BackupDestination {
                name: d.name.clone(),
                kind: Some(kind),
            }
        })
        .collect()
}

/// A backup task for `backup_id`.
pub fn backup_task(
    spec: &BackupPolicySpec,
    backup_id: &str,
    service_container: Option<&str>,
    latest: &BTreeMap<String, u32>,
) -> pb::BackupTask {
    pb::BackupTask {
        policy: spec.name.clone(),
        backup_id: backup_id.to_owned(),
        source: Some(source(spec, service_container, latest)),
        destinations: destinations(spec, latest),
        zstd_level: spec.compression_level,
        encryption_key: spec.encryption_key.as_ref().map(|k| resolve(k, latest)),
    }
}

/// Every secret version a job may ask for.
pub fn job_secrets(job: &pb::BackupJob) -> Vec<pb::SecretRef> {
    let mut refs = Vec::new();
    let mut from_source = |source: &Option<pb::BackupSource>| {
        if let Some(pb::BackupSource {
            kind: Some(pb::backup_source::Kind::Postgres(p)),
        }) = source
        {
            refs.extend(p.connection.clone());
        }
    };
    let (destinations, key) = match &job.task {
        Some(pb::backup_job::Task::Backup(t)) => {
            from_source(&t.source);
            (&t.destinations, &t.encryption_key)
        }
        Some(pb::backup_job::Task::Verify(t)) => {
            from_source(&t.source);
            (&t.destinations, &t.encryption_key)
        }
        Some(pb::backup_job::Task::Restore(t)) => {
            from_source(&t.source);
            (&t.destinations, &t.encryption_key)
        }
        Some(pb::backup_job::Task::Prune(t)) => (&t.destinations, &None),
        None => return refs,
    };
    refs.extend(key.clone());
    for d in destinations {
        if let Some(pb::backup_destination::Kind::S3(s3)) = &d.kind {
            refs.extend(s3.access_key_id.clone());
            refs.extend(s3.secret_access_key.clone());
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::model::{Destination, RunsOn, Verify};
    use std::time::Duration;

    fn latest_ref(name: &str) -> SecretRef {
        SecretRef {
            name: name.to_owned(),
            version: SecretVersion::Latest,
        }
    }

    fn spec() -> BackupPolicySpec {
        BackupPolicySpec {
            name: "crm-db".into(),
            runs_on: RunsOn::Service("crm-pg".into()),
            source: Source::Postgres {
                connection: latest_ref("crm/pg-url"),
                container: None,
            },
            schedule: "0 */2 * * *".into(),
            rpo: Duration::from_secs(6 * 3600),
            retention: Default::default(),
            destinations: vec![
                Destination {
                    name: "local".into(),
                    kind: DestinationKind::Dir {
                        path: "/var/backups".into(),
                    },
                },
                Destination {
                    name: "offsite".into(),
                    kind: DestinationKind::S3 {
                        endpoint: "http://127.0.0.1:9000".into(),
                        bucket: "bucket".into(),
                        prefix: "p/".into(),
                        region: "us-east-1".into(),
                        access_key_id: latest_ref("s3/id"),
                        secret_access_key: SecretRef {
                            name: "s3/key".into(),
                            version: SecretVersion::Pinned(2),
                        },
                    },
                },
            ],
            compression_level: 3,
            encryption_key: Some(latest_ref("crm/key")),
            verify: Verify::default(),
        }
    }

    #[test]
    fn references_resolve_to_the_newest_or_the_pinned_version() {
        let latest = BTreeMap::from([
            ("crm/pg-url".to_owned(), 4),
            ("s3/id".to_owned(), 1),
            ("s3/key".to_owned(), 9),
            ("crm/key".to_owned(), 7),
        ]);
        let task = backup_task(&spec(), "b-1", Some("abc123"), &latest);
        let job = pb::BackupJob {
            id: "j".into(),
            task: Some(pb::backup_job::Task::Backup(task.clone())),
        };
        let refs: Vec<(String, u32)> = job_secrets(&job)
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect();
        assert_eq!(
            refs,
            [
                ("crm/pg-url".to_owned(), 4),
                ("crm/key".to_owned(), 7),
                ("s3/id".to_owned(), 1),
                ("s3/key".to_owned(), 2),
            ]
        );
        let Some(pb::backup_source::Kind::Postgres(pg)) = task.source.and_then(|s| s.kind) else {
            panic!("a postgres source");
        };
        assert_eq!(pg.container, "abc123", "the service's container is used");
        assert_eq!(
            secret_names(&spec()).into_iter().collect::<Vec<_>>(),
            ["crm/key", "crm/pg-url", "s3/id", "s3/key"]
        );
    }

    #[test]
    fn an_explicit_container_wins_over_the_services() {
        let mut spec = spec();
        spec.source = Source::Postgres {
            connection: latest_ref("crm/pg-url"),
            container: Some("crm-pg-1".into()),
        };
        let source = source(&spec, Some("abc123"), &BTreeMap::new());
        let Some(pb::backup_source::Kind::Postgres(pg)) = source.kind else {
            panic!("a postgres source");
        };
        assert_eq!(pg.container, "crm-pg-1");
    }

    #[test]
    fn an_unknown_name_resolves_to_version_zero_which_is_never_granted() {
        assert_eq!(resolve(&latest_ref("gone"), &BTreeMap::new()).version, 0);
    }

    #[test]
    fn prune_jobs_ask_only_for_storage_credentials() {
        let latest = BTreeMap::from([("s3/id".to_owned(), 1)]);
        let job = pb::BackupJob {
            id: "j".into(),
            task: Some(pb::backup_job::Task::Prune(pb::PruneTask {
                policy: "crm-db".into(),
                destinations: destinations(&spec(), &latest),
                backup_ids: vec!["b-1".into()],
            })),
        };
        let names: Vec<String> = job_secrets(&job).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["s3/id", "s3/key"]);
    }
}
