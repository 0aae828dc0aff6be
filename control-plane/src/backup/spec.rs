//! Backup policies as people write them, in YAML or TOML, and their
//! validation into the model ([`BackupPolicySpec`]). The same machinery as
//! service specs (`deploy::spec`): every mistake is reported at once, each
//! naming the field and the fix, unknown fields with the closest known one:
//!
//! ```text
//! spec.rpo: 1h is not longer than the longest gap between scheduled backups (2h, schedule "0 */2 * * *"), so it can never be met; make it longer, e.g. rpo: 6h, or schedule backups more often
//! spec.destinations[1].s3.bucket: "Crm_Backups" is not an S3 bucket name, use 3-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit
//! spec.retension: unknown field, did you mean retention?
//! ```
//!
//! # Rules, and why
//!
//! | field | rule or default | why |
//! | --- | --- | --- |
//! | `name` | 1-63 lowercase letters, digits, `-` (a service name's rule) | it names artifact folders and alerts |
//! | `host` / `service` | exactly one | the host that holds the data runs the backup |
//! | `source` | exactly one of `postgres`, `volume`, `path`, `command` | one policy, one kind of artifact to restore |
//! | `source.command` | both `backup` and `restore` | a backup nobody can restore is not a backup |
//! | `schedule`, `verify.schedule` | five-field cron, UTC ([`super::schedule`]) | |
//! | `rpo` | required, longer than the longest gap between scheduled backups | a shorter RPO could never be met |
//! | `retention` | required; `keep_last` default 1, the rest 0; at least one backup kept | deleting is the one thing a backup system must not surprise anyone with |
//! | `destinations` | at least one; unique names and places | 3-2-1 is one policy with a `dir` and an `s3` |
//! | `dir` | an absolute path, not `/`, not inside a `path` source | |
//! | `s3.endpoint` | an `http(s)://` URL without credentials, query or path | credentials come from secrets |
//! | `s3.bucket` | S3's bucket naming rules | |
//! | `s3.prefix` | default empty; normalized to end with `/` | artifacts go to `<prefix><policy>/<id>.argosy` |
//! | `s3.region` | `us-east-1` | what S3-compatible servers expect when they do not care |
//! | `compression.level` | zstd 1-19, default 3 | zstd's own default: fast, and most of the gain |
//! | `encryption.key` | required unless `allow_unencrypted: true` | backups leave the host; secure by default |
//! | `verify.sql_assertion` | PostgreSQL sources only | it runs in the scratch database |
//!
//! Secrets (connection strings, S3 keys, the encryption key) are written
//! `{secret: NAME}` (or `NAME@3` to pin a version): a policy holds
//! references, never values.

use std::path::{Component, Path};
use std::time::Duration;

use serde::Deserialize;

use super::model::{
    BackupPolicySpec, Destination, DestinationKind, Retention, RunsOn, Source, Verify,
};
use super::schedule::Schedule;
use crate::deploy::model::SecretRef;
use crate::deploy::spec::{
    DocumentKind, FieldPath, Format, Issue, Node, SpecErrors, describe, is_dns_label, parse_with,
    show, to_raw,
};
use crate::deploy::units;

/// zstd's default level, and the range a policy may ask for.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
pub const MAX_COMPRESSION_LEVEL: i32 = 19;
/// The region S3-compatible servers expect when they do not care.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// The most backups of one kind a retention rule may keep.
pub const MAX_KEEP: u32 = 10_000;

const POLICY_DOCUMENT: DocumentKind = DocumentKind {
    fields: "name, service, source, schedule, ...",
    example_at: "`argosy backup policy apply --help`",
};

/// Parses and validates a backup policy. On failure every error found is
/// returned, in document order.
pub fn parse(text: &str, format: Format) -> Result<BackupPolicySpec, SpecErrors> {
    parse_with(text, format, &POLICY_DOCUMENT, |raw: RawBackupPolicy| {
        let mut v = Validator::default();
        let policy = v.policy(raw);
        (policy, v.issues)
    })
}

/// A complete, commented example policy (YAML) that parses.
pub fn example() -> &'static str {
    EXAMPLE
}

const EXAMPLE: &str = r#"# An Argosy backup policy. Apply it with `argosy backup policy apply -f crm-db.yaml`.
# The same fields work in TOML (crm-db.toml).

name: crm-db                       # 1-63 lowercase letters, digits, '-'
service: crm-postgres              # runs on the host of this service's allocation,
# host: db-1                       # ... or on this host (id or hostname)

source:                            # exactly one of postgres, volume, path, command
  postgres:
    connection: { secret: crm/pg-url }   # postgres://user:pass@127.0.0.1:5432/crm
    container: crm-pg                    # optional: pg_dump inside this container
  # volume: { name: crm-uploads }        # a Docker volume
  # path: { path: /srv/crm/files }       # a host directory
  # command: { backup: "tar -C /srv -cf - data", restore: "tar -C /srv -xf -" }

schedule: "0 */2 * * *"            # cron, five fields, UTC: every 2 hours
rpo: 6h                            # the newest good backup is never older than this

retention:                         # grandfather-father-son, like restic forget
  keep_last: 3                     # the newest 3 (default 1)
  hourly: 24                       # and the newest of each of the last 24 hours
  daily: 7                         # ... 7 days, 4 ISO weeks, 12 months (UTC)
  weekly: 4                        # that have backups; the newest backup that
  monthly: 12                      # passed verification is never deleted

destinations:                      # every backup goes to each of them
  - name: local
    dir: /var/backups/argosy       # absolute; <dir>/<policy>/<id>.argosy
  - name: offsite
    s3:
      endpoint: http://127.0.0.1:9000
      bucket: crm-backups
      prefix: prod/                # default: none
      region: us-east-1            # the default
      access_key_id: { secret: s3/key-id }
      secret_access_key: { secret: s3/secret-key }

compression: { level: 3 }          # zstd 1-19, default 3
encryption: { key: { secret: crm/backup-key } }   # required, unless you write
# allow_unencrypted: true                         # ... this instead

verify:                            # restore into a scratch target and check it
  schedule: "30 4 * * *"           # default: only `argosy backup verify ID`
  sql_assertion: "select count(*) > 0 from customers"   # PostgreSQL only
"#;

// ---------------------------------------------------------------------------
// The raw shape people write. Every field is optional here; what is
// required is checked (and explained) by the validator. The struct names
// key the "did you mean" aliases in `deploy::spec`.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupPolicy {
    name: Option<String>,
    host: Option<String>,
    service: Option<String>,
    source: Option<RawBackupSource>,
    schedule: Option<String>,
    rpo: Option<Node>,
    retention: Option<RawBackupRetention>,
    destinations: Option<Vec<Node>>,
    compression: Option<RawBackupCompression>,
    encryption: Option<RawBackupEncryption>,
    allow_unencrypted: Option<bool>,
    verify: Option<RawBackupVerify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupSource {
    postgres: Option<RawBackupPostgres>,
    volume: Option<RawBackupVolume>,
    path: Option<RawBackupPath>,
    command: Option<RawBackupCommand>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupPostgres {
    connection: Option<Node>,
    container: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupVolume {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupPath {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupCommand {
    backup: Option<String>,
    restore: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupRetention {
    keep_last: Option<i64>,
    hourly: Option<i64>,
    daily: Option<i64>,
    weekly: Option<i64>,
    monthly: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupDestination {
    name: Option<String>,
    dir: Option<String>,
    s3: Option<RawBackupS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupS3 {
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    access_key_id: Option<Node>,
    secret_access_key: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupCompression {
    level: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupEncryption {
    key: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupVerify {
    schedule: Option<String>,
    sql_assertion: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupSecret {
    secret: Option<String>,
}

// ---------------------------------------------------------------------------
// Raw → model, every rule, every error.

#[derive(Default)]
struct Validator {
    issues: Vec<Issue>,
}

impl Validator {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.clone(),
            message: message.into(),
        });
    }

    /// Deserializes a nested node into its raw shape; `None` (with the
    /// problems recorded) when it has the wrong shape.
    fn shape<T: serde::de::DeserializeOwned>(
        &mut self,
        mut node: Node,
        path: &FieldPath,
    ) -> Option<T> {
        let shaped = to_raw::<T>(&mut node, path);
        self.issues.extend(shaped.issues);
        shaped.value.filter(|_| shaped.removed.is_empty())
    }

    fn policy(&mut self, raw: RawBackupPolicy) -> BackupPolicySpec {
        let root = FieldPath::root();
        let name = self.name(raw.name, &root.key("name"));
        let runs_on = self.runs_on(raw.host, raw.service, &root);
        let source = self.source(raw.source, &root.key("source"));
        let schedule = self.schedule(raw.schedule, &root.key("schedule"), true);
        let rpo = self.rpo(raw.rpo, schedule.as_ref(), &root.key("rpo"));
        let retention = self.retention(raw.retention, &root.key("retention"));
        let destinations =
            self.destinations(raw.destinations, source.as_ref(), &root.key("destinations"));
        let compression_level = self.compression(raw.compression, &root.key("compression"));
        let encryption_key = self.encryption(raw.encryption, raw.allow_unencrypted, &root);
        let verify = self.verify(raw.verify, source.as_ref(), &root.key("verify"));
        BackupPolicySpec {
            name,
            runs_on: runs_on.unwrap_or_else(|| RunsOn::Host(String::new())),
            source: source.unwrap_or(Source::Path {
                path: String::new(),
            }),
            schedule: schedule.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            rpo,
            retention,
            destinations,
            compression_level,
            encryption_key,
            verify,
        }
    }

    fn name(&mut self, name: Option<String>, path: &FieldPath) -> String {
        let Some(name) = name else {
            self.error(path, "required, write e.g. name: crm-db");
            return String::new();
        };
        if !is_dns_label(&name) {
            self.error(
                path,
                format!(
                    "{name:?} is not a valid name, use 1-63 lowercase letters, digits and '-', \
                     starting with a letter and not ending with '-', e.g. crm-db"
                ),
            );
        }
        name
    }

    fn runs_on(
        &mut self,
        host: Option<String>,
        service: Option<String>,
        root: &FieldPath,
    ) -> Option<RunsOn> {
        match (host, service) {
            (Some(_), Some(_)) => {
                self.error(
                    &root.key("service"),
                    "give either host or service, not both: service runs the backup on the \
                     host of the service's allocation",
                );
                None
            }
            (None, None) => {
                self.error(
                    root,
                    "say where the data is: service: <service name> (the host running it) or \
                     host: <host id or hostname>",
                );
                None
            }
            (Some(host), None) => {
                if !is_host_reference(&host) {
                    self.error(
                        &root.key("host"),
                        format!(
                            "{host:?} is not a host id or hostname, use letters, digits, '-', \
                             '_' and '.' (see `argosy hosts`)"
                        ),
                    );
                }
                Some(RunsOn::Host(host))
            }
            (None, Some(service)) => {
                if !is_dns_label(&service) {
                    self.error(
                        &root.key("service"),
                        format!(
                            "{service:?} is not a service name, use 1-63 lowercase letters, \
                             digits and '-', starting with a letter, e.g. crm-postgres"
                        ),
                    );
                }
                Some(RunsOn::Service(service))
            }
        }
    }

    fn source(&mut self, raw: Option<RawBackupSource>, path: &FieldPath) -> Option<Source> {
        let example = "e.g. source: {postgres: {connection: {secret: crm/pg-url}}}";
        let Some(raw) = raw else {
            self.error(path, format!("required, {example}"));
            return None;
        };
        let given: Vec<&str> = [
            ("postgres", raw.postgres.is_some()),
            ("volume", raw.volume.is_some()),
            ("path", raw.path.is_some()),
            ("command", raw.command.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, set)| set.then_some(kind))
        .collect();
        match given.as_slice() {
            [] => {
                self.error(
                    path,
                    format!("name one source: postgres, volume, path or command, {example}"),
                );
                return None;
            }
            [_] => {}
            several => {
                self.error(
                    path,
                    format!(
                        "has {}; a policy backs up one source, write one policy per source",
                        several.join(" and ")
                    ),
                );
                return None;
            }
        }
        if let Some(pg) = raw.postgres {
            let at = path.key("postgres");
            let connection = match pg.connection {
                Some(node) => self.secret(node, &at.key("connection")),
                None => {
                    self.error(
                        &at.key("connection"),
                        "required: a secret holding postgres://user:password@host:port/database, \
                         e.g. connection: {secret: crm/pg-url}",
                    );
                    None
                }
            };
            if let Some(container) = &pg.container
                && !units::is_volume_name(container)
            {
                self.error(
                    &at.key("container"),
                    format!(
                        "{container:?} is not a container name, use letters, digits, '_', '.' \
                         and '-', starting with a letter or digit, e.g. crm-pg"
                    ),
                );
            }
            return connection.map(|connection| Source::Postgres {
                connection,
                container: pg.container,
            });
        }
        if let Some(volume) = raw.volume {
            let at = path.key("volume").key("name");
            let Some(name) = volume.name else {
                self.error(&at, "required, write e.g. volume: {name: crm-uploads}");
                return None;
            };
            if !units::is_volume_name(&name) {
                self.error(
                    &at,
                    format!(
                        "{name:?} is not a Docker volume name, use 2-255 letters, digits, '_', \
                         '.' and '-', starting with a letter or digit"
                    ),
                );
            }
            return Some(Source::Volume { name });
        }
        if let Some(dir) = raw.path {
            let at = path.key("path").key("path");
            let Some(dir) = dir.path else {
                self.error(&at, "required, write e.g. path: {path: /srv/crm/files}");
                return None;
            };
            return self
                .absolute_dir(&dir, &at, "the directory to back up", "/srv/crm/files")
                .then_some(Source::Path { path: dir });
        }
        let command = raw.command?;
        let at = path.key("command");
        let backup = self.command_line(
            command.backup,
            &at.key("backup"),
            "the command that writes the dump to stdout, e.g. backup: \"tar -C /srv -cf - data\"",
        );
        let restore = self.command_line(
            command.restore,
            &at.key("restore"),
            "a backup nobody can restore is not a backup; write the command that reads the dump \
             from stdin, e.g. restore: \"tar -C /srv -xf -\"",
        );
        Some(Source::Command {
            backup: backup?,
            restore: restore?,
        })
    }

    fn command_line(
        &mut self,
        text: Option<String>,
        path: &FieldPath,
        what: &str,
    ) -> Option<String> {
        match text {
            Some(text) if !text.trim().is_empty() => Some(text),
            Some(_) => {
                self.error(path, format!("is empty: {what}"));
                None
            }
            None => {
                self.error(path, format!("required: {what}"));
                None
            }
        }
    }

    /// An absolute directory without `..`, and not the whole file system.
    fn absolute_dir(&mut self, dir: &str, path: &FieldPath, what: &str, example: &str) -> bool {
        let message = if !dir.starts_with('/') {
            format!("{dir:?} is not an absolute path, write {what} from /, e.g. {example}")
        } else if Path::new(dir)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            format!("{dir:?} has '..' in it, write {what} without it, e.g. {example}")
        } else if Path::new(dir).components().all(|c| c == Component::RootDir) {
            format!("{dir:?} is the whole file system, name {what}, e.g. {example}")
        } else {
            return true;
        };
        self.error(path, message);
        false
    }

    /// `{secret: crm/pg-url}` or `{secret: crm/pg-url@3}`.
    fn secret(&mut self, node: Node, path: &FieldPath) -> Option<SecretRef> {
        if let Node::Str(text) = &node {
            self.error(
                path,
                format!(
                    "{} is a plain string; values with passwords or keys are kept as secrets: \
                     store it with `argosy secret set NAME --from-file FILE` and write \
                     {{secret: NAME}}",
                    if text.len() > 40 || text.contains("://") {
                        "the value".to_owned()
                    } else {
                        format!("{text:?}")
                    }
                ),
            );
            return None;
        }
        if !matches!(node, Node::Map(_)) {
            self.error(
                path,
                format!(
                    "expected {{secret: NAME}}, e.g. {{secret: crm/backup-key}}, found {}",
                    describe(&node)
                ),
            );
            return None;
        }
        let raw: RawBackupSecret = self.shape(node, path)?;
        let Some(name) = raw.secret else {
            self.error(
                &path.key("secret"),
                "required, write e.g. {secret: crm/backup-key}",
            );
            return None;
        };
        match units::parse_secret_ref(&name) {
            Ok(secret) => Some(secret),
            Err(e) => {
                self.error(&path.key("secret"), e.to_string());
                None
            }
        }
    }

    fn schedule(
        &mut self,
        text: Option<String>,
        path: &FieldPath,
        required: bool,
    ) -> Option<Schedule> {
        let Some(text) = text else {
            if required {
                self.error(
                    path,
                    "required: when backups run, as cron in UTC, e.g. schedule: \"0 */2 * * *\"",
                );
            }
            return None;
        };
        match Schedule::parse(&text) {
            Ok(schedule) => Some(schedule),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    fn rpo(
        &mut self,
        node: Option<Node>,
        schedule: Option<&Schedule>,
        path: &FieldPath,
    ) -> Duration {
        let Some(node) = node else {
            self.error(
                path,
                "required: how old the newest good backup may get before the policy is \
                 overdue, e.g. rpo: 6h",
            );
            return Duration::ZERO;
        };
        let Some(rpo) = self.duration(&node, path) else {
            return Duration::ZERO;
        };
        if rpo.is_zero() {
            self.error(path, "0 can never be met, write e.g. rpo: 6h");
            return rpo;
        }
        if let Some(schedule) = schedule {
            let gap_ms = schedule.longest_gap_ms();
            let gap = Duration::from_millis(u64::try_from(gap_ms).unwrap_or(u64::MAX));
            if rpo <= gap {
                self.error(
                    path,
                    format!(
                        "{} is not longer than the longest gap between scheduled backups ({}, \
                         schedule {:?}), so it can never be met; make it longer, e.g. rpo: {}, \
                         or schedule backups more often",
                        show(rpo),
                        show(gap),
                        schedule.as_str(),
                        show(gap.saturating_mul(3))
                    ),
                );
            }
        }
        rpo
    }

    fn duration(&mut self, node: &Node, path: &FieldPath) -> Option<Duration> {
        match node {
            Node::Str(text) => match units::parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(path, e.to_string());
                    None
                }
            },
            Node::Int(0) => Some(Duration::ZERO),
            Node::Int(n) => {
                self.error(path, format!("{n} has no unit, write e.g. {n}h"));
                None
            }
            other => {
                self.error(
                    path,
                    format!(
                        "expected a duration like 6h or 1d, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn retention(&mut self, raw: Option<RawBackupRetention>, path: &FieldPath) -> Retention {
        let Some(raw) = raw else {
            self.error(
                path,
                "required: say which backups to keep, e.g. retention: {keep_last: 3, daily: 7, \
                 weekly: 4, monthly: 12}",
            );
            return Retention {
                keep_last: 1,
                ..Retention::default()
            };
        };
        let mut count = |value: Option<i64>, field: &str, default: u32| match value {
            None => default,
            Some(n) => match u32::try_from(n).ok().filter(|n| *n <= MAX_KEEP) {
                Some(n) => n,
                None => {
                    self.error(
                        &path.key(field),
                        format!("{n} is out of range, write 0 to {MAX_KEEP}"),
                    );
                    default
                }
            },
        };
        let retention = Retention {
            keep_last: count(raw.keep_last, "keep_last", 1),
            hourly: count(raw.hourly, "hourly", 0),
            daily: count(raw.daily, "daily", 0),
            weekly: count(raw.weekly, "weekly", 0),
            monthly: count(raw.monthly, "monthly", 0),
        };
        if retention == Retention::default() {
            self.error(
                path,
                "keeps no backup at all; keep at least one, e.g. keep_last: 1",
            );
        }
        retention
    }

    fn destinations(
        &mut self,
        items: Option<Vec<Node>>,
        source: Option<&Source>,
        path: &FieldPath,
    ) -> Vec<Destination> {
        let example = "e.g. destinations: [{name: local, dir: /var/backups/argosy}]";
        let items = match items {
            None => {
                self.error(
                    path,
                    format!("required: where backups are stored, {example}"),
                );
                return Vec::new();
            }
            Some(items) if items.is_empty() => {
                self.error(
                    path,
                    format!("is empty: name at least one place, {example}"),
                );
                return Vec::new();
            }
            Some(items) => items,
        };
        let mut found: Vec<(usize, Destination)> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = path.index(i);
            if !matches!(item, Node::Map(_)) {
                self.error(
                    &at,
                    format!(
                        "expected a map like {{name: local, dir: /var/backups/argosy}}, found {}",
                        describe(&item)
                    ),
                );
                continue;
            }
            let Some(raw) = self.shape::<RawBackupDestination>(item, &at) else {
                continue;
            };
            if let Some(destination) = self.destination(raw, source, &at) {
                found.push((i, destination));
            }
        }
        for (n, (i, d)) in found.iter().enumerate() {
            let earlier = |same: &dyn Fn(&Destination) -> bool| {
                found[..n].iter().find(|(_, o)| same(o)).map(|(j, _)| *j)
            };
            if let Some(j) = earlier(&|o| o.name == d.name) {
                self.error(
                    &path.index(*i).key("name"),
                    format!(
                        "{} is already the name of {}, give each destination its own",
                        d.name,
                        path.index(j)
                    ),
                );
            } else if let Some(j) = earlier(&|o| same_place(&o.kind, &d.kind)) {
                self.error(
                    &path.index(*i),
                    format!(
                        "stores backups where {} does; a second copy belongs in another place",
                        path.index(j)
                    ),
                );
            }
        }
        found.into_iter().map(|(_, d)| d).collect()
    }

    fn destination(
        &mut self,
        raw: RawBackupDestination,
        source: Option<&Source>,
        path: &FieldPath,
    ) -> Option<Destination> {
        let name = match raw.name {
            Some(name) if is_dns_label(&name) => Some(name),
            Some(name) => {
                self.error(
                    &path.key("name"),
                    format!(
                        "{name:?} is not a valid name, use 1-63 lowercase letters, digits and \
                         '-', starting with a letter, e.g. offsite"
                    ),
                );
                None
            }
            None => {
                self.error(&path.key("name"), "required, write e.g. name: local");
                None
            }
        };
        let kind = match (raw.dir, raw.s3) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "has both dir and s3; one destination is one place, write two destinations",
                );
                None
            }
            (None, None) => {
                self.error(
                    path,
                    "say where: dir: /var/backups/argosy or s3: {endpoint: ..., bucket: ...}",
                );
                None
            }
            (Some(dir), None) => self.dir(dir, source, &path.key("dir")),
            (None, Some(s3)) => self.s3(s3, &path.key("s3")),
        };
        Some(Destination {
            name: name?,
            kind: kind?,
        })
    }

    fn dir(
        &mut self,
        dir: String,
        source: Option<&Source>,
        path: &FieldPath,
    ) -> Option<DestinationKind> {
        if !self.absolute_dir(&dir, path, "the directory", "/var/backups/argosy") {
            return None;
        }
        if let Some(Source::Path { path: backed_up }) = source
            && Path::new(&dir).starts_with(backed_up)
        {
            self.error(
                path,
                format!(
                    "{dir:?} is inside the source path {backed_up:?}: every backup would contain \
                     the ones before it; store backups elsewhere"
                ),
            );
            return None;
        }
        Some(DestinationKind::Dir { path: dir })
    }

    fn s3(&mut self, raw: RawBackupS3, path: &FieldPath) -> Option<DestinationKind> {
        let endpoint = match raw.endpoint {
            None => {
                self.error(
                    &path.key("endpoint"),
                    "required, write e.g. endpoint: https://s3.eu-west-1.amazonaws.com",
                );
                None
            }
            Some(text) => match check_endpoint(&text) {
                Ok(endpoint) => Some(endpoint),
                Err(message) => {
                    self.error(&path.key("endpoint"), message);
                    None
                }
            },
        };
        let bucket = match raw.bucket {
            None => {
                self.error(
                    &path.key("bucket"),
                    "required, write e.g. bucket: crm-backups",
                );
                None
            }
            Some(bucket) if is_bucket_name(&bucket) => Some(bucket),
            Some(bucket) => {
                self.error(
                    &path.key("bucket"),
                    format!(
                        "{bucket:?} is not an S3 bucket name, use 3-63 lowercase letters, \
                         digits, '-' and '.', starting and ending with a letter or digit"
                    ),
                );
                None
            }
        };
        let prefix = match normalize_prefix(raw.prefix.as_deref().unwrap_or_default()) {
            Ok(prefix) => Some(prefix),
            Err(message) => {
                self.error(&path.key("prefix"), message);
                None
            }
        };
        let region = match raw.region {
            None => Some(DEFAULT_S3_REGION.to_owned()),
            Some(region) if is_region(&region) => Some(region),
            Some(region) => {
                self.error(
                    &path.key("region"),
                    format!(
                        "{region:?} is not a region name, use lowercase letters, digits and '-', \
                         e.g. eu-west-1 (default {DEFAULT_S3_REGION})"
                    ),
                );
                None
            }
        };
        let mut credential = |node: Option<Node>, field: &str, example: &str| match node {
            Some(node) => self.secret(node, &path.key(field)),
            None => {
                self.error(
                    &path.key(field),
                    format!("required, write e.g. {field}: {{secret: {example}}}"),
                );
                None
            }
        };
        let access_key_id = credential(raw.access_key_id, "access_key_id", "s3/key-id");
        let secret_access_key =
            credential(raw.secret_access_key, "secret_access_key", "s3/secret-key");
        Some(DestinationKind::S3 {
            endpoint: endpoint?,
            bucket: bucket?,
            prefix: prefix?,
            region: region?,
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
        })
    }

    fn compression(&mut self, raw: Option<RawBackupCompression>, path: &FieldPath) -> i32 {
        let Some(level) = raw.and_then(|r| r.level) else {
            return DEFAULT_COMPRESSION_LEVEL;
        };
        match i32::try_from(level)
            .ok()
            .filter(|l| (1..=MAX_COMPRESSION_LEVEL).contains(l))
        {
            Some(level) => level,
            None => {
                self.error(
                    &path.key("level"),
                    format!(
                        "{level} is not a zstd level, write 1 to {MAX_COMPRESSION_LEVEL} \
                         (default {DEFAULT_COMPRESSION_LEVEL})"
                    ),
                );
                DEFAULT_COMPRESSION_LEVEL
            }
        }
    }

    fn encryption(
        &mut self,
        raw: Option<RawBackupEncryption>,
        allow_unencrypted: Option<bool>,
        root: &FieldPath,
    ) -> Option<SecretRef> {
        let path = root.key("encryption");
        let allowed = allow_unencrypted == Some(true);
        match raw {
            Some(_) if allowed => {
                self.error(
                    &root.key("allow_unencrypted"),
                    "contradicts encryption.key: remove allow_unencrypted, or the encryption \
                     to store backups unencrypted",
                );
                None
            }
            Some(raw) => match raw.key {
                Some(node) => self.secret(node, &path.key("key")),
                None => {
                    self.error(
                        &path.key("key"),
                        "required, write e.g. key: {secret: crm/backup-key}",
                    );
                    None
                }
            },
            None if allowed => None,
            None => {
                self.error(
                    &path,
                    "required: backups are encrypted before they leave the host; name a key, \
                     e.g. encryption: {key: {secret: crm/backup-key}}, or write \
                     allow_unencrypted: true to store them unencrypted",
                );
                None
            }
        }
    }

    fn verify(
        &mut self,
        raw: Option<RawBackupVerify>,
        source: Option<&Source>,
        path: &FieldPath,
    ) -> Verify {
        let Some(raw) = raw else {
            return Verify::default();
        };
        let schedule = self
            .schedule(raw.schedule, &path.key("schedule"), false)
            .map(|s| s.as_str().to_owned());
        let sql_assertion = match raw.sql_assertion {
            Some(sql) if sql.trim().is_empty() => {
                self.error(
                    &path.key("sql_assertion"),
                    "is empty: write SQL returning one boolean, e.g. \"select count(*) > 0 from \
                     customers\", or leave the field out",
                );
                None
            }
            Some(sql) => {
                match source {
                    Some(Source::Postgres { .. }) | None => {}
                    Some(other) => self.error(
                        &path.key("sql_assertion"),
                        format!(
                            "only PostgreSQL sources run an SQL assertion (this one is {}); \
                             remove it",
                            other.kind()
                        ),
                    ),
                }
                Some(sql)
            }
            None => None,
        };
        Verify {
            schedule,
            sql_assertion,
        }
    }
}

/// A host id or hostname as written in a policy: 1-253 letters, digits,
/// `-`, `_` and `.`.
fn is_host_reference(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Two destinations that would write the same objects.
fn same_place(a: &DestinationKind, b: &DestinationKind) -> bool {
    match (a, b) {
        (DestinationKind::Dir { path: a }, DestinationKind::Dir { path: b }) => {
            Path::new(a) == Path::new(b)
        }
        (
            DestinationKind::S3 {
                endpoint: e1,
                bucket: b1,
                prefix: p1,
                ..
            },
            DestinationKind::S3 {
                endpoint: e2,
                bucket: b2,
                prefix: p2,
                ..
            },
        ) => e1 == e2 && b1 == b2 && p1 == p2,
        _ => false,
    }
}

/// An S3 endpoint: `http(s)://host[:port]`, nothing else. Returned without
/// a trailing `/`.
fn check_endpoint(text: &str) -> Result<String, String> {
    let example = "write e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000";
    let url = url::Url::parse(text).map_err(|_| format!("{text:?} is not a URL, {example}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http or https URL, {example}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} names no host, {example}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds credentials; remove them and name secrets in access_key_id and \
             secret_access_key"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(format!(
            "{text:?} has a path or query; give the server only (the bucket goes in bucket, \
             folders in prefix), {example}"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// S3's bucket naming rules (general purpose buckets): 3-63 lowercase
/// letters, digits, `-` and `.`; starting and ending with a letter or
/// digit; no `..`; not shaped like an IP address; none of the reserved
/// prefixes and suffixes.
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| edge(*b) || matches!(b, b'-' | b'.'))
        && edge(bytes[0])
        && edge(bytes[bytes.len() - 1])
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("xn--")
        && !name.starts_with("sthree-")
        && !name.ends_with("-s3alias")
        && !name.ends_with("--ol-s3")
}

/// A key prefix: empty, or folders ending with `/` (`prod` → `prod/`,
/// `/prod/` → `prod/`).
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "{prefix:?} has an empty, '.' or '..' folder, write e.g. prod/ or backups/prod/"
        ));
    }
    if prefix.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "{prefix:?} has control characters or '\\', write e.g. prod/"
        ));
    }
    Ok(format!("{trimmed}/"))
}

/// An S3 region: 1-63 lowercase letters, digits and `-`.
fn is_region(region: &str) -> bool {
    (1..=63).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::SecretVersion;

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            name: name.to_owned(),
            version: SecretVersion::Latest,
        }
    }

    /// The example in the issue's shared notes, as written there.
    const SHARED_EXAMPLE: &str = r#"
name: crm-db
service: crm-postgres            # or `host: <host id or hostname>`
source:
  postgres:
    connection: { secret: crm/pg-url }   # postgres://user:pass@127.0.0.1:5432/crm
    container: crm-pg                    # optional: docker exec into this container
  # volume: { name: crm-uploads }
  # path: { path: /srv/crm/files }
  # command: { backup: "tar -C /srv -cf - data", restore: "tar -C /srv -xf -" }
schedule: "0 */2 * * *"
rpo: 6h
retention: { keep_last: 3, hourly: 24, daily: 7, weekly: 4, monthly: 12 }
destinations:
  - name: local
    dir: /var/backups/argosy
  - name: offsite
    s3:
      endpoint: http://127.0.0.1:9000
      bucket: crm-backups
      prefix: prod/
      region: us-east-1
      access_key_id: { secret: s3/key-id }
      secret_access_key: { secret: s3/secret-key }
compression: { level: 3 }
encryption: { key: { secret: crm/backup-key } }
verify:
  schedule: "30 4 * * *"
  sql_assertion: "select count(*) > 0 from customers"
"#;

    fn expected_example() -> BackupPolicySpec {
        BackupPolicySpec {
            name: "crm-db".into(),
            runs_on: RunsOn::Service("crm-postgres".into()),
            source: Source::Postgres {
                connection: secret("crm/pg-url"),
                container: Some("crm-pg".into()),
            },
            schedule: "0 */2 * * *".into(),
            rpo: Duration::from_secs(6 * 3600),
            retention: Retention {
                keep_last: 3,
                hourly: 24,
                daily: 7,
                weekly: 4,
                monthly: 12,
            },
            destinations: vec![
                Destination {
                    name: "local".into(),
                    kind: DestinationKind::Dir {
                        path: "/var/backups/argosy".into(),
                    },
                },
                Destination {
                    name: "offsite".into(),
                    kind: DestinationKind::S3 {
                        endpoint: "http://127.0.0.1:9000".into(),
                        bucket: "crm-backups".into(),
                        prefix: "prod/".into(),
                        region: "us-east-1".into(),
                        access_key_id: secret("s3/key-id"),
                        secret_access_key: secret("s3/secret-key"),
                    },
                },
            ],
            compression_level: 3,
            encryption_key: Some(secret("crm/backup-key")),
            verify: Verify {
                schedule: Some("30 4 * * *".into()),
                sql_assertion: Some("select count(*) > 0 from customers".into()),
            },
        }
    }

    #[test]
    fn the_shared_example_and_the_documented_one_parse() {
        assert_eq!(
            parse(SHARED_EXAMPLE, Format::Yaml).unwrap(),
            expected_example()
        );
        assert_eq!(parse(example(), Format::Yaml).unwrap(), expected_example());
    }

    #[test]
    fn toml_reads_the_same() {
        let toml = r#"
name = "crm-db"
service = "crm-postgres"
schedule = "0 */2 * * *"
rpo = "6h"
retention = { keep_last = 3, hourly = 24, daily = 7, weekly = 4, monthly = 12 }
compression = { level = 3 }
encryption = { key = { secret = "crm/backup-key" } }

[source.postgres]
connection = { secret = "crm/pg-url" }
container = "crm-pg"

[[destinations]]
name = "local"
dir = "/var/backups/argosy"

[[destinations]]
name = "offsite"
[destinations.s3]
endpoint = "http://127.0.0.1:9000"
bucket = "crm-backups"
prefix = "prod/"
region = "us-east-1"
access_key_id = { secret = "s3/key-id" }
secret_access_key = { secret = "s3/secret-key" }

[verify]
schedule = "30 4 * * *"
sql_assertion = "select count(*) > 0 from customers"
"#;
        assert_eq!(parse(toml, Format::Toml).unwrap(), expected_example());
    }

    /// A minimal valid policy; `snippet` lines replace the base's fields of
    /// the same name (top-level keys only).
    fn with_base(snippet: &str) -> String {
        let base = [
            ("name", "name: files"),
            ("host", "host: db-1"),
            ("source", "source: {volume: {name: crm-uploads}}"),
            ("schedule", "schedule: \"0 */2 * * *\""),
            ("rpo", "rpo: 6h"),
            ("retention", "retention: {keep_last: 3}"),
            (
                "destinations",
                "destinations: [{name: local, dir: /var/backups/argosy}]",
            ),
            ("encryption", "encryption: {key: {secret: files/key}}"),
        ];
        let mentions = |key: &str| {
            snippet.lines().any(|l| {
                l.starts_with(&format!("{key}:"))
                    || (key == "host" && l.starts_with("service:"))
                    || (key == "encryption" && l.starts_with("allow_unencrypted:"))
            })
        };
        let mut text: Vec<String> = base
            .iter()
            .filter(|(key, _)| !mentions(key) && !snippet.lines().any(|l| l == format!("-{key}")))
            .map(|(_, line)| (*line).to_owned())
            .collect();
        text.extend(
            snippet
                .lines()
                .filter(|l| !l.starts_with('-'))
                .map(str::to_owned),
        );
        text.join("\n")
    }

    fn ok(snippet: &str) -> BackupPolicySpec {
        let text = with_base(snippet);
        parse(&text, Format::Yaml).unwrap_or_else(|e| panic!("{text}\nshould parse, but:\n{e}"))
    }

    /// Runs every row, then reports every row that did not give exactly
    /// the expected lines.
    fn check_errors(rows: &[(&str, &[&str])]) {
        let failures: Vec<String> = rows
            .iter()
            .filter_map(|(snippet, want)| {
                let text = with_base(snippet);
                let got: Vec<String> = match parse(&text, Format::Yaml) {
                    Ok(_) => vec!["<parsed without errors>".to_owned()],
                    Err(e) => e.errors.iter().map(ToString::to_string).collect(),
                };
                (got != *want).then(|| format!("--- {snippet:?}\n want {want:#?}\n got  {got:#?}"))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn the_base_is_valid_and_defaults_are_filled_in() {
        let p = ok("");
        assert_eq!(p.runs_on, RunsOn::Host("db-1".into()));
        assert_eq!(
            p.source,
            Source::Volume {
                name: "crm-uploads".into()
            }
        );
        assert_eq!(p.compression_level, DEFAULT_COMPRESSION_LEVEL);
        assert_eq!(p.verify, Verify::default());
        assert_eq!(
            ok("retention: {}").retention,
            Retention {
                keep_last: 1,
                ..Retention::default()
            }
        );
        assert_eq!(
            ok("retention: {daily: 7}").retention,
            Retention {
                keep_last: 1,
                daily: 7,
                ..Retention::default()
            }
        );
        assert_eq!(
            ok("retention: {keep_last: 0, monthly: 1}").retention,
            Retention {
                monthly: 1,
                ..Retention::default()
            }
        );
        assert_eq!(ok("schedule: ' 0  */2 * *  * '").schedule, "0 */2 * * *");
        assert_eq!(ok("allow_unencrypted: true").encryption_key, None);
        assert_eq!(
            ok("encryption: {key: {secret: files/key@4}}").encryption_key,
            Some(SecretRef {
                name: "files/key".into(),
                version: SecretVersion::Pinned(4)
            })
        );
        assert_eq!(ok("x-anchor: &d 1\nname: files").name, "files");
    }

    #[test]
    fn sources() {
        assert_eq!(
            ok("source: {path: {path: /srv/crm/files}}").source,
            Source::Path {
                path: "/srv/crm/files".into()
            }
        );
        assert_eq!(
            ok("source: {command: {backup: 'tar -cf - /srv', restore: 'tar -xf - -C /srv'}}")
                .source,
            Source::Command {
                backup: "tar -cf - /srv".into(),
                restore: "tar -xf - -C /srv".into()
            }
        );
        assert_eq!(
            ok("source: {postgres: {connection: {secret: crm/pg-url@2}}}").source,
            Source::Postgres {
                connection: SecretRef {
                    name: "crm/pg-url".into(),
                    version: SecretVersion::Pinned(2)
                },
                container: None
            }
        );
        let example = "e.g. source: {postgres: {connection: {secret: crm/pg-url}}}";
        check_errors(&[
            ("-source", &[&format!("spec.source: required, {example}")]),
            (
                "source: {}",
                &[&format!(
                    "spec.source: name one source: postgres, volume, path or command, {example}"
                )],
            ),
            (
                "source: {volume: {name: a1}, path: {path: /srv}}",
                &[
                    "spec.source: has volume and path; a policy backs up one source, write one policy per source",
                ],
            ),
            (
                "source: {mysql: {}}",
                &[
                    &format!(
                        "spec.source: name one source: postgres, volume, path or command, {example}"
                    ),
                    "spec.source.mysql: unknown field, expected one of postgres, volume, path, command",
                ],
            ),
            (
                "source: {postgres: {}}",
                &[
                    "spec.source.postgres.connection: required: a secret holding postgres://user:password@host:port/database, e.g. connection: {secret: crm/pg-url}",
                ],
            ),
            (
                "source: {postgres: {connection: 'postgres://u:hunter2@db/crm'}}",
                &[
                    "spec.source.postgres.connection: the value is a plain string; values with passwords or keys are kept as secrets: store it with `argosy secret set NAME --from-file FILE` and write {secret: NAME}",
                ],
            ),
            (
                "source: {postgres: {connection: {secret: crm/pg-url}, container: '-pg'}}",
                &[
                    r#"spec.source.postgres.container: "-pg" is not a container name, use letters, digits, '_', '.' and '-', starting with a letter or digit, e.g. crm-pg"#,
                ],
            ),
            (
                "source: {postgres: {connection: {secret: 'Bad Name'}}}",
                &[
                    "spec.source.postgres.connection.secret: secret name \"Bad Name\" is not valid: it holds a character other than a-z, 0-9, '-', '_', '.' and '/'; use 1–128 lowercase letters, digits, '-', '_', '.' and '/' (as in crm/db-password)",
                ],
            ),
            (
                "source: {postgres: {connection: {secrets: crm/pg-url}}}",
                // A problem at a field sorts before those inside it.
                &[
                    "spec.source.postgres.connection.secret: required, write e.g. {secret: crm/backup-key}",
                    "spec.source.postgres.connection.secrets: unknown field, did you mean secret?",
                ],
            ),
            (
                "source: {volume: {}}",
                &["spec.source.volume.name: required, write e.g. volume: {name: crm-uploads}"],
            ),
            (
                "source: {volume: {name: 'x'}}",
                &[
                    r#"spec.source.volume.name: "x" is not a Docker volume name, use 2-255 letters, digits, '_', '.' and '-', starting with a letter or digit"#,
                ],
            ),
            (
                "source: {path: {path: srv/files}}",
                &[
                    r#"spec.source.path.path: "srv/files" is not an absolute path, write the directory to back up from /, e.g. /srv/crm/files"#,
                ],
            ),
            (
                "source: {path: {path: /srv/../etc}}",
                &[
                    r#"spec.source.path.path: "/srv/../etc" has '..' in it, write the directory to back up without it, e.g. /srv/crm/files"#,
                ],
            ),
            (
                "source: {path: {path: //}}",
                &[
                    r#"spec.source.path.path: "//" is the whole file system, name the directory to back up, e.g. /srv/crm/files"#,
                ],
            ),
            (
                "source: {path: {}}",
                &["spec.source.path.path: required, write e.g. path: {path: /srv/crm/files}"],
            ),
            (
                "source: {command: {backup: 'tar -cf - /srv'}}",
                &[
                    "spec.source.command.restore: required: a backup nobody can restore is not a backup; write the command that reads the dump from stdin, e.g. restore: \"tar -C /srv -xf -\"",
                ],
            ),
            (
                "source: {command: {backup: ' ', restore: 'tar -xf -'}}",
                &[
                    "spec.source.command.backup: is empty: the command that writes the dump to stdout, e.g. backup: \"tar -C /srv -cf - data\"",
                ],
            ),
            (
                "source: {volume: crm-uploads}",
                &[
                    &format!(
                        "spec.source: name one source: postgres, volume, path or command, {example}"
                    ),
                    r#"spec.source.volume: expected a map, found "crm-uploads""#,
                ],
            ),
        ]);
    }

    #[test]
    fn where_it_runs() {
        assert_eq!(
            ok("service: crm-postgres").runs_on,
            RunsOn::Service("crm-postgres".into())
        );
        assert_eq!(
            ok("host: web-1.example.com").runs_on,
            RunsOn::Host("web-1.example.com".into())
        );
        check_errors(&[
            (
                "host: db-1\nservice: crm",
                &[
                    "spec.service: give either host or service, not both: service runs the backup on the host of the service's allocation",
                ],
            ),
            (
                "-host",
                &[
                    "spec: say where the data is: service: <service name> (the host running it) or host: <host id or hostname>",
                ],
            ),
            (
                "host: 'db 1'",
                &[
                    r#"spec.host: "db 1" is not a host id or hostname, use letters, digits, '-', '_' and '.' (see `argosy hosts`)"#,
                ],
            ),
            (
                "service: CRM",
                &[
                    r#"spec.service: "CRM" is not a service name, use 1-63 lowercase letters, digits and '-', starting with a letter, e.g. crm-postgres"#,
                ],
            ),
        ]);
    }

    #[test]
    fn names() {
        let long = format!("name: {}", "a".repeat(63));
        assert_eq!(ok(&long).name.len(), 63);
        let help = "use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-', e.g. crm-db";
        check_errors(&[
            ("-name", &["spec.name: required, write e.g. name: crm-db"]),
            (
                "name: Crm",
                &[&format!(r#"spec.name: "Crm" is not a valid name, {help}"#)],
            ),
            (
                "name: crm-",
                &[&format!(r#"spec.name: "crm-" is not a valid name, {help}"#)],
            ),
            (
                "name: 1crm",
                &[&format!(r#"spec.name: "1crm" is not a valid name, {help}"#)],
            ),
            (
                &format!("name: {}", "a".repeat(64)),
                &[&format!(
                    r#"spec.name: "{}" is not a valid name, {help}"#,
                    "a".repeat(64)
                )],
            ),
            ("name: 12", &["spec.name: expected a string, found 12"]),
        ]);
    }

    #[test]
    fn schedules_and_the_rpo() {
        assert_eq!(ok("rpo: 2h1s").rpo, Duration::from_secs(7201));
        assert_eq!(
            ok("schedule: '0 9 * * 1-5'\nrpo: 73h").schedule,
            "0 9 * * 1-5"
        );
        check_errors(&[
            (
                "-schedule",
                &[
                    "spec.schedule: required: when backups run, as cron in UTC, e.g. schedule: \"0 */2 * * *\"",
                ],
            ),
            (
                "schedule: '0 */2 * *'",
                &[
                    r#"spec.schedule: "0 */2 * *" has 4 fields; write five (minute hour day-of-month month day-of-week, in UTC), e.g. "0 */2 * * *" for every 2 hours"#,
                ],
            ),
            (
                "schedule: '@daily'\nrpo: 0",
                &[
                    r#"spec.schedule: "@daily" is a nickname; write the five fields instead, e.g. "0 0 * * *""#,
                    "spec.rpo: 0 can never be met, write e.g. rpo: 6h",
                ],
            ),
            (
                "-rpo",
                &[
                    "spec.rpo: required: how old the newest good backup may get before the policy is overdue, e.g. rpo: 6h",
                ],
            ),
            (
                "rpo: 1h",
                &[
                    r#"spec.rpo: 1h is not longer than the longest gap between scheduled backups (2h, schedule "0 */2 * * *"), so it can never be met; make it longer, e.g. rpo: 6h, or schedule backups more often"#,
                ],
            ),
            (
                "rpo: 2h",
                &[
                    r#"spec.rpo: 2h is not longer than the longest gap between scheduled backups (2h, schedule "0 */2 * * *"), so it can never be met; make it longer, e.g. rpo: 6h, or schedule backups more often"#,
                ],
            ),
            (
                "schedule: '0 9 * * 1-5'\nrpo: 1d",
                &[
                    r#"spec.rpo: 1day is not longer than the longest gap between scheduled backups (3days, schedule "0 9 * * 1-5"), so it can never be met; make it longer, e.g. rpo: 9days, or schedule backups more often"#,
                ],
            ),
            ("rpo: 6", &["spec.rpo: 6 has no unit, write e.g. 6h"]),
            (
                "rpo: soon",
                &[r#"spec.rpo: "soon" is not a duration, write e.g. 10s, 1m30s or 500ms"#],
            ),
            (
                "rpo: [6h]",
                &["spec.rpo: expected a duration like 6h or 1d, found a list"],
            ),
        ]);
    }

    #[test]
    fn retention_rules() {
        assert_eq!(
            ok(&format!("retention: {{keep_last: {MAX_KEEP}}}"))
                .retention
                .keep_last,
            MAX_KEEP
        );
        check_errors(&[
            (
                "-retention",
                &[
                    "spec.retention: required: say which backups to keep, e.g. retention: {keep_last: 3, daily: 7, weekly: 4, monthly: 12}",
                ],
            ),
            (
                "retention: {keep_last: 0}",
                &["spec.retention: keeps no backup at all; keep at least one, e.g. keep_last: 1"],
            ),
            (
                "retention: {keep_last: -1, daily: 10001}",
                &[
                    "spec.retention.keep_last: -1 is out of range, write 0 to 10000",
                    "spec.retention.daily: 10001 is out of range, write 0 to 10000",
                ],
            ),
            (
                "retention: {keep_daily: 7}",
                &["spec.retention.keep_daily: unknown field, did you mean daily?"],
            ),
            (
                "retention: {yearly: 3}",
                &[
                    "spec.retention.yearly: unknown field, expected one of keep_last, hourly, daily, weekly, monthly",
                ],
            ),
            (
                "retension: {}",
                &["spec.retension: unknown field, did you mean retention?"],
            ),
        ]);
    }

    #[test]
    fn destinations() {
        let p = ok(
            "destinations:\n  - {name: a, dir: /backups}\n  - name: b\n    s3: {endpoint: 'https://S3.example.com:9000/', bucket: my.bucket-1, prefix: /a/b, access_key_id: {secret: k/id}, secret_access_key: {secret: k/key}}",
        );
        assert_eq!(
            p.destinations[1].kind,
            DestinationKind::S3 {
                endpoint: "https://s3.example.com:9000".into(),
                bucket: "my.bucket-1".into(),
                prefix: "a/b/".into(),
                region: DEFAULT_S3_REGION.into(),
                access_key_id: secret("k/id"),
                secret_access_key: secret("k/key"),
            }
        );
        let s3 = |fields: &str| {
            format!(
                "destinations:\n  - name: s\n    s3: {{endpoint: 'http://127.0.0.1:9000', bucket: bkt, access_key_id: {{secret: k/id}}, secret_access_key: {{secret: k/key}}, {fields}}}"
            )
        };
        let prefix = |p: &str| match &ok(&s3(&format!("prefix: '{p}'"))).destinations[0].kind {
            DestinationKind::S3 { prefix, .. } => prefix.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(prefix(""), "");
        assert_eq!(prefix("/"), "");
        assert_eq!(prefix("prod"), "prod/");
        assert_eq!(prefix("prod/"), "prod/");
        assert_eq!(prefix("/prod/db/"), "prod/db/");
        match &ok(&s3("region: eu-west-1")).destinations[0].kind {
            DestinationKind::S3 { region, .. } => assert_eq!(region, "eu-west-1"),
            other => panic!("{other:?}"),
        }
        let endpoint_help =
            "write e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000";
        let bucket_help = "is not an S3 bucket name, use 3-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
        check_errors(&[
            (
                "-destinations",
                &[
                    "spec.destinations: required: where backups are stored, e.g. destinations: [{name: local, dir: /var/backups/argosy}]",
                ],
            ),
            (
                "destinations: []",
                &[
                    "spec.destinations: is empty: name at least one place, e.g. destinations: [{name: local, dir: /var/backups/argosy}]",
                ],
            ),
            (
                "destinations: [/backups]",
                &[
                    r#"spec.destinations[0]: expected a map like {name: local, dir: /var/backups/argosy}, found "/backups""#,
                ],
            ),
            (
                "destinations: [{dir: /backups}, {name: b}]",
                &[
                    "spec.destinations[0].name: required, write e.g. name: local",
                    "spec.destinations[1]: say where: dir: /var/backups/argosy or s3: {endpoint: ..., bucket: ...}",
                ],
            ),
            (
                "destinations: [{name: Local, dir: /a, s3: {}}]",
                &[
                    "spec.destinations[0]: has both dir and s3; one destination is one place, write two destinations",
                    r#"spec.destinations[0].name: "Local" is not a valid name, use 1-63 lowercase letters, digits and '-', starting with a letter, e.g. offsite"#,
                ],
            ),
            (
                "destinations: [{name: a, dir: /a}, {name: a, dir: /b}, {name: c, dir: /a/}]",
                &[
                    "spec.destinations[1].name: a is already the name of spec.destinations[0], give each destination its own",
                    "spec.destinations[2]: stores backups where spec.destinations[0] does; a second copy belongs in another place",
                ],
            ),
            (
                "destinations: [{name: a, dir: /}]",
                &[
                    r#"spec.destinations[0].dir: "/" is the whole file system, name the directory, e.g. /var/backups/argosy"#,
                ],
            ),
            (
                "destinations: [{name: a, dir: backups}]",
                &[
                    r#"spec.destinations[0].dir: "backups" is not an absolute path, write the directory from /, e.g. /var/backups/argosy"#,
                ],
            ),
            (
                "source: {path: {path: /srv}}\ndestinations: [{name: a, dir: /srv/backups}]",
                &[
                    r#"spec.destinations[0].dir: "/srv/backups" is inside the source path "/srv": every backup would contain the ones before it; store backups elsewhere"#,
                ],
            ),
            (
                "destinations: [{name: a, dir: /a, size: 1}, {name: b, dir: 5}]",
                &[
                    "spec.destinations[0].size: unknown field, expected one of name, dir, s3",
                    "spec.destinations[1].dir: expected a string, found 5",
                ],
            ),
            (
                "destinations: [{name: s, s3: {}}]",
                &[
                    "spec.destinations[0].s3.endpoint: required, write e.g. endpoint: https://s3.eu-west-1.amazonaws.com",
                    "spec.destinations[0].s3.bucket: required, write e.g. bucket: crm-backups",
                    "spec.destinations[0].s3.access_key_id: required, write e.g. access_key_id: {secret: s3/key-id}",
                    "spec.destinations[0].s3.secret_access_key: required, write e.g. secret_access_key: {secret: s3/secret-key}",
                ],
            ),
            (
                &s3("url: x").replace("endpoint: 'http://127.0.0.1:9000', ", ""),
                &[
                    "spec.destinations[0].s3.endpoint: required, write e.g. endpoint: https://s3.eu-west-1.amazonaws.com",
                    "spec.destinations[0].s3.url: unknown field, did you mean endpoint?",
                ],
            ),
            (
                &s3("").replace("http://127.0.0.1:9000", "ftp://x"),
                &[&format!(
                    r#"spec.destinations[0].s3.endpoint: "ftp://x" is not an http or https URL, {endpoint_help}"#
                )],
            ),
            (
                &s3("").replace("http://127.0.0.1:9000", "s3.amazonaws.com"),
                &[&format!(
                    r#"spec.destinations[0].s3.endpoint: "s3.amazonaws.com" is not a URL, {endpoint_help}"#
                )],
            ),
            (
                &s3("").replace("http://127.0.0.1:9000", "https://key:secret@s3.example.com"),
                &[
                    "spec.destinations[0].s3.endpoint: the URL holds credentials; remove them and name secrets in access_key_id and secret_access_key",
                ],
            ),
            (
                &s3("").replace("http://127.0.0.1:9000", "http://s3.example.com/bkt"),
                &[&format!(
                    r#"spec.destinations[0].s3.endpoint: "http://s3.example.com/bkt" has a path or query; give the server only (the bucket goes in bucket, folders in prefix), {endpoint_help}"#
                )],
            ),
            (
                &s3("").replace("bucket: bkt", "bucket: Bkt"),
                &[&format!(
                    r#"spec.destinations[0].s3.bucket: "Bkt" {bucket_help}"#
                )],
            ),
            (
                &s3("prefix: 'a//b', region: EU"),
                &[
                    r#"spec.destinations[0].s3.prefix: "a//b" has an empty, '.' or '..' folder, write e.g. prod/ or backups/prod/"#,
                    r#"spec.destinations[0].s3.region: "EU" is not a region name, use lowercase letters, digits and '-', e.g. eu-west-1 (default us-east-1)"#,
                ],
            ),
            (
                &s3("").replace("{secret: k/key}", "hunter2"),
                &[
                    r#"spec.destinations[0].s3.secret_access_key: "hunter2" is a plain string; values with passwords or keys are kept as secrets: store it with `argosy secret set NAME --from-file FILE` and write {secret: NAME}"#,
                ],
            ),
        ]);
    }

    #[test]
    fn bucket_names_follow_s3() {
        for good in [
            "abc",
            "my-bucket",
            "my.bucket.1",
            "1bucket",
            &"a".repeat(63),
        ] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-bucket",
            "bucket-",
            "bucket.",
            "my..bucket",
            "192.168.1.1",
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn compression_and_encryption() {
        assert_eq!(ok("compression: {level: 1}").compression_level, 1);
        assert_eq!(ok("compression: {level: 19}").compression_level, 19);
        assert_eq!(ok("compression: {}").compression_level, 3);
        check_errors(&[
            (
                "compression: {level: 0}",
                &["spec.compression.level: 0 is not a zstd level, write 1 to 19 (default 3)"],
            ),
            (
                "compression: {level: 20}",
                &["spec.compression.level: 20 is not a zstd level, write 1 to 19 (default 3)"],
            ),
            (
                "-encryption",
                &[
                    "spec.encryption: required: backups are encrypted before they leave the host; name a key, e.g. encryption: {key: {secret: crm/backup-key}}, or write allow_unencrypted: true to store them unencrypted",
                ],
            ),
            (
                "allow_unencrypted: false",
                &[
                    "spec.encryption: required: backups are encrypted before they leave the host; name a key, e.g. encryption: {key: {secret: crm/backup-key}}, or write allow_unencrypted: true to store them unencrypted",
                ],
            ),
            (
                "encryption: {key: {secret: a/b}}\nallow_unencrypted: true",
                &[
                    "spec.allow_unencrypted: contradicts encryption.key: remove allow_unencrypted, or the encryption to store backups unencrypted",
                ],
            ),
            (
                "encryption: {}",
                &["spec.encryption.key: required, write e.g. key: {secret: crm/backup-key}"],
            ),
            (
                "encryption: {key: [a]}",
                &[
                    "spec.encryption.key: expected {secret: NAME}, e.g. {secret: crm/backup-key}, found a list",
                ],
            ),
            (
                "encryption: {key: {secret: 'a/b@0'}}",
                &[
                    "spec.encryption.key.secret: \"a/b@0\" does not pin a version, write a version number from 1 after '@', e.g. a/b@3, or leave '@' out to follow the latest version",
                ],
            ),
        ]);
    }

    #[test]
    fn verification() {
        let v = ok("verify: {schedule: '30 4 * * *'}").verify;
        assert_eq!(v.schedule.as_deref(), Some("30 4 * * *"));
        assert_eq!(v.sql_assertion, None);
        check_errors(&[
            (
                "verify: {sql_assertion: 'select true'}",
                &[
                    "spec.verify.sql_assertion: only PostgreSQL sources run an SQL assertion (this one is volume); remove it",
                ],
            ),
            (
                "source: {postgres: {connection: {secret: a/b}}}\nverify: {sql_assertion: ' '}",
                &[
                    "spec.verify.sql_assertion: is empty: write SQL returning one boolean, e.g. \"select count(*) > 0 from customers\", or leave the field out",
                ],
            ),
            (
                "verify: {schedule: 'daily'}",
                &[
                    r#"spec.verify.schedule: "daily" has 1 fields; write five (minute hour day-of-month month day-of-week, in UTC), e.g. "0 */2 * * *" for every 2 hours"#,
                ],
            ),
            (
                "verify: {every: 1d}",
                &["spec.verify.every: unknown field, expected one of schedule, sql_assertion"],
            ),
            (
                "verification: {}",
                &["spec.verification: unknown field, did you mean verify?"],
            ),
        ]);
    }

    #[test]
    fn whole_document_problems() {
        let errors = |text: &str, format: Format| -> Vec<String> {
            parse(text, format)
                .unwrap_err()
                .errors
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            errors("", Format::Yaml),
            [
                "spec: the spec is empty, start from the example in `argosy backup policy apply --help`"
            ]
        );
        assert_eq!(
            errors("[1]", Format::Yaml),
            ["spec: expected a map of fields (name, service, source, schedule, ...), found a list"]
        );
        assert!(errors("name = ", Format::Toml)[0].starts_with("spec: TOML syntax error: line 1"));
        // Every problem at once, in document order; a missing field sorts
        // with its parent, here the document itself.
        let all = errors(
            "name: X\nschedule: nope\nsource: {}\ndestinations: []\nfoo: 1\n",
            Format::Yaml,
        );
        let fields: Vec<&str> = all.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec",
                "spec.rpo",
                "spec.retention",
                "spec.encryption",
                "spec.name",
                "spec.schedule",
                "spec.source",
                "spec.destinations",
                "spec.foo",
            ],
            "{all:#?}"
        );
    }
}
