//! Service specs as people write them, in YAML or TOML, and their
//! validation into the model ([`ServiceSpec`]). Every mistake in a spec is
//! reported at once, each naming the field and the fix:
//!
//! ```text
//! spec.resources.memory: "64XB" is not a size, write e.g. 64MiB
//! spec.resourcs: unknown field, did you mean resources?
//! ```
//!
//! Parsing goes in three steps, all pure:
//!
//! 1. text → [`Node`] tree (serde-saphyr for YAML, `toml` for TOML); a
//!    syntax error stops here, with its line and column;
//! 2. tree → raw serde structs (`deny_unknown_fields`, the shape people
//!    write) through a small deserializer that tracks the field path,
//!    reports *every* unknown field with the closest known one, and on a
//!    type error records it, drops the value and tries again;
//! 3. raw → model: defaults and every rule, collecting all errors.
//!
//! Errors come out in document order. As in compose, top-level fields
//! starting with `x-` are ignored, so they can hold YAML anchors.
//!
//! # Defaults, and why
//!
//! | field | default | why |
//! | --- | --- | --- |
//! | `replicas` | 1, or the sum of `placement.regions` counts | one copy is what a spec without the field means |
//! | `restart` | `always` | a fleet manager keeps services up; compose's `no` suits one-off containers |
//! | `resources.*` | no limit (`0` / `None` in the model) | a Wasm admission policy may require limits; syntax does not |
//! | `health_check` | none | |
//! | `health_check.http.path` | `/` | |
//! | `health_check.*.port` | the one TCP container port, when there is exactly one | |
//! | `health_check.http.expected_status` | 200 | |
//! | `health_check.interval` | 10s (at least 1s) | compose and Docker use 30s; 10s notices failures sooner |
//! | `health_check.timeout` | 5s, or half the interval when that is shorter | must stay below the interval |
//! | `health_check.retries` | 3 | Docker's default |
//! | `health_check.start_period` | 0 | Docker's default |
//! | `update.strategy` | `rolling` with Nomad's knobs ([`Rolling::default`]) | |
//! | `update.min_healthy_time`, `healthy_deadline` | 10s, 5m | Nomad |
//! | `update.progress_deadline` (rolling) | 10m | Nomad |
//! | `update.auto_revert` | true | a failed rollout should not stay half-done |
//! | `update.auto_promote` (blue_green, canary) | false | a person promotes unless told otherwise (Nomad) |
//! | `update.keep_old_for` (blue_green) | 10m | instant rollback for a while |
//! | `update.canaries`, `steps` (canary) | 1, `[25, 50, 100]` | |
//! | `env.X: {secret: NAME}` | the latest version (`NAME@3` pins one) | rotating the secret redeploys the service |
//! | `secrets[].file` | the last segment of the name | `crm/db-password` → `/run/secrets/db-password` |
//! | `secrets[].mode`, `uid`, `gid` | `"0400"`, 0, 0 | only the owner reads it, as Docker does |
//! | `pre_deploy_backup` | none | names a backup policy (`argosy backup policy apply`): every deployment first takes and verifies a backup under it, and does not start if that fails |
//! | `route` | none: not routed | reachable only through `ports` |
//! | `route.paths` | `["/"]` | every path of the hostnames |
//! | `route.port` | the one TCP container port, when there is exactly one | as for `health_check` |
//! | `route.tls` | none: plain HTTP | `certificate` names a secret; `self_signed` is for development |
//! | `route.regions` | `nearest` | each region serves its own requests, else the nearest region with a healthy allocation by measured round trip |
//! | `route.drain` | 5s ([`DEFAULT_DRAIN`]), 0s to 10m | in-flight requests finish before an allocation stops |
//!
//! In the model a missing memory or CPU limit is `0`, as Docker reads it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

use super::model::{
    BlueGreen, Canary, DEFAULT_DRAIN, HealthCheck, HealthProbe, Placement, PortMapping, Protocol,
    RegionCount, RegionPlacement, Resources, RestartPolicy, Rolling, Route, RouteRegions, RouteTls,
    SECRETS_MOUNT, SecretFile, SecretRef, ServiceSpec, UpdateStrategy, VolumeMount,
};
use super::units::{self, VolumePart};
use crate::routing::hosts::{self, RouteError};

/// The largest spec accepted, so that a hostile upload cannot make the
/// parser work hard (YAML alias expansion is budgeted by serde-saphyr too).
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// Docker refuses memory limits below 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// The most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// The longest `route.drain`: every stop and rollout step waits for it.
pub const MAX_DRAIN: Duration = Duration::from_secs(600);
/// The largest `route.regions.weights` value. Weights are relative and
/// the routing table splits requests in parts per million, so a larger
/// one could not be told apart.
pub const MAX_ROUTE_WEIGHT: u32 = 1_000_000;

/// The two spec languages, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: unknown spec format, name the file .yaml, .yml or .toml", .path.display())]
pub struct UnknownFormat {
    pub path: std::path::PathBuf,
}

impl Format {
    /// `.yaml` and `.yml` are YAML, `.toml` is TOML (any letter case).
    pub fn from_path(path: &Path) -> Result<Format, UnknownFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("toml") => Ok(Format::Toml),
            _ => Err(UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }
}

/// One thing wrong with a spec: where (`spec.ports[1].host`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Everything wrong with a spec, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.errors))]
pub struct SpecErrors {
    pub errors: Vec<FieldError>,
}

fn render_lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses and validates a spec. On failure every error found is returned,
/// in document order.
pub fn parse(text: &str, format: Format) -> Result<ServiceSpec, SpecErrors> {
    parse_with(text, format, &SERVICE_DOCUMENT, |raw: RawSpec| {
        let mut v = Validator::default();
        let spec = v.spec(raw);
        (spec, v.issues)
    })
}

/// What kind of document is parsed, for the messages about a whole one.
pub(crate) struct DocumentKind {
    /// A few of its top-level fields: `name, image, ...`.
    pub(crate) fields: &'static str,
    /// Where to find an example to start from.
    pub(crate) example_at: &'static str,
}

const SERVICE_DOCUMENT: DocumentKind = DocumentKind {
    fields: "name, image, ...",
    example_at: "`argosy apply --help`",
};

/// The three steps shared by every spec language of Argosy (service specs
/// here, backup policies in `backup::spec`): text → tree, tree → the raw
/// shape `R` (every unknown field and type error), then `validate`, which
/// returns the model and the issues it found. Every error comes back at
/// once, in document order.
pub(crate) fn parse_with<R: DeserializeOwned, M>(
    text: &str,
    format: Format,
    kind: &DocumentKind,
    validate: impl FnOnce(R) -> (M, Vec<Issue>),
) -> Result<M, SpecErrors> {
    let whole = |message: String| SpecErrors {
        errors: vec![FieldError {
            path: "spec".to_owned(),
            message,
        }],
    };
    if text.len() > MAX_SPEC_BYTES {
        return Err(whole(format!(
            "the spec is {} long, more than the {} a spec may have",
            units::format_size(text.len() as u64),
            units::format_size(MAX_SPEC_BYTES as u64)
        )));
    }
    let mut root = parse_tree(text, format).map_err(whole)?;
    match &root {
        Node::Map(_) => {}
        Node::Null => {
            return Err(whole(format!(
                "the spec is empty, start from the example in {}",
                kind.example_at
            )));
        }
        other => {
            return Err(whole(format!(
                "expected a map of fields ({}), found {}",
                kind.fields,
                describe(other)
            )));
        }
    }
    let order = document_order(&root);
    let shaped = to_raw::<R>(&mut root, &FieldPath::root());
    let mut issues = shaped.issues;
    if let Some(raw) = shaped.value {
        let (model, found) = validate(raw);
        issues.extend(
            found
                .into_iter()
                .filter(|i| !shaped.removed.iter().any(|r| i.path.starts_with(r))),
        );
        if issues.is_empty() {
            return Ok(model);
        }
    }
    // Stable: issues at the same place keep the order they were found in.
    issues.sort_by_key(|i| position(&order, &i.path));
    Err(SpecErrors {
        errors: issues
            .into_iter()
            .map(|i| FieldError {
                path: i.path.to_string(),
                message: i.message,
            })
            .collect(),
    })
}

/// A complete, commented example spec (YAML) that parses.
pub fn example() -> &'static str {
    EXAMPLE
}

const EXAMPLE: &str = r#"# An Argosy service spec. Apply it with `argosy apply -f web.yaml`.
# Only name and image are required; everything else shows its default
# or a typical value. The same fields work in TOML (web.toml).

name: web                      # 1-63 lowercase letters, digits, '-'
image: ghcr.io/acme/web:1.4.2  # pin a tag or a digest (@sha256:...)

# A list runs as is; a string runs through `sh -c`.
command: ["/usr/local/bin/web", "--listen", "0.0.0.0:8080"]

env:                           # or a list: ["RUST_LOG=info"]
  RUST_LOG: info
  APP_MODE: "production"       # quote values YAML could read as
                               # something else (yes, no, 1.0)
  DB_PASSWORD: { secret: crm/db-password }   # a secret's latest version;
                                             # rotating it redeploys
  API_KEY: { secret: crm/api-key@3 }         # pinned to version 3

secrets:                       # files under /run/secrets, on tmpfs, read-only
  - name: crm/db-password      # `argosy secret set crm/db-password --from-file F`
    file: db-password          # default: the last segment of the name
    mode: "0400"               # octal, in quotes; default "0400"
    uid: 0                     # owner inside the container; default 0
    gid: 0
  # - crm/tls-key@2            # short form: defaults for the rest

ports:
  - "8080:80"                  # host 8080 -> container 80 (tcp)
  - "127.0.0.1:9090:9090"      # only on the host's loopback
  - "53:53/udp"
  - { container: 8443, host: 8443, protocol: tcp }

volumes:
  - "web-cache:/var/cache/web"         # a named volume
  - "/srv/web/static:/srv/static:ro"   # an absolute host path, read-only
  - { source: web-data, target: /var/lib/web, read_only: false }

replicas: 3                    # 0-1000

placement:
  regions:                     # counts add up to replicas ...
    eu-west: 2
    us-east: 1
  # regions: [eu-west, us-east]  # ... or spread evenly over these
  constraints:                 # host labels that must all match
    disk: ssd

resources:
  cpu: 0.5                     # cores; or "250m" (thousandths)
  memory: 256MiB               # KiB/MiB/GiB = 1024^n, KB/MB/GB = 1000^n
  memory_swap: 512MiB          # memory plus swap; default: no swap
  pids: 256

health_check:                  # one of http, tcp or exec
  http:
    path: /healthz
    port: 80
    expected_status: 200
  # tcp: { port: 5432 }
  # exec: ["pg_isready", "-U", "postgres"]
  interval: 10s
  timeout: 5s                  # shorter than interval
  retries: 3                   # failures in a row before unhealthy
  start_period: 30s            # failures do not count while starting

restart: always                # always | on-failure | on-failure:5 | no

update:
  strategy: rolling            # rolling | blue_green | canary
  max_parallel: 1              # or max_surge / max_unavailable
  min_healthy_time: 10s
  healthy_deadline: 5m
  progress_deadline: 10m
  auto_revert: true
  # strategy: blue_green -> auto_promote: false, keep_old_for: 10m
  # strategy: canary     -> canaries: 1, steps: [25, 50, 100], auto_promote: false

# Take and verify a backup under this policy before every rollout; if that
# fails, the rollout does not start (`argosy backup policy apply -f ...`).
# pre_deploy_backup: web-db

route:                         # requests through the agents' ingresses
  hostnames: [web.example.com, "*.web.example.com"]  # '*.' is one more label
  paths: [/, /api]             # path prefixes; default [/]
  port: 80                     # the container port requests go to; default:
                               # the one tcp port, when ports has exactly one
  tls:                         # default: plain HTTP only
    certificate: web/tls       # a secret with the PEM chain and key (@3 pins)
    # self_signed: true        # development only
  regions: nearest             # default: each region serves its own requests,
                               # else the nearest region with a healthy replica
  # regions: { primary: eu-west, failover: [us-east] }
  # regions: { weights: { eu-west: 3, us-east: 1 } }
  drain: 5s                    # time a stopping replica gets to finish its
                               # requests; 0s to 10m
"#;

// ---------------------------------------------------------------------------
// Step 1: text → Node.

/// A parsed document before any meaning is given to it. Maps keep the
/// order they were written in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn parse_tree(text: &str, format: Format) -> Result<Node, String> {
    match format {
        Format::Yaml => serde_saphyr::from_str_with_options::<Node>(text, yaml_options())
            .map_err(|e| yaml_error(&e.to_string())),
        Format::Toml => toml::from_str::<Node>(text).map_err(|e| {
            let message = e.message().trim_end().replace('\n', "; ");
            match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    format!("TOML syntax error: line {line} column {column}: {message}")
                }
                None => format!("TOML syntax error: {message}"),
            }
        }),
    }
}

/// serde-saphyr's message in a spec author's words: its first line says
/// where and what (the rest is a source snippet), minus library advice.
fn yaml_error(full: &str) -> String {
    let first = full.lines().next().unwrap_or_default();
    if first.contains("budget breached") {
        return "the YAML expands to more values or deeper nesting than a spec needs \
                (aliases?), write it out plainly"
            .to_owned();
    }
    let first = first
        .trim_start_matches("error: ")
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "; use from_str_multiple or from_str_multiple_with_options",
            ", write one service per file",
        );
    format!("YAML syntax error: {first}")
}

/// A real spec has a few hundred nodes and no deep nesting; these limits
/// stop alias bombs ("billion laughs") early, far below the library's own.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 20_000,
            max_aliases: 1_000,
            max_depth: 32,
        },
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::UInt(v), Node::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let key = match key {
                Node::Str(s) => s,
                Node::Int(_) | Node::UInt(_) | Node::Float(_) | Node::Bool(_) => {
                    scalar_string(&key).unwrap_or_default()
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "map keys must be plain words, found {}",
                        describe(&other)
                    )));
                }
            };
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A scalar as text, the way it would be written (`1.0` stays `1.0`).
fn scalar_string(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some(s.clone()),
        Node::Int(n) => Some(n.to_string()),
        Node::UInt(n) => Some(n.to_string()),
        Node::Float(f) => Some(format!("{f:?}")),
        Node::Bool(b) => Some(b.to_string()),
        Node::Null | Node::Seq(_) | Node::Map(_) => None,
    }
}

/// How a value is named in a message: strings quoted, containers by kind.
pub(crate) fn describe(node: &Node) -> String {
    match node {
        Node::Null => "nothing (null)".to_owned(),
        Node::Str(s) => format!("{s:?}"),
        Node::Seq(_) => "a list".to_owned(),
        Node::Map(_) => "a map".to_owned(),
        scalar => scalar_string(scalar).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// Field paths.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `spec.ports[1].host`, kept as segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        FieldPath(segs)
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        FieldPath(segs)
    }

    fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("spec")?;
        for seg in &self.0 {
            match seg {
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k)
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) =>
                {
                    write!(f, ".{k}")?
                }
                Seg::Key(k) => write!(f, ".{k:?}")?,
            }
        }
        Ok(())
    }
}

/// Position of every path in the document, in reading order.
fn document_order(root: &Node) -> HashMap<FieldPath, usize> {
    fn walk(node: &Node, path: FieldPath, order: &mut HashMap<FieldPath, usize>) {
        let next = order.len();
        order.insert(path.clone(), next);
        match node {
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, path.index(i), order);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    walk(v, path.key(k), order);
                }
            }
            _ => {}
        }
    }
    let mut order = HashMap::new();
    walk(root, FieldPath::root(), &mut order);
    order
}

/// Where an issue sorts: at its path, or at the nearest written parent
/// (an issue about a missing field sorts with its parent).
fn position(order: &HashMap<FieldPath, usize>, path: &FieldPath) -> usize {
    (0..=path.0.len())
        .rev()
        .find_map(|n| order.get(&FieldPath(path.0[..n].to_vec())).copied())
        .unwrap_or(0)
}

/// One problem found while validating, at its path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    pub(crate) path: FieldPath,
    pub(crate) message: String,
}

// ---------------------------------------------------------------------------
// Step 2: Node → raw structs, through a path-tracking deserializer.

/// A deserialization error and where it happened.
#[derive(Debug)]
struct DeError {
    path: Option<FieldPath>,
    message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: None,
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {}",
            friendly_expected(expected),
            friendly_unexpected(unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::invalid_type(unexpected, expected)
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "expected {}, found {len} items",
            friendly_expected(expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("{field} is required"))
    }
}

/// Serde's names for types, in the words of a spec author.
fn friendly_expected(expected: &dyn de::Expected) -> String {
    let text = expected.to_string();
    match text.as_str() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list".to_owned(),
        _ if text.starts_with("struct ") => "a map".to_owned(),
        _ => text,
    }
}

fn friendly_unexpected(unexpected: Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(b) => b.to_string(),
        Unexpected::Unsigned(n) => n.to_string(),
        Unexpected::Signed(n) => n.to_string(),
        Unexpected::Float(f) => format!("{f:?}"),
        Unexpected::Str(s) => format!("{s:?}"),
        Unexpected::Unit | Unexpected::Option => "nothing (null)".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a map".to_owned(),
        other => other.to_string(),
    }
}

/// Unknown fields found while deserializing, reported all at once.
#[derive(Default)]
struct Sink {
    unknown: RefCell<Vec<Issue>>,
}

/// Deserializes one [`Node`] at a known path.
struct NodeDe<'a> {
    node: &'a Node,
    path: FieldPath,
    sink: &'a Sink,
}

impl NodeDe<'_> {
    /// Gives an error from a visitor the path it happened at (innermost wins).
    fn at<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|mut e| {
            e.path.get_or_insert_with(|| self.path.clone());
            e
        })
    }

    fn unexpected(&self) -> Unexpected<'_> {
        match self.node {
            Node::Null => Unexpected::Unit,
            Node::Bool(b) => Unexpected::Bool(*b),
            Node::Int(n) => Unexpected::Signed(*n),
            Node::UInt(n) => Unexpected::Unsigned(*n),
            Node::Float(f) => Unexpected::Float(*f),
            Node::Str(s) => Unexpected::Str(s),
            Node::Seq(_) => Unexpected::Seq,
            Node::Map(_) => Unexpected::Map,
        }
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(n) => visitor.visit_i64(*n),
            Node::UInt(n) => visitor.visit_u64(*n),
            Node::Float(f) => visitor.visit_f64(*f),
            Node::Str(s) => visitor.visit_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: &self.path,
                sink: self.sink,
            }),
            Node::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                path: &self.path,
                sink: self.sink,
            }),
        };
        self.at(result)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node {
            Node::Null => {
                let result = visitor.visit_none();
                self.at(result)
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Node::Map(entries) = self.node else {
            let error = de::Error::invalid_type(self.unexpected(), &visitor);
            return self.at(Err(error));
        };
        // Unknown fields are reported here, all of them, and skipped, so
        // that the derived `deny_unknown_fields` never has to stop on one.
        let known: Vec<&(String, Node)> = entries
            .iter()
            .filter(|(key, _)| {
                let is_known = fields.contains(&key.as_str());
                // Compose's extension fields, at the top level of a
                // document: a place for YAML anchors.
                let extension = self.path.0.is_empty() && key.starts_with("x-");
                if !is_known && !extension {
                    self.sink.unknown.borrow_mut().push(Issue {
                        path: self.path.key(key),
                        message: unknown_field_message(name, key, fields),
                    });
                }
                is_known
            })
            .collect();
        let result = visitor.visit_map(MapDe {
            entries: known.into_iter(),
            value: None,
            path: &self.path,
            sink: self.sink,
        });
        self.at(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match self.node {
            Node::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        self.at(result)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a FieldPath,
    sink: &'a Sink,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => seed
                .deserialize(NodeDe {
                    node,
                    path: self.path.index(i),
                    sink: self.sink,
                })
                .map(Some),
        }
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<&'a (String, Node)>,
    value: Option<&'a (String, Node)>,
    path: &'a FieldPath,
    sink: &'a Sink,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some(entry) => {
                self.value = Some(entry);
                let key: de::value::StrDeserializer<'_, DeError> =
                    entry.0.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        seed.deserialize(NodeDe {
            node,
            path: self.path.key(key),
            sink: self.sink,
        })
    }
}

/// Names people reach for from compose, Nomad or Kubernetes, by struct.
const ALIASES: &[(&str, &str, &str)] = &[
    ("RawSpec", "environment", "env"),
    ("RawSpec", "cmd", "command"),
    ("RawSpec", "args", "command"),
    ("RawSpec", "entrypoint", "command"),
    ("RawSpec", "healthcheck", "health_check"),
    ("RawSpec", "mem_limit", "resources.memory"),
    ("RawSpec", "memswap_limit", "resources.memory_swap"),
    ("RawSpec", "cpus", "resources.cpu"),
    ("RawSpec", "pids_limit", "resources.pids"),
    ("RawSpec", "deploy", "update"),
    ("RawSpec", "update_config", "update"),
    ("RawSpec", "scale", "replicas"),
    ("RawSpec", "count", "replicas"),
    ("RawSpec", "restart_policy", "restart"),
    ("RawSpec", "regions", "placement.regions"),
    ("RawSpec", "constraints", "placement.constraints"),
    ("RawResources", "mem", "memory"),
    ("RawResources", "memory_limit", "memory"),
    ("RawResources", "swap", "memory_swap"),
    ("RawResources", "pids_limit", "pids"),
    ("RawHealthCheck", "test", "exec"),
    ("RawUpdate", "parallelism", "max_parallel"),
    ("RawUpdate", "type", "strategy"),
    ("RawSpec", "backup", "pre_deploy_backup"),
    ("RawSpec", "backup_before_deploy", "pre_deploy_backup"),
    // Routes: Kubernetes' and Traefik's words.
    ("RawSpec", "ingress", "route"),
    ("RawSpec", "hostname", "route.hostnames"),
    ("RawSpec", "hostnames", "route.hostnames"),
    ("RawRoute", "host", "hostnames"),
    ("RawRoute", "hosts", "hostnames"),
    ("RawRoute", "domains", "hostnames"),
    ("RawRoute", "target_port", "port"),
    ("RawRoute", "container_port", "port"),
    ("RawRoute", "certificate", "tls.certificate"),
    ("RawRoute", "drain_timeout", "drain"),
    ("RawRouteTls", "cert", "certificate"),
    ("RawRouteTls", "secret", "certificate"),
    // Backup policies (`backup::spec`): restic's and cron's words.
    ("RawBackupPolicy", "cron", "schedule"),
    ("RawBackupPolicy", "keep", "retention"),
    ("RawBackupPolicy", "retain", "retention"),
    ("RawBackupPolicy", "destination", "destinations"),
    ("RawBackupPolicy", "targets", "destinations"),
    ("RawBackupPolicy", "compress", "compression"),
    ("RawBackupPolicy", "encrypt", "encryption"),
    ("RawBackupPolicy", "verification", "verify"),
    ("RawBackupPolicy", "unencrypted", "allow_unencrypted"),
    ("RawBackupRetention", "last", "keep_last"),
    ("RawBackupRetention", "keep_hourly", "hourly"),
    ("RawBackupRetention", "keep_daily", "daily"),
    ("RawBackupRetention", "keep_weekly", "weekly"),
    ("RawBackupRetention", "keep_monthly", "monthly"),
    ("RawBackupDestination", "path", "dir"),
    ("RawBackupDestination", "directory", "dir"),
    ("RawBackupS3", "url", "endpoint"),
    ("RawBackupS3", "access_key", "access_key_id"),
    ("RawBackupS3", "secret_key", "secret_access_key"),
];

fn unknown_field_message(strukt: &str, field: &str, known: &[&str]) -> String {
    let alias = ALIASES
        .iter()
        .find(|(s, f, _)| *s == strukt && *f == field)
        .map(|(_, _, to)| *to);
    match alias.or_else(|| closest(field, known)) {
        Some(suggestion) => format!("unknown field, did you mean {suggestion}?"),
        None => format!("unknown field, expected one of {}", known.join(", ")),
    }
}

/// The known word closest to `word`, if it is close enough to be a typo:
/// within a third of the known word's length in edits (a swap counts as
/// one), and at least 1.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::osa_distance(&word, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(crate) struct Shaped<T> {
    pub(crate) value: Option<T>,
    pub(crate) issues: Vec<Issue>,
    /// Values dropped after a type error; later checks under them are moot.
    pub(crate) removed: Vec<FieldPath>,
}

/// Tries at most this many times to get past type errors.
const MAX_SHAPE_ATTEMPTS: usize = 64;

/// Deserializes `node` (found at `base`) into `T`, collecting every unknown
/// field and every type error it can: after a type error the offending
/// value is removed (a whole list, for an error inside one, so that later
/// indexes stay true) and deserialization runs again.
pub(crate) fn to_raw<T: DeserializeOwned>(node: &mut Node, base: &FieldPath) -> Shaped<T> {
    let mut issues: Vec<Issue> = Vec::new();
    let mut removed = Vec::new();
    for _ in 0..MAX_SHAPE_ATTEMPTS {
        let sink = Sink::default();
        let result = T::deserialize(NodeDe {
            node,
            path: base.clone(),
            sink: &sink,
        });
        for issue in sink.unknown.into_inner() {
            if !issues.contains(&issue) {
                issues.push(issue);
            }
        }
        let error = match result {
            Ok(value) => {
                return Shaped {
                    value: Some(value),
                    issues,
                    removed,
                };
            }
            Err(error) => error,
        };
        let path = error.path.unwrap_or_else(|| base.clone());
        issues.push(Issue {
            path: path.clone(),
            message: error.message,
        });
        // The nearest value below `base` that is held by a map key.
        let relative = &path.0[base.0.len().min(path.0.len())..];
        let Some(cut) = relative.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
            break;
        };
        let relative = &relative[..=cut];
        if !remove(node, relative) {
            break;
        }
        let mut gone = base.clone();
        gone.0.extend_from_slice(relative);
        removed.push(gone);
    }
    Shaped {
        value: None,
        issues,
        removed,
    }
}

/// Removes the value at `path` (which ends with a key) from the tree.
fn remove(node: &mut Node, path: &[Seg]) -> bool {
    match (path, node) {
        ([Seg::Key(k)], Node::Map(entries)) => {
            let before = entries.len();
            entries.retain(|(key, _)| key != k);
            entries.len() != before
        }
        ([Seg::Key(k), rest @ ..], Node::Map(entries)) => entries
            .iter_mut()
            .find(|(key, _)| key == k)
            .is_some_and(|(_, v)| remove(v, rest)),
        ([Seg::Index(i), rest @ ..], Node::Seq(items)) => {
            items.get_mut(*i).is_some_and(|v| remove(v, rest))
        }
        _ => false,
    }
}

// The raw shape people write. Every field is optional here; what is
// required is checked (and explained) in step 3.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<String>,
    image: Option<String>,
    command: Option<Node>,
    env: Option<Node>,
    ports: Option<Vec<Node>>,
    volumes: Option<Vec<Node>>,
    secrets: Option<Vec<Node>>,
    replicas: Option<i64>,
    placement: Option<RawPlacement>,
    resources: Option<RawResources>,
    health_check: Option<RawHealthCheck>,
    restart: Option<Node>,
    update: Option<RawUpdate>,
    pre_deploy_backup: Option<String>,
    route: Option<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    container: Option<i64>,
    host: Option<i64>,
    host_ip: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretEnv {
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretFile {
    name: Option<String>,
    file: Option<String>,
    mode: Option<Node>,
    uid: Option<i64>,
    gid: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    regions: Option<Node>,
    spread: Option<Vec<String>>,
    constraints: Option<BTreeMap<String, Node>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cpu: Option<Node>,
    memory: Option<Node>,
    memory_swap: Option<Node>,
    pids: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    http: Option<RawHttpProbe>,
    tcp: Option<RawTcpProbe>,
    exec: Option<Node>,
    interval: Option<Node>,
    timeout: Option<Node>,
    retries: Option<i64>,
    start_period: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpProbe {
    path: Option<String>,
    port: Option<i64>,
    expected_status: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpProbe {
    port: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    strategy: Option<String>,
    max_parallel: Option<i64>,
    max_surge: Option<i64>,
    max_unavailable: Option<i64>,
    min_healthy_time: Option<Node>,
    healthy_deadline: Option<Node>,
    progress_deadline: Option<Node>,
    auto_revert: Option<bool>,
    auto_promote: Option<bool>,
    keep_old_for: Option<Node>,
    canaries: Option<i64>,
    steps: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    hostnames: Option<Node>,
    paths: Option<Node>,
    port: Option<i64>,
    tls: Option<Node>,
    regions: Option<Node>,
    drain: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteTls {
    certificate: Option<String>,
    self_signed: Option<bool>,
}

/// `route.regions` written as a map (`nearest` is a plain string).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteRegions {
    primary: Option<String>,
    failover: Option<Vec<String>>,
    weights: Option<BTreeMap<String, i64>>,
}

// ---------------------------------------------------------------------------
// Step 3: raw → model, every rule, every error.

#[derive(Default)]
struct Validator {
    issues: Vec<Issue>,
}

const EXAMPLE_CMD: &str = "[pg_isready, -U, postgres]";

impl Validator {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.clone(),
            message: message.into(),
        });
    }

    fn spec(&mut self, raw: RawSpec) -> ServiceSpec {
        let root = FieldPath::root();
        let name = self.name(raw.name, &root.key("name"));
        let image = self.image(raw.image, &root.key("image"));
        let command = match raw.command {
            Some(node) => self.command(&node, &root.key("command"), true),
            None => Vec::new(),
        };
        let (env, secret_env) = match raw.env {
            Some(node) => self.env(&node, &root.key("env")),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        let ports = self.ports(raw.ports.unwrap_or_default(), &root.key("ports"));
        let volumes = self.volumes(raw.volumes.unwrap_or_default(), &root.key("volumes"));
        let secret_files = self.secret_files(raw.secrets.unwrap_or_default(), &root.key("secrets"));
        if !secret_files.is_empty() {
            self.volumes_clear_of_secrets(&volumes, &root.key("volumes"));
        }
        let (placement, region_total) = self.placement(raw.placement, &root.key("placement"));
        let replicas = self.replicas(raw.replicas, region_total, &root);
        let resources = self.resources(raw.resources, &root.key("resources"));
        let health_check = raw
            .health_check
            .map(|h| self.health_check(h, &ports, &root.key("health_check")));
        let restart = self.restart(raw.restart, &root.key("restart"));
        let update = self.update(raw.update, replicas, &root.key("update"));
        let pre_deploy_backup = raw
            .pre_deploy_backup
            .map(|policy| self.pre_deploy_backup(policy, &root.key("pre_deploy_backup")));
        let route = raw.route.map(|r| self.route(r, &ports, &root.key("route")));
        ServiceSpec {
            name,
            image,
            command,
            env,
            secret_env,
            ports,
            volumes,
            secret_files,
            replicas: replicas.unwrap_or(1),
            placement,
            resources,
            health_check,
            restart,
            update,
            pre_deploy_backup,
            route,
        }
    }

    /// A backup policy's name (its rule is a service name's); whether the
    /// policy exists is for the controller to say at apply time.
    fn pre_deploy_backup(&mut self, policy: String, path: &FieldPath) -> String {
        if !is_dns_label(&policy) {
            self.error(
                path,
                format!(
                    "{policy:?} is not a backup policy name, use 1-63 lowercase letters, digits \
                     and '-', starting with a letter, e.g. crm-db (see `argosy backup policy list`)"
                ),
            );
        }
        policy
    }

    /// `route:` — where the agents' ingresses send requests for the
    /// service. Which service already holds a hostname and path is for
    /// the controller to say at apply time.
    fn route(&mut self, raw: RawRoute, ports: &[PortMapping], path: &FieldPath) -> Route {
        let hostnames = match raw.hostnames {
            None => {
                self.error(
                    &path.key("hostnames"),
                    "required, write e.g. hostnames: [web.example.com]",
                );
                Vec::new()
            }
            Some(node) => self.route_list(node, &path.key("hostnames"), &HOSTNAMES),
        };
        let paths = match raw.paths {
            None => vec!["/".to_owned()],
            Some(node) => self.route_list(node, &path.key("paths"), &PATHS),
        };
        let port = self.route_port(raw.port, ports, &path.key("port"));
        let tls = raw
            .tls
            .and_then(|tls| self.route_tls(tls, &path.key("tls")));
        let regions = self.route_regions(raw.regions, &path.key("regions"));
        let drain = self.duration(raw.drain, &path.key("drain"), DEFAULT_DRAIN);
        if drain > MAX_DRAIN {
            self.error(
                &path.key("drain"),
                format!(
                    "{} is longer than the {} a drain may last, write e.g. {}",
                    show(drain),
                    show(MAX_DRAIN),
                    show(DEFAULT_DRAIN)
                ),
            );
        }
        Route {
            hostnames,
            paths,
            port,
            tls,
            regions,
            drain,
        }
    }

    /// `hostnames:` or `paths:`: a non-empty list, each entry checked and
    /// normalised by the routing rules, none twice.
    fn route_list(&mut self, node: Node, path: &FieldPath, kind: &RouteList) -> Vec<String> {
        let items = match node {
            Node::Seq(items) if items.is_empty() => {
                self.error(path, format!("is empty, {}", kind.when_empty));
                return Vec::new();
            }
            Node::Seq(items) => items,
            other => {
                self.error(
                    path,
                    format!(
                        "expected a list of {}, e.g. {}, found {}",
                        kind.plural,
                        kind.example,
                        describe(&other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut checked: Vec<String> = Vec::new();
        let mut first_at: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            let Node::Str(written) = item else {
                self.error(
                    &at,
                    format!("expected a {}, found {}", kind.singular, describe(item)),
                );
                continue;
            };
            let normal = match (kind.check)(written) {
                Ok(normal) => normal,
                Err(e) => {
                    self.error(&at, e.to_string());
                    continue;
                }
            };
            match first_at.get(&normal) {
                Some(j) if *written == normal => self.error(
                    &at,
                    format!(
                        "{normal} is already listed at {}, remove one",
                        path.index(*j)
                    ),
                ),
                Some(j) => self.error(
                    &at,
                    format!(
                        "{written:?} is the same {} as {} ({normal}), remove one",
                        kind.singular,
                        path.index(*j)
                    ),
                ),
                None => {
                    first_at.insert(normal.clone(), i);
                    checked.push(normal);
                }
            }
        }
        checked
    }

    /// The container port requests go to: as given, or the service's one
    /// TCP container port. The ingress speaks HTTP over TCP, so a port
    /// that `ports` lists only as UDP cannot be it.
    fn route_port(&mut self, port: Option<i64>, ports: &[PortMapping], path: &FieldPath) -> u16 {
        let given = port.is_some();
        let port = self.probe_port(port, ports, path);
        let listed: Vec<Protocol> = ports
            .iter()
            .filter(|p| p.container_port == port)
            .map(|p| p.protocol)
            .collect();
        if given && !listed.is_empty() && !listed.contains(&Protocol::Tcp) {
            self.error(
                path,
                format!(
                    "container port {port} is udp in ports, and requests reach it over tcp: \
                     choose a tcp port, or add \"{port}/tcp\" to ports"
                ),
            );
        }
        port
    }

    /// `tls: {certificate: web/tls}` or `tls: {self_signed: true}`.
    fn route_tls(&mut self, mut node: Node, path: &FieldPath) -> Option<RouteTls> {
        if !matches!(node, Node::Map(_)) {
            self.error(
                path,
                format!(
                    "expected a map like {{certificate: web/tls}} or {{self_signed: true}}, \
                     found {}",
                    describe(&node)
                ),
            );
            return None;
        }
        let shaped = to_raw::<RawRouteTls>(&mut node, path);
        self.issues.extend(shaped.issues);
        // After a type error the field is reported; saying what tls lacks
        // without it would only repeat that.
        let raw = shaped.value.filter(|_| shaped.removed.is_empty())?;
        match (raw.certificate, raw.self_signed) {
            (Some(_), Some(_)) => {
                self.error(path, "give either certificate or self_signed, not both");
                None
            }
            (Some(text), None) => self
                .secret_ref(&text, &path.key("certificate"))
                .map(RouteTls::Certificate),
            (None, Some(true)) => Some(RouteTls::SelfSigned),
            (None, Some(false)) => {
                self.error(
                    &path.key("self_signed"),
                    "false leaves tls without a certificate: remove tls for plain HTTP, or \
                     give a secret, e.g. certificate: web/tls",
                );
                None
            }
            (None, None) => {
                self.error(
                    path,
                    "give a certificate (a secret holding the PEM chain and key, e.g. \
                     certificate: web/tls) or self_signed: true, or leave tls out for plain HTTP",
                );
                None
            }
        }
    }

    /// `nearest` (the default), `{primary, failover}` or `{weights}`.
    fn route_regions(&mut self, node: Option<Node>, path: &FieldPath) -> RouteRegions {
        let help = "write nearest, {primary: eu-west, failover: [us-east]} or \
                    {weights: {eu-west: 3, us-east: 1}}";
        let mut node = match node {
            None => return RouteRegions::Nearest,
            Some(Node::Str(s)) if s == "nearest" => return RouteRegions::Nearest,
            Some(node @ Node::Map(_)) => node,
            Some(other) => {
                self.error(
                    path,
                    format!("{} is not a region policy, {help}", describe(&other)),
                );
                return RouteRegions::Nearest;
            }
        };
        let shaped = to_raw::<RawRouteRegions>(&mut node, path);
        self.issues.extend(shaped.issues);
        let Some(raw) = shaped.value.filter(|_| shaped.removed.is_empty()) else {
            return RouteRegions::Nearest;
        };
        if raw.weights.is_some() && (raw.primary.is_some() || raw.failover.is_some()) {
            self.error(
                path,
                "give either primary (and failover) or weights, not both",
            );
            return RouteRegions::Nearest;
        }
        if let Some(weights) = raw.weights {
            return RouteRegions::Weighted(self.route_weights(weights, &path.key("weights")));
        }
        let Some(primary) = raw.primary else {
            if raw.failover.is_some() {
                self.error(
                    &path.key("primary"),
                    "required with failover, write e.g. primary: eu-west",
                );
            } else {
                self.error(
                    path,
                    "give primary (and failover) or weights, e.g. {primary: eu-west, \
                     failover: [us-east]}, or write regions: nearest",
                );
            }
            return RouteRegions::Nearest;
        };
        if !is_label_part(&primary) {
            self.error(&path.key("primary"), bad_region(&primary));
        }
        let mut failover: Vec<String> = Vec::new();
        let mut first_at: HashMap<String, usize> = HashMap::new();
        let at_failover = path.key("failover");
        for (i, region) in raw.failover.unwrap_or_default().into_iter().enumerate() {
            let at = at_failover.index(i);
            if !is_label_part(&region) {
                self.error(&at, bad_region(&region));
            } else if region == primary {
                self.error(
                    &at,
                    format!("{region} is the primary region, remove it from failover"),
                );
            } else if let Some(j) = first_at.get(&region) {
                self.error(
                    &at,
                    format!(
                        "{region} is already listed at {}, remove one",
                        at_failover.index(*j)
                    ),
                );
            } else {
                first_at.insert(region.clone(), i);
                failover.push(region);
            }
        }
        RouteRegions::Primary { primary, failover }
    }

    /// Relative weights per region, each from 1.
    fn route_weights(
        &mut self,
        raw: BTreeMap<String, i64>,
        path: &FieldPath,
    ) -> BTreeMap<String, u32> {
        if raw.is_empty() {
            self.error(
                path,
                "is empty, give each region that serves a weight, e.g. {eu-west: 3, us-east: 1}",
            );
        }
        let mut weights = BTreeMap::new();
        for (region, weight) in raw {
            let at = path.key(&region);
            if !is_label_part(&region) {
                self.error(&at, bad_region(&region));
                continue;
            }
            match u32::try_from(weight) {
                Ok(w) if (1..=MAX_ROUTE_WEIGHT).contains(&w) => {
                    weights.insert(region, w);
                }
                _ if weight < 1 => self.error(
                    &at,
                    format!(
                        "{weight} is out of range, write at least 1 (leave the region out to \
                         send it nothing)"
                    ),
                ),
                _ => self.error(
                    &at,
                    format!(
                        "{weight} is out of range, write at most {MAX_ROUTE_WEIGHT} (weights are \
                         relative: 3 and 1 send three quarters and one quarter)"
                    ),
                ),
            }
        }
        weights
    }

    fn name(&mut self, name: Option<String>, path: &FieldPath) -> String {
        let Some(name) = name else {
            self.error(path, "required, write e.g. name: web");
            return String::new();
        };
        if !is_dns_label(&name) {
            self.error(
                path,
                format!(
                    "{name:?} is not a valid name, use 1-63 lowercase letters, digits and '-', \
                     starting with a letter and not ending with '-', e.g. web"
                ),
            );
        }
        name
    }

    fn image(&mut self, image: Option<String>, path: &FieldPath) -> String {
        let Some(image) = image else {
            self.error(path, "required, write e.g. image: nginx:1.27");
            return String::new();
        };
        if let Err(message) = check_image(&image) {
            self.error(path, message);
        }
        image
    }

    /// A list runs as written; a string runs through `sh -c`.
    fn command(&mut self, node: &Node, path: &FieldPath, allow_empty_list: bool) -> Vec<String> {
        match node {
            Node::Str(s) if s.trim().is_empty() => {
                let fix = if allow_empty_list {
                    "write a command or leave the field out".to_owned()
                } else {
                    format!("write a command, e.g. {EXAMPLE_CMD}")
                };
                self.error(path, format!("is empty, {fix}"));
                Vec::new()
            }
            Node::Str(s) => vec!["sh".to_owned(), "-c".to_owned(), s.clone()],
            Node::Seq(items) if items.is_empty() && !allow_empty_list => {
                self.error(
                    path,
                    format!("is empty, write a command, e.g. {EXAMPLE_CMD}"),
                );
                Vec::new()
            }
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let arg = scalar_string(item);
                    if arg.is_none() {
                        self.error(
                            &path.index(i),
                            format!("expected a string, found {}", describe(item)),
                        );
                    }
                    arg
                })
                .collect(),
            other => {
                self.error(
                    path,
                    format!(
                        "expected a list of strings, or one string for sh -c, found {}",
                        describe(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Plain variables, and those whose value is a secret.
    fn env(
        &mut self,
        node: &Node,
        path: &FieldPath,
    ) -> (BTreeMap<String, String>, BTreeMap<String, SecretRef>) {
        let mut env = BTreeMap::new();
        let mut secret_env = BTreeMap::new();
        match node {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let at = path.key(key);
                    if !is_env_name(key) {
                        self.error(&at, bad_env_name(key));
                        continue;
                    }
                    match (value, scalar_string(value)) {
                        (_, Some(text)) => {
                            env.insert(key.clone(), text);
                        }
                        (Node::Map(_), None) => {
                            if let Some(secret) = self.secret_env(value.clone(), &at) {
                                secret_env.insert(key.clone(), secret);
                            }
                        }
                        (Node::Null, None) => self.error(
                            &at,
                            format!("has no value, write {key}: \"\" for an empty one"),
                        ),
                        (other, None) => self.error(
                            &at,
                            format!(
                                "expected a string, or {{secret: NAME}} for a secret, found {}",
                                describe(other)
                            ),
                        ),
                    }
                }
            }
            Node::Seq(items) => {
                let mut first_at: HashMap<String, usize> = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    let at = path.index(i);
                    let Node::Str(text) = item else {
                        self.error(&at, format!("expected KEY=value, found {}", describe(item)));
                        continue;
                    };
                    let Some((key, value)) = text.split_once('=') else {
                        self.error(&at, format!("{text:?} has no '=', write {text}=value"));
                        continue;
                    };
                    if !is_env_name(key) {
                        self.error(&at, bad_env_name(key));
                    } else if let Some(j) = first_at.get(key) {
                        self.error(&at, format!("{key} is already set by {}", path.index(*j)));
                    } else {
                        first_at.insert(key.to_owned(), i);
                        env.insert(key.to_owned(), value.to_owned());
                    }
                }
            }
            other => self.error(
                path,
                format!(
                    "expected a map (KEY: value) or a list of KEY=value, found {}",
                    describe(other)
                ),
            ),
        }
        (env, secret_env)
    }

    /// `{secret: crm/db-password}` or `{secret: crm/api-key@3}`.
    fn secret_env(&mut self, mut node: Node, path: &FieldPath) -> Option<SecretRef> {
        let shaped = to_raw::<RawSecretEnv>(&mut node, path);
        self.issues.extend(shaped.issues);
        let raw = shaped.value.filter(|_| shaped.removed.is_empty())?;
        let Some(text) = raw.secret else {
            self.error(
                &path.key("secret"),
                "required, write e.g. {secret: crm/db-password}",
            );
            return None;
        };
        self.secret_ref(&text, &path.key("secret"))
    }

    fn secret_ref(&mut self, text: &str, path: &FieldPath) -> Option<SecretRef> {
        match units::parse_secret_ref(text) {
            Ok(secret) => Some(secret),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// `secrets:` — each a map (name, file, mode, uid, gid) or a name alone.
    fn secret_files(&mut self, items: Vec<Node>, path: &FieldPath) -> Vec<SecretFile> {
        let mut files: Vec<(usize, SecretFile)> = Vec::new();
        for (i, mut item) in items.into_iter().enumerate() {
            let at = path.index(i);
            let file = match &item {
                Node::Str(text) => self
                    .secret_ref(text, &at)
                    .map(|secret| secret_file(secret, None, DEFAULT_SECRET_MODE, 0, 0)),
                Node::Map(_) => {
                    let shaped = to_raw::<RawSecretFile>(&mut item, &at);
                    self.issues.extend(shaped.issues);
                    shaped
                        .value
                        .filter(|_| shaped.removed.is_empty())
                        .and_then(|raw| self.secret_file_long(raw, &at))
                }
                other => {
                    self.error(
                        &at,
                        format!(
                            "expected a map like {{name: crm/db-password, file: db-password}} \
                             or a secret name, found {}",
                            describe(other)
                        ),
                    );
                    None
                }
            };
            files.extend(file.map(|f| (i, f)));
        }
        for (n, (i, f)) in files.iter().enumerate() {
            if let Some((j, _)) = files[..n].iter().find(|(_, o)| o.file == f.file) {
                self.error(
                    &path.index(*i),
                    format!(
                        "file {} is already used by {}, give this one another file: name",
                        f.file,
                        path.index(*j)
                    ),
                );
            }
        }
        files.into_iter().map(|(_, f)| f).collect()
    }

    fn secret_file_long(&mut self, raw: RawSecretFile, path: &FieldPath) -> Option<SecretFile> {
        let secret = match raw.name {
            Some(name) => self.secret_ref(&name, &path.key("name")),
            None => {
                self.error(
                    &path.key("name"),
                    "required, write e.g. name: crm/db-password",
                );
                None
            }
        };
        let file_ok = match &raw.file {
            Some(file) if !units::is_secret_file_name(file) => {
                self.error(
                    &path.key("file"),
                    format!(
                        "{file:?} is not a file name, write a plain name without '/', \
                         e.g. db-password (it appears as {SECRETS_MOUNT}/db-password)"
                    ),
                );
                false
            }
            _ => true,
        };
        let mode = match raw.mode {
            None => Some(DEFAULT_SECRET_MODE),
            Some(Node::Str(text)) => match units::parse_file_mode(&text) {
                Ok(mode) => Some(mode),
                Err(e) => {
                    self.error(&path.key("mode"), e.to_string());
                    None
                }
            },
            Some(Node::Int(n)) => {
                self.error(
                    &path.key("mode"),
                    format!(
                        "{n} is a number, but modes are octal: write it as a string in quotes, \
                         e.g. mode: \"0400\""
                    ),
                );
                None
            }
            Some(other) => {
                self.error(
                    &path.key("mode"),
                    format!(
                        "expected an octal mode in quotes, e.g. \"0400\", found {}",
                        describe(&other)
                    ),
                );
                None
            }
        };
        let uid = self.owner_id(raw.uid, &path.key("uid"));
        let gid = self.owner_id(raw.gid, &path.key("gid"));
        if !file_ok {
            return None;
        }
        Some(secret_file(secret?, raw.file, mode?, uid?, gid?))
    }

    /// A uid or gid: a whole number from 0; default 0 (root).
    fn owner_id(&mut self, raw: Option<i64>, path: &FieldPath) -> Option<u32> {
        match raw {
            None => Some(0),
            Some(n) => {
                let id = u32::try_from(n).ok();
                if id.is_none() {
                    self.error(
                        path,
                        format!("{n} is out of range, write a numeric id from 0, e.g. 1000"),
                    );
                }
                id
            }
        }
    }

    /// With secret files, `/run/secrets` belongs to them.
    fn volumes_clear_of_secrets(&mut self, volumes: &[VolumeMount], path: &FieldPath) {
        for (i, volume) in volumes.iter().enumerate() {
            if Path::new(&volume.target).starts_with(SECRETS_MOUNT) {
                self.error(
                    &path.index(i),
                    format!(
                        "target {} is inside {SECRETS_MOUNT}, where the secrets: files are \
                         mounted; choose another target",
                        volume.target
                    ),
                );
            }
        }
    }

    fn ports(&mut self, items: Vec<Node>, path: &FieldPath) -> Vec<PortMapping> {
        // Every mapping, with the index of the entry it came from.
        let mut mappings: Vec<(usize, PortMapping)> = Vec::new();
        for (i, mut item) in items.into_iter().enumerate() {
            let at = path.index(i);
            match &item {
                Node::Str(s) => match units::parse_port_spec(s) {
                    Ok(found) => mappings.extend(found.into_iter().map(|m| (i, m))),
                    Err(e) => self.error(&at, e.to_string()),
                },
                Node::Int(n) => match units::port_number(*n) {
                    Some(container_port) => mappings.push((
                        i,
                        PortMapping {
                            container_port,
                            host_port: None,
                            host_ip: None,
                            protocol: Protocol::Tcp,
                        },
                    )),
                    None => self.error(&at, out_of_range_port(*n)),
                },
                Node::Map(_) => {
                    let shaped = to_raw::<RawPort>(&mut item, &at);
                    self.issues.extend(shaped.issues);
                    // After a type error the entry is reported; checking
                    // what is left of it would only repeat that.
                    if let Some(raw) = shaped.value.filter(|_| shaped.removed.is_empty())
                        && let Some(m) = self.port_long(raw, &at)
                    {
                        mappings.push((i, m));
                    }
                }
                other => self.error(
                    &at,
                    format!(
                        "expected a string like \"8080:80\" or a map like \
                         {{container: 80, host: 8080}}, found {}",
                        describe(other)
                    ),
                ),
            }
        }
        // A host port can be published once per protocol and address.
        for (n, (i, m)) in mappings.iter().enumerate() {
            let Some(host) = m.host_port else { continue };
            let clash = mappings[..n].iter().find(|(j, other)| {
                j != i
                    && other.host_port == Some(host)
                    && other.protocol == m.protocol
                    && ips_overlap(other.host_ip, m.host_ip)
            });
            if let Some((j, _)) = clash {
                let proto = protocol_name(m.protocol);
                self.error(
                    &path.index(*i),
                    format!(
                        "host port {host}/{proto} is already published by {}",
                        path.index(*j)
                    ),
                );
            }
        }
        mappings.into_iter().map(|(_, m)| m).collect()
    }

    fn port_long(&mut self, raw: RawPort, path: &FieldPath) -> Option<PortMapping> {
        let container_port = match raw.container {
            None => {
                self.error(&path.key("container"), "required, write e.g. container: 80");
                None
            }
            Some(n) => self.port(n, &path.key("container")),
        };
        let host_port = raw.host.and_then(|n| self.port(n, &path.key("host")));
        let host_ip = raw.host_ip.and_then(|ip| {
            let parsed = units::parse_ip(&ip);
            if parsed.is_none() {
                self.error(
                    &path.key("host_ip"),
                    format!("{ip:?} is not an IP address, write e.g. 127.0.0.1"),
                );
            } else if raw.host.is_none() {
                self.error(
                    &path.key("host_ip"),
                    "only applies to a published port, add host too, e.g. host: 8080",
                );
            }
            parsed
        });
        let protocol = match raw.protocol {
            None => Some(Protocol::Tcp),
            Some(p) => {
                let parsed = units::parse_protocol(&p);
                if parsed.is_none() {
                    self.error(
                        &path.key("protocol"),
                        format!("{p:?} is not a protocol, write tcp or udp"),
                    );
                }
                parsed
            }
        };
        Some(PortMapping {
            container_port: container_port?,
            host_port,
            host_ip,
            protocol: protocol?,
        })
    }

    fn port(&mut self, n: i64, path: &FieldPath) -> Option<u16> {
        let port = units::port_number(n);
        if port.is_none() {
            self.error(path, out_of_range_port(n));
        }
        port
    }

    fn volumes(&mut self, items: Vec<Node>, path: &FieldPath) -> Vec<VolumeMount> {
        let mut mounts: Vec<(usize, VolumeMount)> = Vec::new();
        for (i, mut item) in items.into_iter().enumerate() {
            let at = path.index(i);
            match &item {
                Node::Str(s) => match units::parse_volume_spec(s) {
                    Ok(m) => mounts.push((i, m)),
                    Err(e) => self.error(&at, e.to_string()),
                },
                Node::Map(_) => {
                    let shaped = to_raw::<RawVolume>(&mut item, &at);
                    self.issues.extend(shaped.issues);
                    // After a type error the entry is reported; checking
                    // what is left of it would only repeat that.
                    if let Some(raw) = shaped.value.filter(|_| shaped.removed.is_empty())
                        && let Some(m) = self.volume_long(raw, &at)
                    {
                        mounts.push((i, m));
                    }
                }
                other => self.error(
                    &at,
                    format!(
                        "expected a string like \"data:/var/lib/data\" or a map like \
                         {{source: data, target: /var/lib/data}}, found {}",
                        describe(other)
                    ),
                ),
            }
        }
        for (n, (i, m)) in mounts.iter().enumerate() {
            let target = Path::new(&m.target);
            if let Some((j, _)) = mounts[..n]
                .iter()
                .find(|(_, o)| Path::new(&o.target) == target)
            {
                self.error(
                    &path.index(*i),
                    format!(
                        "target {} is already mounted by {}",
                        m.target,
                        path.index(*j)
                    ),
                );
            }
        }
        mounts.into_iter().map(|(_, m)| m).collect()
    }

    fn volume_long(&mut self, raw: RawVolume, path: &FieldPath) -> Option<VolumeMount> {
        if raw.source.is_none() {
            self.error(
                &path.key("source"),
                "required, write a volume name or an absolute host path",
            );
        }
        if raw.target.is_none() {
            self.error(&path.key("target"), "required, write e.g. target: /data");
        }
        let (source, target) = (raw.source?, raw.target?);
        match units::volume_mount(&source, &target, raw.read_only.unwrap_or(false)) {
            Ok(m) => Some(m),
            Err(e) => {
                let at = match e.part() {
                    VolumePart::Source => path.key("source"),
                    VolumePart::Target => path.key("target"),
                    VolumePart::Whole | VolumePart::Mode => path.clone(),
                };
                self.error(&at, e.to_string());
                None
            }
        }
    }

    /// `replicas`, defaulting to the region counts' sum or 1. `None` when invalid.
    fn replicas(
        &mut self,
        raw: Option<i64>,
        region_total: Option<u64>,
        root: &FieldPath,
    ) -> Option<u32> {
        let path = root.key("replicas");
        let replicas = match raw {
            None => match region_total {
                Some(total) if total <= u64::from(MAX_REPLICAS) => return Some(total as u32),
                Some(total) => {
                    self.error(
                        &root.key("placement").key("regions"),
                        format!("counts add up to {total}, more than {MAX_REPLICAS} replicas"),
                    );
                    return None;
                }
                None => return Some(1),
            },
            Some(n) => match u32::try_from(n).ok().filter(|n| *n <= MAX_REPLICAS) {
                Some(n) => n,
                None => {
                    self.error(
                        &path,
                        format!("{n} is out of range, write 0 to {MAX_REPLICAS}"),
                    );
                    return None;
                }
            },
        };
        if let Some(total) = region_total
            && total != u64::from(replicas)
        {
            self.error(
                &root.key("placement").key("regions"),
                format!(
                    "counts add up to {total} but replicas is {replicas}, make them equal \
                     (or leave replicas out)"
                ),
            );
        }
        Some(replicas)
    }

    /// The placement, and the sum of the region counts when they are given.
    fn placement(
        &mut self,
        raw: Option<RawPlacement>,
        path: &FieldPath,
    ) -> (Placement, Option<u64>) {
        let Some(raw) = raw else {
            return (Placement::default(), None);
        };
        let mut regions = Vec::new();
        let mut total = None;
        match raw.regions {
            None => {}
            Some(Node::Map(entries)) => {
                let mut sum = 0u64;
                let mut counted = true;
                for (region, count) in &entries {
                    let at = path.key("regions").key(region);
                    if !is_label_part(region) {
                        self.error(&at, bad_region(region));
                        counted = false;
                        continue;
                    }
                    match count {
                        Node::Int(n) if (0..=i64::from(MAX_REPLICAS)).contains(n) => {
                            sum += *n as u64;
                            regions.push(RegionPlacement {
                                region: region.clone(),
                                count: RegionCount::Exactly(*n as u32),
                            });
                        }
                        Node::Int(n) => {
                            self.error(
                                &at,
                                format!("{n} is out of range, write 0 to {MAX_REPLICAS}"),
                            );
                            counted = false;
                        }
                        other => {
                            self.error(
                                &at,
                                format!("expected a number of replicas, found {}", describe(other)),
                            );
                            counted = false;
                        }
                    }
                }
                total = counted.then_some(sum);
            }
            Some(Node::Seq(items)) => {
                let names: Vec<Option<String>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Node::Str(s) => Some(s.clone()),
                        other => {
                            self.error(
                                &path.key("regions").index(i),
                                format!("expected a region name, found {}", describe(other)),
                            );
                            None
                        }
                    })
                    .collect();
                regions = self.spread(names, &path.key("regions"));
            }
            Some(other) => self.error(
                &path.key("regions"),
                format!(
                    "expected a map of region: count (eu-west: 2) or a list of regions to \
                     spread over, found {}",
                    describe(&other)
                ),
            ),
        }
        if let Some(spread) = raw.spread {
            if !regions.is_empty() || total.is_some() {
                self.error(
                    &path.key("spread"),
                    "give either regions or spread, not both (regions: [a, b] spreads too)",
                );
            } else {
                regions = self.spread(spread.into_iter().map(Some).collect(), &path.key("spread"));
            }
        }
        let mut constraints = BTreeMap::new();
        for (key, value) in raw.constraints.unwrap_or_default() {
            let at = path.key("constraints").key(&key);
            if !is_label_part(&key) {
                self.error(
                    &at,
                    format!(
                        "{key:?} is not a valid label, use 1-63 letters, digits, '-', '_', '.' \
                         or '/', e.g. disk"
                    ),
                );
                continue;
            }
            match scalar_string(&value) {
                Some(text) if is_label_part(&text) => {
                    constraints.insert(key, text);
                }
                Some(text) => self.error(
                    &at,
                    format!(
                        "{text:?} is not a valid label value, use 1-63 letters, digits, '-', \
                         '_', '.' or '/', e.g. ssd"
                    ),
                ),
                None => self.error(
                    &at,
                    format!("expected a label value, found {}", describe(&value)),
                ),
            }
        }
        (
            Placement {
                regions,
                constraints,
            },
            total,
        )
    }

    fn spread(&mut self, names: Vec<Option<String>>, path: &FieldPath) -> Vec<RegionPlacement> {
        let mut regions: Vec<RegionPlacement> = Vec::new();
        let mut first_at: HashMap<String, usize> = HashMap::new();
        for (i, name) in names.into_iter().enumerate() {
            let Some(name) = name else { continue };
            let at = path.index(i);
            if !is_label_part(&name) {
                self.error(&at, bad_region(&name));
            } else if let Some(j) = first_at.get(&name) {
                self.error(
                    &at,
                    format!("{name} is already listed at {}", path.index(*j)),
                );
            } else {
                first_at.insert(name.clone(), i);
                regions.push(RegionPlacement {
                    region: name,
                    count: RegionCount::Spread,
                });
            }
        }
        regions
    }

    fn resources(&mut self, raw: Option<RawResources>, path: &FieldPath) -> Resources {
        let Some(raw) = raw else {
            return Resources::default();
        };
        let mut out = Resources::default();
        if let Some(cpu) = raw.cpu {
            let at = path.key("cpu");
            match (&cpu, scalar_string(&cpu)) {
                (Node::Str(_) | Node::Int(_) | Node::UInt(_) | Node::Float(_), Some(text)) => {
                    match units::parse_cpu(&text) {
                        Ok(millis) => out.cpu_millis = millis,
                        Err(e) => self.error(&at, e.to_string()),
                    }
                }
                (other, _) => self.error(
                    &at,
                    format!(
                        "expected cores (0.5) or millicores (\"250m\"), found {}",
                        describe(other)
                    ),
                ),
            }
        }
        let memory = raw.memory.and_then(|m| self.size(&m, &path.key("memory")));
        if let Some((bytes, written)) = &memory {
            if *bytes < MIN_MEMORY_BYTES {
                let no_limit = if *bytes == 0 {
                    " (or leave memory out for no limit)"
                } else {
                    ""
                };
                self.error(
                    &path.key("memory"),
                    format!(
                        "{written} is below Docker's minimum of {}, write e.g. 64MiB{no_limit}",
                        units::format_size(MIN_MEMORY_BYTES)
                    ),
                );
            } else {
                out.memory_bytes = *bytes;
            }
        }
        if let Some((swap, written)) = raw
            .memory_swap
            .and_then(|m| self.size(&m, &path.key("memory_swap")))
        {
            let at = path.key("memory_swap");
            match &memory {
                None => self.error(
                    &at,
                    "needs memory too: it limits memory plus swap, e.g. memory: 256MiB",
                ),
                Some((bytes, mem_written)) if swap < *bytes => self.error(
                    &at,
                    format!(
                        "{written} is less than memory ({}); it counts memory plus swap, so \
                         write at least {}",
                        mem_written.trim_matches('"'),
                        units::format_size(*bytes)
                    ),
                ),
                Some(_) => out.memory_swap_bytes = Some(swap),
            }
        }
        if let Some(pids) = raw.pids {
            match u32::try_from(pids).ok().filter(|p| *p >= 1) {
                Some(p) => out.pids = Some(p),
                None => self.error(
                    &path.key("pids"),
                    format!("{pids} is out of range, write at least 1, e.g. pids: 256"),
                ),
            }
        }
        out
    }

    /// A size and how it was written (for messages).
    fn size(&mut self, node: &Node, path: &FieldPath) -> Option<(u64, String)> {
        let text = match node {
            Node::Str(s) => s.clone(),
            Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
                scalar_string(node).unwrap_or_default()
            }
            other => {
                self.error(
                    path,
                    format!("expected a size like 64MiB, found {}", describe(other)),
                );
                return None;
            }
        };
        match units::parse_size(&text) {
            Ok(bytes) => Some((bytes, describe(node))),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    fn duration(&mut self, node: Option<Node>, path: &FieldPath, default: Duration) -> Duration {
        match node {
            None => default,
            Some(Node::Str(s)) => match units::parse_duration(&s) {
                Ok(d) => d,
                Err(e) => {
                    self.error(path, e.to_string());
                    default
                }
            },
            Some(Node::Int(0)) => Duration::ZERO,
            Some(Node::Int(n)) => {
                self.error(path, format!("{n} has no unit, write e.g. {n}s"));
                default
            }
            Some(other) => {
                self.error(
                    path,
                    format!(
                        "expected a duration like 10s or 1m30s, found {}",
                        describe(&other)
                    ),
                );
                default
            }
        }
    }

    fn health_check(
        &mut self,
        raw: RawHealthCheck,
        ports: &[PortMapping],
        path: &FieldPath,
    ) -> HealthCheck {
        let given: Vec<&str> = [
            ("http", raw.http.is_some()),
            ("tcp", raw.tcp.is_some()),
            ("exec", raw.exec.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.is_empty() {
            self.error(
                path,
                "give one probe: http, tcp or exec, e.g. http: {path: /healthz, port: 8080}",
            );
        } else if given.len() > 1 {
            self.error(
                path,
                format!("give only one probe, found {}", given.join(" and ")),
            );
        }
        let probe = if let Some(http) = raw.http {
            let at = path.key("http");
            let probe_path = http.path.unwrap_or_else(|| "/".to_owned());
            if !probe_path.starts_with('/') || probe_path.chars().any(char::is_whitespace) {
                self.error(
                    &at.key("path"),
                    format!("{probe_path:?} is not a URL path, write e.g. /healthz"),
                );
            }
            let port = self.probe_port(http.port, ports, &at.key("port"));
            let expected_status = match http.expected_status {
                None => 200,
                Some(n) if (100..=599).contains(&n) => n as u16,
                Some(n) => {
                    self.error(
                        &at.key("expected_status"),
                        format!("{n} is not an HTTP status, write 100 to 599, e.g. 200"),
                    );
                    200
                }
            };
            HealthProbe::Http {
                path: probe_path,
                port,
                expected_status,
            }
        } else if let Some(tcp) = raw.tcp {
            HealthProbe::Tcp {
                port: self.probe_port(tcp.port, ports, &path.key("tcp").key("port")),
            }
        } else if let Some(exec) = raw.exec {
            HealthProbe::Exec {
                command: self.command(&exec, &path.key("exec"), false),
            }
        } else {
            HealthProbe::Exec {
                command: Vec::new(),
            }
        };
        let interval = self.duration(raw.interval, &path.key("interval"), Duration::from_secs(10));
        if interval < Duration::from_secs(1) {
            self.error(
                &path.key("interval"),
                format!("{} is shorter than 1s, write e.g. 10s", show(interval)),
            );
        }
        let default_timeout = Duration::from_secs(5).min(interval / 2);
        let timeout = self.duration(raw.timeout, &path.key("timeout"), default_timeout);
        if timeout.is_zero() {
            self.error(
                &path.key("timeout"),
                "0s is no time to answer, write e.g. 5s",
            );
        } else if timeout >= interval && interval >= Duration::from_secs(1) {
            self.error(
                &path.key("timeout"),
                format!(
                    "{} is not shorter than interval ({}), write e.g. {}",
                    show(timeout),
                    show(interval),
                    show(interval / 2)
                ),
            );
        }
        let retries = match raw.retries {
            None => 3,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .unwrap_or_else(|| {
                    self.error(
                        &path.key("retries"),
                        format!("{n} is out of range, write at least 1, e.g. 3"),
                    );
                    3
                }),
        };
        let start_period =
            self.duration(raw.start_period, &path.key("start_period"), Duration::ZERO);
        HealthCheck {
            probe,
            interval,
            timeout,
            retries,
            start_period,
        }
    }

    /// A probe's or route's port: as given, or the service's one TCP
    /// container port.
    fn probe_port(&mut self, port: Option<i64>, ports: &[PortMapping], path: &FieldPath) -> u16 {
        if let Some(n) = port {
            return self.port(n, path).unwrap_or(0);
        }
        let mut tcp: Vec<u16> = ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .map(|p| p.container_port)
            .collect();
        tcp.sort_unstable();
        tcp.dedup();
        match tcp.as_slice() {
            [one] => *one,
            _ => {
                self.error(
                    path,
                    "required unless the service declares exactly one tcp port, write e.g. port: 8080",
                );
                0
            }
        }
    }

    fn restart(&mut self, raw: Option<Node>, path: &FieldPath) -> RestartPolicy {
        let help = "write always, on-failure, on-failure:5 or no";
        match raw {
            None => RestartPolicy::Always,
            // YAML reads a bare `no` as false.
            Some(Node::Bool(false)) => RestartPolicy::Never,
            Some(Node::Str(s)) => {
                match s.to_ascii_lowercase().as_str() {
                    "always" | "unless-stopped" => RestartPolicy::Always,
                    "no" | "never" => RestartPolicy::Never,
                    "on-failure" => RestartPolicy::OnFailure { max_retries: None },
                    lower => match lower.strip_prefix("on-failure:").map(str::parse::<u32>) {
                        Some(Ok(n)) if n >= 1 => RestartPolicy::OnFailure {
                            max_retries: Some(n),
                        },
                        Some(_) => {
                            self.error(
                            path,
                            format!("{s:?} needs a whole number of retries from 1, e.g. on-failure:5"),
                        );
                            RestartPolicy::OnFailure { max_retries: None }
                        }
                        None => {
                            self.error(path, format!("{s:?} is not a restart policy, {help}"));
                            RestartPolicy::Always
                        }
                    },
                }
            }
            Some(other) => {
                self.error(
                    path,
                    format!("{} is not a restart policy, {help}", describe(&other)),
                );
                RestartPolicy::Always
            }
        }
    }

    fn update(
        &mut self,
        raw: Option<RawUpdate>,
        replicas: Option<u32>,
        path: &FieldPath,
    ) -> UpdateStrategy {
        let Some(raw) = raw else {
            return UpdateStrategy::Rolling(Rolling::default());
        };
        let strategy = raw.strategy.clone().unwrap_or_else(|| "rolling".to_owned());
        if !matches!(strategy.as_str(), "rolling" | "blue_green" | "canary") {
            self.error(
                &path.key("strategy"),
                format!("{strategy:?} is not a strategy, write rolling, blue_green or canary"),
            );
            return UpdateStrategy::Rolling(Rolling::default());
        }
        // Knobs that only some strategies read.
        let knobs: [(&str, bool, &[&str]); 8] = [
            ("max_parallel", raw.max_parallel.is_some(), &["rolling"]),
            ("max_surge", raw.max_surge.is_some(), &["rolling"]),
            (
                "max_unavailable",
                raw.max_unavailable.is_some(),
                &["rolling"],
            ),
            (
                "progress_deadline",
                raw.progress_deadline.is_some(),
                &["rolling"],
            ),
            ("keep_old_for", raw.keep_old_for.is_some(), &["blue_green"]),
            (
                "auto_promote",
                raw.auto_promote.is_some(),
                &["blue_green", "canary"],
            ),
            ("canaries", raw.canaries.is_some(), &["canary"]),
            ("steps", raw.steps.is_some(), &["canary"]),
        ];
        for (knob, set, used_by) in knobs {
            if set && !used_by.contains(&strategy.as_str()) {
                let message = match used_by {
                    [only] => {
                        format!("only used by strategy {only}, remove it or set strategy: {only}")
                    }
                    _ => format!(
                        "only used by strategies {}, remove it",
                        used_by.join(" and ")
                    ),
                };
                self.error(&path.key(knob), message);
            }
        }
        let defaults = Rolling::default();
        let min_healthy_time = self.duration(
            raw.min_healthy_time,
            &path.key("min_healthy_time"),
            defaults.min_healthy_time,
        );
        let healthy_deadline = self.duration(
            raw.healthy_deadline,
            &path.key("healthy_deadline"),
            defaults.healthy_deadline,
        );
        if healthy_deadline <= min_healthy_time {
            self.error(
                &path.key("healthy_deadline"),
                format!(
                    "{} is not longer than min_healthy_time ({}), make it longer",
                    show(healthy_deadline),
                    show(min_healthy_time)
                ),
            );
        }
        let auto_revert = raw.auto_revert.unwrap_or(defaults.auto_revert);
        let auto_promote = raw.auto_promote.unwrap_or(false);
        match strategy.as_str() {
            "blue_green" => UpdateStrategy::BlueGreen(BlueGreen {
                min_healthy_time,
                healthy_deadline,
                auto_promote,
                keep_old_for: self.duration(
                    raw.keep_old_for,
                    &path.key("keep_old_for"),
                    Duration::from_secs(600),
                ),
                auto_revert,
            }),
            "canary" => {
                let canaries = match raw.canaries {
                    None => 1,
                    Some(n) => match u32::try_from(n)
                        .ok()
                        .filter(|n| (1..=MAX_REPLICAS).contains(n))
                    {
                        Some(n) => n,
                        None => {
                            self.error(
                                &path.key("canaries"),
                                format!("{n} is out of range, write at least 1, e.g. 1"),
                            );
                            1
                        }
                    },
                };
                if let Some(r) = replicas
                    && r > 0
                    && canaries > r
                {
                    self.error(
                        &path.key("canaries"),
                        format!("{canaries} is more than replicas ({r}), write at most {r}"),
                    );
                }
                let steps = self.steps(raw.steps, &path.key("steps"));
                UpdateStrategy::Canary(Canary {
                    canaries,
                    steps,
                    min_healthy_time,
                    healthy_deadline,
                    auto_promote,
                    auto_revert,
                })
            }
            _ => {
                let count =
                    |v: &mut Self, n: Option<i64>, knob: &str, min: u32, default: u32| -> u32 {
                        match n {
                            None => default,
                            Some(n) => u32::try_from(n)
                                .ok()
                                .filter(|n| (min..=MAX_REPLICAS).contains(n))
                                .unwrap_or_else(|| {
                                    v.error(
                                        &path.key(knob),
                                        format!(
                                            "{n} is out of range, write {min} to {MAX_REPLICAS}"
                                        ),
                                    );
                                    default
                                }),
                        }
                    };
                let (max_surge, max_unavailable) = if let Some(n) = raw.max_parallel {
                    if raw.max_surge.is_some() || raw.max_unavailable.is_some() {
                        self.error(
                            &path.key("max_parallel"),
                            "give either max_parallel or max_surge/max_unavailable, not both",
                        );
                    }
                    (count(self, Some(n), "max_parallel", 1, 1), 0)
                } else {
                    let surge = count(self, raw.max_surge, "max_surge", 0, defaults.max_surge);
                    let unavailable = count(
                        self,
                        raw.max_unavailable,
                        "max_unavailable",
                        0,
                        defaults.max_unavailable,
                    );
                    if surge == 0 && unavailable == 0 {
                        self.error(
                            path,
                            "max_surge and max_unavailable are both 0, so nothing could be \
                             replaced: set max_surge: 1 or max_unavailable: 1",
                        );
                    }
                    (surge, unavailable)
                };
                let progress_deadline = self.duration(
                    raw.progress_deadline,
                    &path.key("progress_deadline"),
                    defaults.progress_deadline,
                );
                if progress_deadline < healthy_deadline {
                    self.error(
                        &path.key("progress_deadline"),
                        format!(
                            "{} is shorter than healthy_deadline ({}), make it at least that",
                            show(progress_deadline),
                            show(healthy_deadline)
                        ),
                    );
                }
                UpdateStrategy::Rolling(Rolling {
                    max_surge,
                    max_unavailable,
                    min_healthy_time,
                    healthy_deadline,
                    progress_deadline,
                    auto_revert,
                })
            }
        }
    }

    fn steps(&mut self, raw: Option<Vec<i64>>, path: &FieldPath) -> Vec<u32> {
        let Some(raw) = raw else {
            return vec![25, 50, 100];
        };
        if raw.is_empty() {
            self.error(
                path,
                "is empty, write percents ending at 100, e.g. [25, 50, 100]",
            );
            return vec![25, 50, 100];
        }
        let mut steps = Vec::new();
        let mut previous = 0;
        for (i, n) in raw.iter().enumerate() {
            if !(1..=100).contains(n) {
                self.error(
                    &path.index(i),
                    format!("{n} is not a percent from 1 to 100"),
                );
            } else if *n <= previous {
                self.error(
                    &path.index(i),
                    format!("{n} does not go up from the step before ({previous})"),
                );
            } else {
                previous = *n;
                steps.push(*n as u32);
            }
        }
        if raw.last() != Some(&100) {
            self.error(path, "must end at 100, e.g. [25, 50, 100]");
        }
        steps
    }
}

/// How a route's `hostnames` or `paths` list is named and checked.
struct RouteList {
    singular: &'static str,
    plural: &'static str,
    example: &'static str,
    when_empty: &'static str,
    check: fn(&str) -> Result<String, RouteError>,
}

const HOSTNAMES: RouteList = RouteList {
    singular: "hostname",
    plural: "hostnames",
    example: "[web.example.com, \"*.web.example.com\"]",
    when_empty: "write at least one hostname, e.g. [web.example.com]",
    check: hosts::hostname,
};

const PATHS: RouteList = RouteList {
    singular: "path",
    plural: "path prefixes",
    example: "[/, /api]",
    when_empty: "write at least one path prefix, e.g. [/api], or leave paths out for every path",
    check: hosts::path_prefix,
};

/// Read by the owner only, as Docker mounts secrets.
const DEFAULT_SECRET_MODE: u32 = 0o400;

/// A secret file, named after the secret unless `file` says otherwise.
fn secret_file(
    secret: SecretRef,
    file: Option<String>,
    mode: u32,
    uid: u32,
    gid: u32,
) -> SecretFile {
    let file = file.unwrap_or_else(|| units::default_secret_file(&secret.name).to_owned());
    SecretFile {
        secret,
        file,
        mode,
        uid,
        gid,
    }
}

/// `10s`, `1m 30s`, `500ms`.
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Two bindings of one host port clash unless both name different addresses.
fn ips_overlap(a: Option<std::net::IpAddr>, b: Option<std::net::IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        _ => true,
    }
}

fn out_of_range_port(n: i64) -> String {
    format!("{n} is out of range, write a port from 1 to 65535")
}

/// A DNS label: 1–63 lowercase letters, digits and `-`, starting with a
/// letter and ending with a letter or digit (RFC 1035), so a service name
/// can be a host name and never looks like a number.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A spec naming a region or label outside the enrollment rule could never
/// be placed.
fn is_label_part(s: &str) -> bool {
    super::units::is_label_part(s)
}

fn bad_region(name: &str) -> String {
    format!(
        "{name:?} is not a valid region name, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. eu-west"
    )
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad_env_name(key: &str) -> String {
    format!(
        "{key:?} is not a valid variable name, use letters, digits and '_', not starting with a digit"
    )
}

/// Syntax only: what a registry would refuse to even look up. Whether a tag
/// must be pinned is for admission policies.
fn check_image(image: &str) -> Result<(), String> {
    let example = "write e.g. nginx:1.27 or ghcr.io/acme/web@sha256:<digest>";
    if image.trim().is_empty() {
        return Err(format!("must not be empty, {example}"));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{image:?} contains whitespace, {example}"));
    }
    let invalid = || Err(format!("{image:?} is not an image reference, {example}"));
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return invalid();
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let ok = (1..=128).contains(&tag.len())
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !tag.starts_with(['.', '-']);
        if !ok {
            return invalid();
        }
    }
    let mut parts: Vec<&str> = repository.split('/').collect();
    let registry = parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
    if registry {
        parts.remove(0);
    }
    for part in parts {
        let ok = !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return invalid();
        }
        if part.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "{image:?} has upper-case letters in the repository name, which registries \
                 refuse, write it in lower case"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::VolumeSource;
    use expect_test::expect;
    use std::net::{IpAddr, Ipv4Addr};

    /// The error lines for a YAML snippet, with `name: web` and
    /// `image: nginx` added unless the snippet sets them or starts `#raw`.
    fn yaml_errors(snippet: &str) -> Vec<String> {
        let text = with_base(snippet);
        match parse(&text, Format::Yaml) {
            Ok(spec) => panic!("expected errors for\n{text}\ngot {spec:#?}"),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn with_base(snippet: &str) -> String {
        if let Some(raw) = snippet.strip_prefix("#raw\n") {
            return raw.to_owned();
        }
        let has = |key: &str| snippet.lines().any(|l| l.starts_with(key));
        let mut text = String::new();
        if !has("name:") {
            text.push_str("name: web\n");
        }
        if !has("image:") {
            text.push_str("image: nginx\n");
        }
        text.push_str(snippet);
        text
    }

    fn ok(snippet: &str) -> ServiceSpec {
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
    fn the_issue_example_error() {
        assert_eq!(
            yaml_errors("resources:\n  memory: 64XB\n"),
            [r#"spec.resources.memory: "64XB" is not a size, write e.g. 64MiB"#]
        );
        assert_eq!(
            yaml_errors("resourcs:\n  memory: 64MiB\n"),
            ["spec.resourcs: unknown field, did you mean resources?"]
        );
    }

    #[test]
    fn example_parses() {
        let spec = parse(example(), Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        expect![[r#"
            ServiceSpec {
                name: "web",
                image: "ghcr.io/acme/web:1.4.2",
                command: [
                    "/usr/local/bin/web",
                    "--listen",
                    "0.0.0.0:8080",
                ],
                env: {
                    "APP_MODE": "production",
                    "RUST_LOG": "info",
                },
                secret_env: {
                    "API_KEY": SecretRef {
                        name: "crm/api-key",
                        version: Pinned(
                            3,
                        ),
                    },
                    "DB_PASSWORD": SecretRef {
                        name: "crm/db-password",
                        version: Latest,
                    },
                },
                ports: [
                    PortMapping {
                        container_port: 80,
                        host_port: Some(
                            8080,
                        ),
                        host_ip: None,
                        protocol: Tcp,
                    },
                    PortMapping {
                        container_port: 9090,
                        host_port: Some(
                            9090,
                        ),
                        host_ip: Some(
                            127.0.0.1,
                        ),
                        protocol: Tcp,
                    },
                    PortMapping {
                        container_port: 53,
                        host_port: Some(
                            53,
                        ),
                        host_ip: None,
                        protocol: Udp,
                    },
                    PortMapping {
                        container_port: 8443,
                        host_port: Some(
                            8443,
                        ),
                        host_ip: None,
                        protocol: Tcp,
                    },
                ],
                volumes: [
                    VolumeMount {
                        source: Named(
                            "web-cache",
                        ),
                        target: "/var/cache/web",
                        read_only: false,
                    },
                    VolumeMount {
                        source: Bind(
                            "/srv/web/static",
                        ),
                        target: "/srv/static",
                        read_only: true,
                    },
                    VolumeMount {
                        source: Named(
                            "web-data",
                        ),
                        target: "/var/lib/web",
                        read_only: false,
                    },
                ],
                secret_files: [
                    SecretFile {
                        secret: SecretRef {
                            name: "crm/db-password",
                            version: Latest,
                        },
                        file: "db-password",
                        mode: 256,
                        uid: 0,
                        gid: 0,
                    },
                ],
                replicas: 3,
                placement: Placement {
                    regions: [
                        RegionPlacement {
                            region: "eu-west",
                            count: Exactly(
                                2,
                            ),
                        },
                        RegionPlacement {
                            region: "us-east",
                            count: Exactly(
                                1,
                            ),
                        },
                    ],
                    constraints: {
                        "disk": "ssd",
                    },
                },
                resources: Resources {
                    cpu_millis: 500,
                    memory_bytes: 268435456,
                    memory_swap_bytes: Some(
                        536870912,
                    ),
                    pids: Some(
                        256,
                    ),
                },
                health_check: Some(
                    HealthCheck {
                        probe: Http {
                            path: "/healthz",
                            port: 80,
                            expected_status: 200,
                        },
                        interval: 10s,
                        timeout: 5s,
                        retries: 3,
                        start_period: 30s,
                    },
                ),
                restart: Always,
                update: Rolling(
                    Rolling {
                        max_surge: 1,
                        max_unavailable: 0,
                        min_healthy_time: 10s,
                        healthy_deadline: 300s,
                        progress_deadline: 600s,
                        auto_revert: true,
                    },
                ),
                pre_deploy_backup: None,
                route: Some(
                    Route {
                        hostnames: [
                            "web.example.com",
                            "*.web.example.com",
                        ],
                        paths: [
                            "/",
                            "/api",
                        ],
                        port: 80,
                        tls: Some(
                            Certificate(
                                SecretRef {
                                    name: "web/tls",
                                    version: Latest,
                                },
                            ),
                        ),
                        regions: Nearest,
                        drain: 5s,
                    },
                ),
            }"#]]
        .assert_eq(&format!("{spec:#?}"));
    }

    /// The example, written in TOML.
    const EXAMPLE_TOML: &str = r#"
name = "web"
image = "ghcr.io/acme/web:1.4.2"
command = ["/usr/local/bin/web", "--listen", "0.0.0.0:8080"]
ports = ["8080:80", "127.0.0.1:9090:9090", "53:53/udp", { container = 8443, host = 8443, protocol = "tcp" }]
volumes = [
  "web-cache:/var/cache/web",
  "/srv/web/static:/srv/static:ro",
  { source = "web-data", target = "/var/lib/web", read_only = false },
]
replicas = 3
restart = "always"

[[secrets]]
name = "crm/db-password"
file = "db-password"
mode = "0400"
uid = 0
gid = 0

[env]
RUST_LOG = "info"
APP_MODE = "production"
DB_PASSWORD = { secret = "crm/db-password" }
API_KEY = { secret = "crm/api-key@3" }

[placement.regions]
eu-west = 2
us-east = 1

[placement.constraints]
disk = "ssd"

[resources]
cpu = 0.5
memory = "256MiB"
memory_swap = "512MiB"
pids = 256

[health_check]
http = { path = "/healthz", port = 80, expected_status = 200 }
interval = "10s"
timeout = "5s"
retries = 3
start_period = "30s"

[update]
strategy = "rolling"
max_parallel = 1
min_healthy_time = "10s"
healthy_deadline = "5m"
progress_deadline = "10m"
auto_revert = true

[route]
hostnames = ["web.example.com", "*.web.example.com"]
paths = ["/", "/api"]
port = 80
regions = "nearest"
drain = "5s"

[route.tls]
certificate = "web/tls"
"#;

    #[test]
    fn toml_and_yaml_give_the_same_spec() {
        let yaml = parse(example(), Format::Yaml).unwrap();
        let toml = parse(EXAMPLE_TOML, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(toml, yaml);
    }

    #[test]
    fn minimal_spec_gets_the_defaults() {
        let spec = ok("");
        assert_eq!(
            spec,
            ServiceSpec {
                name: "web".into(),
                image: "nginx".into(),
                command: vec![],
                env: BTreeMap::new(),
                secret_env: BTreeMap::new(),
                ports: vec![],
                volumes: vec![],
                secret_files: vec![],
                replicas: 1,
                placement: Placement::default(),
                resources: Resources::default(),
                health_check: None,
                restart: RestartPolicy::Always,
                update: UpdateStrategy::Rolling(Rolling::default()),
                pre_deploy_backup: None,
                route: None,
            }
        );
        let toml = parse("name = \"web\"\nimage = \"nginx\"\n", Format::Toml).unwrap();
        assert_eq!(toml, spec);
        // Null is the same as leaving a field out.
        assert_eq!(
            ok("replicas: ~\nresources:\nupdate: null\nhealth_check:\n"),
            spec
        );
    }

    #[test]
    fn format_from_path() {
        let cases = [
            ("web.yaml", Some(Format::Yaml)),
            ("web.yml", Some(Format::Yaml)),
            ("dir.d/web.YAML", Some(Format::Yaml)),
            ("web.toml", Some(Format::Toml)),
            ("web.json", None),
            ("web", None),
            ("yaml", None),
        ];
        for (path, want) in cases {
            assert_eq!(Format::from_path(Path::new(path)).ok(), want, "{path}");
        }
        assert_eq!(
            Format::from_path(Path::new("web.json"))
                .unwrap_err()
                .to_string(),
            "web.json: unknown spec format, name the file .yaml, .yml or .toml"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = SpecErrors {
            errors: vec![
                FieldError {
                    path: "spec.a".into(),
                    message: "one".into(),
                },
                FieldError {
                    path: "spec.b".into(),
                    message: "two".into(),
                },
            ],
        };
        assert_eq!(errors.to_string(), "spec.a: one\nspec.b: two");
    }

    #[test]
    fn every_error_at_once_in_document_order() {
        let text = r#"
name: Web
image: nginx
replicas: lots
ports: ["8080:80", "8080:81", "x"]
resourcs: {}
resources:
  memory: 64XB
  cpu: 0
health_check:
  http: {path: healthz, port: 80}
  timeout: 1m
update:
  strategy: canary
  steps: [50, 25]
  max_parallel: 2
"#;
        let errors = parse(text, Format::Yaml).unwrap_err();
        expect![[r#"
            spec.name: "Web" is not a valid name, use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-', e.g. web
            spec.replicas: expected a whole number, found "lots"
            spec.ports[1]: host port 8080/tcp is already published by spec.ports[0]
            spec.ports[2]: "x" is not a port mapping, write e.g. "8080:80", "127.0.0.1:8080:80" or "53:53/udp"
            spec.resourcs: unknown field, did you mean resources?
            spec.resources.memory: "64XB" is not a size, write e.g. 64MiB
            spec.resources.cpu: "0" is no CPU at all, write more than 0, e.g. 0.5 or 250m
            spec.health_check.http.path: "healthz" is not a URL path, write e.g. /healthz
            spec.health_check.timeout: 1m is not shorter than interval (10s), write e.g. 5s
            spec.update.steps: must end at 100, e.g. [25, 50, 100]
            spec.update.steps[1]: 25 does not go up from the step before (50)
            spec.update.max_parallel: only used by strategy rolling, remove it or set strategy: rolling"#]]
        .assert_eq(&errors.to_string());
    }

    #[test]
    fn shape_errors() {
        check_errors(&[
            (
                "bogus: 1",
                &[
                    "spec.bogus: unknown field, expected one of name, image, command, env, ports, volumes, secrets, replicas, placement, resources, health_check, restart, update, pre_deploy_backup, route",
                ],
            ),
            (
                "resources:\n  mem: 64MiB",
                &["spec.resources.mem: unknown field, did you mean memory?"],
            ),
            (
                "resources:\n  cpus: 1",
                &["spec.resources.cpus: unknown field, did you mean cpu?"],
            ),
            (
                "environment:\n  A: b",
                &["spec.environment: unknown field, did you mean env?"],
            ),
            (
                "healthcheck: {}",
                &["spec.healthcheck: unknown field, did you mean health_check?"],
            ),
            (
                "imgae: x",
                &["spec.imgae: unknown field, did you mean image?"],
            ),
            (
                "mem_limit: 1g",
                &["spec.mem_limit: unknown field, did you mean resources.memory?"],
            ),
            (
                "#raw\nName: web\nimage: nginx",
                &[
                    "spec.name: required, write e.g. name: web",
                    "spec.Name: unknown field, did you mean name?",
                ],
            ),
            (
                "ports:\n  - {container: 80, hots: 8080}",
                &["spec.ports[0].hots: unknown field, did you mean host?"],
            ),
            (
                "volumes:\n  - {source: d1, target: /d, mode: ro}",
                &["spec.volumes[0].mode: unknown field, expected one of source, target, read_only"],
            ),
            (
                "health_check:\n  htp: {path: /}",
                &[
                    "spec.health_check: give one probe: http, tcp or exec, e.g. http: {path: /healthz, port: 8080}",
                    "spec.health_check.htp: unknown field, did you mean http?",
                ],
            ),
            (
                "health_check:\n  test: [CMD, true]",
                &[
                    "spec.health_check: give one probe: http, tcp or exec, e.g. http: {path: /healthz, port: 8080}",
                    "spec.health_check.test: unknown field, did you mean exec?",
                ],
            ),
            (
                "update:\n  strategy: canary\n  canarys: 2",
                &["spec.update.canarys: unknown field, did you mean canaries?"],
            ),
            (
                "update:\n  parallelism: 2",
                &["spec.update.parallelism: unknown field, did you mean max_parallel?"],
            ),
            (
                "placement:\n  region: [a]",
                &["spec.placement.region: unknown field, did you mean regions?"],
            ),
            (
                "a: 1\nresources:\n  b: 2\nc: 3",
                &[
                    "spec.a: unknown field, expected one of name, image, command, env, ports, volumes, secrets, replicas, placement, resources, health_check, restart, update, pre_deploy_backup, route",
                    "spec.resources.b: unknown field, expected one of cpu, memory, memory_swap, pids",
                    "spec.c: unknown field, expected one of name, image, command, env, ports, volumes, secrets, replicas, placement, resources, health_check, restart, update, pre_deploy_backup, route",
                ],
            ),
            // Type errors: each reported, the rest still checked.
            (
                "replicas: three",
                &[r#"spec.replicas: expected a whole number, found "three""#],
            ),
            (
                "replicas: 1.5",
                &["spec.replicas: expected a whole number, found 1.5"],
            ),
            ("name: 5", &["spec.name: expected a string, found 5"]),
            (
                "resources: [1, 2]",
                &["spec.resources: expected a map, found a list"],
            ),
            (
                "ports: \"8080:80\"",
                &[r#"spec.ports: expected a list, found "8080:80""#],
            ),
            (
                "placement:\n  spread: [eu-west, [x]]",
                &["spec.placement.spread[1]: expected a string, found a list"],
            ),
            (
                "update:\n  auto_revert: maybe",
                &[r#"spec.update.auto_revert: expected true or false, found "maybe""#],
            ),
            // The list is dropped after its type error, and checks under it with it.
            (
                "update:\n  steps: [25, x, 100]",
                &[r#"spec.update.steps[1]: expected a whole number, found "x""#],
            ),
            (
                "replicas: x\nresources:\n  pids: lots\n  memory: 1XB",
                &[
                    r#"spec.replicas: expected a whole number, found "x""#,
                    r#"spec.resources.pids: expected a whole number, found "lots""#,
                    r#"spec.resources.memory: "1XB" is not a size, write e.g. 64MiB"#,
                ],
            ),
            (
                "ports:\n  - {container: \"80\"}\n  - {container: 0}",
                &[
                    r#"spec.ports[0].container: expected a whole number, found "80""#,
                    "spec.ports[1].container: 0 is out of range, write a port from 1 to 65535",
                ],
            ),
            (
                "volumes:\n  - {source: data, target: /d, read_only: sure}",
                &[r#"spec.volumes[0].read_only: expected true or false, found "sure""#],
            ),
        ]);
    }

    #[test]
    fn syntax_errors() {
        check_errors(&[
            (
                "#raw\nname: [\n",
                &["spec: YAML syntax error: line 1 column 7: unclosed bracket '['"],
            ),
            (
                "#raw\nname: a\nname: b\n",
                &["spec: YAML syntax error: line 2 column 1: duplicate mapping key: name"],
            ),
            (
                "#raw\nname: a\n---\nname: b\n",
                &[
                    "spec: YAML syntax error: line 3 column 1: multiple YAML documents detected, write one service per file",
                ],
            ),
            (
                "#raw\n",
                &["spec: the spec is empty, start from the example in `argosy apply --help`"],
            ),
            (
                "#raw\n# only a comment\n",
                &["spec: the spec is empty, start from the example in `argosy apply --help`"],
            ),
            (
                "#raw\n- a\n- b\n",
                &["spec: expected a map of fields (name, image, ...), found a list"],
            ),
            (
                "#raw\njust words",
                &[r#"spec: expected a map of fields (name, image, ...), found "just words""#],
            ),
            (
                "#raw\n? [a, b]\n: c\n",
                &["spec: YAML syntax error: map keys must be plain words, found a list"],
            ),
        ]);
        let toml = |text: &str| parse(text, Format::Toml).unwrap_err().to_string();
        assert_eq!(
            toml("name = \"web\"\nimage = \n"),
            "spec: TOML syntax error: line 2 column 9: string values must be quoted, expected literal string"
        );
        assert_eq!(
            toml("name = \"web\"\nname = \"x\"\n"),
            "spec: TOML syntax error: line 2 column 1: duplicate key"
        );
        let big = format!("name: web\nimage: nginx\n#{}\n", "x".repeat(MAX_SPEC_BYTES));
        assert_eq!(
            parse(&big, Format::Yaml).unwrap_err().to_string(),
            "spec: the spec is 1048601B long, more than the 1MiB a spec may have"
        );
    }

    #[test]
    fn toml_errors_name_fields_too() {
        let text = "name = \"web\"\nimage = \"nginx\"\nreplicas = \"3\"\n[resources]\nmemory = \"64XB\"\n[resourcs]\n";
        expect![[r#"
            spec.replicas: expected a whole number, found "3"
            spec.resources.memory: "64XB" is not a size, write e.g. 64MiB
            spec.resourcs: unknown field, did you mean resources?"#]]
        .assert_eq(&parse(text, Format::Toml).unwrap_err().to_string());
    }

    #[test]
    fn name_and_image_rules() {
        let bad_name = |n: &str| {
            format!(
                "spec.name: {n:?} is not a valid name, use 1-63 lowercase letters, digits and '-', \
                 starting with a letter and not ending with '-', e.g. web"
            )
        };
        let long = "a".repeat(64);
        let rows: Vec<(String, Vec<String>)> = vec![
            ("name: Web_1".into(), vec![bad_name("Web_1")]),
            ("name: 1web".into(), vec![bad_name("1web")]),
            ("name: web-".into(), vec![bad_name("web-")]),
            ("name: we.b".into(), vec![bad_name("we.b")]),
            ("name: ''".into(), vec![bad_name("")]),
            (format!("name: {long}"), vec![bad_name(&long)]),
            (
                "name: ~".into(),
                vec!["spec.name: required, write e.g. name: web".into()],
            ),
            (
                "#raw\nimage: nginx".into(),
                vec!["spec.name: required, write e.g. name: web".into()],
            ),
            (
                "#raw\nname: web".into(),
                vec!["spec.image: required, write e.g. image: nginx:1.27".into()],
            ),
        ];
        let rows: Vec<(&str, Vec<&str>)> = rows
            .iter()
            .map(|(s, e)| (s.as_str(), e.iter().map(String::as_str).collect()))
            .collect();
        let rows: Vec<(&str, &[&str])> = rows.iter().map(|(s, e)| (*s, e.as_slice())).collect();
        check_errors(&rows);
        let ex = "write e.g. nginx:1.27 or ghcr.io/acme/web@sha256:<digest>";
        let not_ref = |i: &str| format!("spec.image: {i:?} is not an image reference, {ex}");
        for (image, want) in [
            ("''", Some(format!("spec.image: must not be empty, {ex}"))),
            (
                "'nginx 1.27'",
                Some(format!(
                    "spec.image: \"nginx 1.27\" contains whitespace, {ex}"
                )),
            ),
            (
                "Nginx",
                Some(
                    "spec.image: \"Nginx\" has upper-case letters in the repository name, which \
                     registries refuse, write it in lower case"
                        .to_owned(),
                ),
            ),
            ("'nginx:'", Some(not_ref("nginx:"))),
            ("'nginx:.x'", Some(not_ref("nginx:.x"))),
            ("'nginx@sha256:xyz'", Some(not_ref("nginx@sha256:xyz"))),
            ("'a//b'", Some(not_ref("a//b"))),
            ("'-a'", Some(not_ref("-a"))),
            ("nginx", None),
            ("nginx:1.27-alpine", None),
            ("library/nginx:latest", None),
            ("localhost:5000/web:v1", None),
            ("Registry.Example.com:443/team/web_app.v2:1.0", None),
            ("127.0.0.1:5000/busybox", None),
            (&format!("web@sha256:{}", "ab".repeat(32)), None),
            (&format!("web:1@sha256:{}", "ab".repeat(32)), None),
        ] {
            let text = with_base(&format!("image: {image}"));
            let got = parse(&text, Format::Yaml).err().map(|e| e.to_string());
            assert_eq!(got, want, "{image}");
        }
    }

    #[test]
    fn command_and_env() {
        assert_eq!(
            ok("command: [run, --port, 80, true]").command,
            ["run", "--port", "80", "true"]
        );
        assert_eq!(
            ok("command: echo $HOME && sleep 5").command,
            ["sh", "-c", "echo $HOME && sleep 5"]
        );
        assert_eq!(ok("command: []").command, Vec::<String>::new());
        let env = ok("env:\n  A: x\n  B: 1\n  C: 1.0\n  D: true\n  _E: ''\n  F: \"no\"").env;
        let want: BTreeMap<String, String> = [
            ("A", "x"),
            ("B", "1"),
            ("C", "1.0"),
            ("D", "true"),
            ("_E", ""),
            ("F", "no"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, want);
        let env = ok("env: [A=x, B=, C=a=b]").env;
        assert_eq!(env.get("A").map(String::as_str), Some("x"));
        assert_eq!(env.get("B").map(String::as_str), Some(""));
        assert_eq!(env.get("C").map(String::as_str), Some("a=b"));
        check_errors(&[
            (
                "command: ''",
                &["spec.command: is empty, write a command or leave the field out"],
            ),
            (
                "command: 5",
                &["spec.command: expected a list of strings, or one string for sh -c, found 5"],
            ),
            (
                "command: [run, {a: 1}]",
                &["spec.command[1]: expected a string, found a map"],
            ),
            (
                "env:\n  1X: a",
                &[
                    r#"spec.env.1X: "1X" is not a valid variable name, use letters, digits and '_', not starting with a digit"#,
                ],
            ),
            (
                "env:\n  MY-VAR: a",
                &[
                    r#"spec.env.MY-VAR: "MY-VAR" is not a valid variable name, use letters, digits and '_', not starting with a digit"#,
                ],
            ),
            (
                "env:\n  'A B': a",
                &[
                    r#"spec.env."A B": "A B" is not a valid variable name, use letters, digits and '_', not starting with a digit"#,
                ],
            ),
            (
                "env:\n  A:",
                &[r#"spec.env.A: has no value, write A: "" for an empty one"#],
            ),
            (
                "env:\n  A: [1]",
                &["spec.env.A: expected a string, or {secret: NAME} for a secret, found a list"],
            ),
            (
                "env: [A=1, B, A=2]",
                &[
                    r#"spec.env[1]: "B" has no '=', write B=value"#,
                    "spec.env[2]: A is already set by spec.env[0]",
                ],
            ),
            (
                "env: [=1]",
                &[
                    r#"spec.env[0]: "" is not a valid variable name, use letters, digits and '_', not starting with a digit"#,
                ],
            ),
            ("env: [5]", &["spec.env[0]: expected KEY=value, found 5"]),
            (
                "env: 5",
                &["spec.env: expected a map (KEY: value) or a list of KEY=value, found 5"],
            ),
        ]);
    }

    #[test]
    fn secrets_as_env_and_as_files() {
        use crate::deploy::model::SecretVersion::{Latest, Pinned};
        let secret = |name: &str, version| SecretRef {
            name: name.into(),
            version,
        };
        let spec = ok(r#"
env:
  LOG_LEVEL: info
  DB_PASSWORD: { secret: crm/db-password }
  API_KEY: { secret: crm/api-key@3 }
secrets:
  - name: crm/db-password
  - name: crm/tls/key@2
    file: tls.key
    mode: "0440"
    uid: 1000
    gid: 1001
  - crm/ca
"#);
        assert_eq!(
            spec.env,
            BTreeMap::from([("LOG_LEVEL".into(), "info".into())])
        );
        assert_eq!(
            spec.secret_env,
            BTreeMap::from([
                ("API_KEY".into(), secret("crm/api-key", Pinned(3))),
                ("DB_PASSWORD".into(), secret("crm/db-password", Latest)),
            ])
        );
        assert_eq!(
            spec.secret_files,
            [
                SecretFile {
                    secret: secret("crm/db-password", Latest),
                    file: "db-password".into(),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
                SecretFile {
                    secret: secret("crm/tls/key", Pinned(2)),
                    file: "tls.key".into(),
                    mode: 0o440,
                    uid: 1000,
                    gid: 1001,
                },
                SecretFile {
                    secret: secret("crm/ca", Latest),
                    file: "ca".into(),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            ]
        );
        // Each secret once, however often it is used.
        let refs: Vec<String> = spec.secret_refs().iter().map(ToString::to_string).collect();
        assert_eq!(
            refs,
            [
                "crm/api-key@3",
                "crm/ca",
                "crm/db-password",
                "crm/tls/key@2"
            ]
        );
        let toml = parse(
            r#"
name = "web"
image = "nginx"
secrets = ["crm/ca", { name = "crm/tls/key@2", file = "tls.key", mode = "0440", uid = 1000, gid = 1001 }]
[env]
DB_PASSWORD = { secret = "crm/db-password" }
"#,
            Format::Toml,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(toml.secret_files[0].file, "ca");
        assert_eq!(toml.secret_files[1], spec.secret_files[1]);
        assert_eq!(
            toml.secret_env["DB_PASSWORD"],
            spec.secret_env["DB_PASSWORD"]
        );

        check_errors(&[
            (
                "env:\n  K: {secret: Crm/Key}",
                &[
                    r#"spec.env.K.secret: secret name "Crm/Key" is not valid: it holds a character other than a-z, 0-9, '-', '_', '.' and '/'; use 1–128 lowercase letters, digits, '-', '_', '.' and '/' (as in crm/db-password)"#,
                ],
            ),
            (
                "env:\n  K: {secret: crm/key@0}",
                &[
                    r#"spec.env.K.secret: "crm/key@0" does not pin a version, write a version number from 1 after '@', e.g. crm/key@3, or leave '@' out to follow the latest version"#,
                ],
            ),
            (
                "env:\n  K: {secrt: crm/key}",
                &[
                    "spec.env.K.secret: required, write e.g. {secret: crm/db-password}",
                    "spec.env.K.secrt: unknown field, did you mean secret?",
                ],
            ),
            (
                "env:\n  K: {}",
                &["spec.env.K.secret: required, write e.g. {secret: crm/db-password}"],
            ),
            (
                "env:\n  K: {secret: [a]}",
                &["spec.env.K.secret: expected a string, found a list"],
            ),
            (
                "secrets:\n  - name: crm/a\n    file: a/b",
                &[
                    r#"spec.secrets[0].file: "a/b" is not a file name, write a plain name without '/', e.g. db-password (it appears as /run/secrets/db-password)"#,
                ],
            ),
            (
                "secrets:\n  - name: crm/a\n    file: '..'",
                &[
                    r#"spec.secrets[0].file: ".." is not a file name, write a plain name without '/', e.g. db-password (it appears as /run/secrets/db-password)"#,
                ],
            ),
            (
                "secrets:\n  - crm/x/db\n  - name: crm/y/db\n  - name: crm/z\n    file: db",
                &[
                    "spec.secrets[1]: file db is already used by spec.secrets[0], give this one another file: name",
                    "spec.secrets[2]: file db is already used by spec.secrets[0], give this one another file: name",
                ],
            ),
            (
                "secrets:\n  - name: crm/a\n    mode: '0800'",
                &[
                    r#"spec.secrets[0].mode: "0800" is not a file mode, write 3 or 4 octal digits up to 0777 in quotes, e.g. "0400""#,
                ],
            ),
            (
                "secrets:\n  - name: crm/a\n    mode: 400",
                &[
                    r#"spec.secrets[0].mode: 400 is a number, but modes are octal: write it as a string in quotes, e.g. mode: "0400""#,
                ],
            ),
            (
                "secrets:\n  - name: crm/a\n    mode: [4]",
                &[
                    r#"spec.secrets[0].mode: expected an octal mode in quotes, e.g. "0400", found a list"#,
                ],
            ),
            (
                "secrets:\n  - name: crm/a\n    uid: -1\n    gid: 4294967296",
                &[
                    "spec.secrets[0].uid: -1 is out of range, write a numeric id from 0, e.g. 1000",
                    "spec.secrets[0].gid: 4294967296 is out of range, write a numeric id from 0, e.g. 1000",
                ],
            ),
            (
                "secrets:\n  - file: db",
                &["spec.secrets[0].name: required, write e.g. name: crm/db-password"],
            ),
            (
                "secrets:\n  - name: crm/a\n    mod: '0400'",
                &["spec.secrets[0].mod: unknown field, did you mean mode?"],
            ),
            (
                "secrets:\n  - name: crm/a@x",
                &[
                    r#"spec.secrets[0].name: "crm/a@x" does not pin a version, write a version number from 1 after '@', e.g. crm/a@3, or leave '@' out to follow the latest version"#,
                ],
            ),
            (
                "secrets:\n  - /etc/passwd",
                &[
                    r#"spec.secrets[0]: secret name "/etc/passwd" is not valid: it starts or ends with '/'; use 1–128 lowercase letters, digits, '-', '_', '.' and '/' (as in crm/db-password)"#,
                ],
            ),
            (
                "secrets:\n  - 5",
                &[
                    "spec.secrets[0]: expected a map like {name: crm/db-password, file: db-password} or a secret name, found 5",
                ],
            ),
            (
                "secrets: crm/a",
                &[r#"spec.secrets: expected a list, found "crm/a""#],
            ),
            (
                "secrets: [crm/a]\nvolumes: [\"data:/run/secrets\", \"/srv:/run/secrets/x\", \"logs:/run/secretsx\"]",
                &[
                    "spec.volumes[0]: target /run/secrets is inside /run/secrets, where the secrets: files are mounted; choose another target",
                    "spec.volumes[1]: target /run/secrets/x is inside /run/secrets, where the secrets: files are mounted; choose another target",
                ],
            ),
        ]);
        // Without secret files, /run/secrets is an ordinary target.
        assert_eq!(ok("volumes: [\"data:/run/secrets\"]").volumes.len(), 1);
    }

    fn tcp(container: u16, host: Option<u16>) -> PortMapping {
        PortMapping {
            container_port: container,
            host_port: host,
            host_ip: None,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn ports() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            ok("ports:\n  - 80\n  - \"8080:81\"\n  - {container: 82}\n  - {container: 83, host: 8083, host_ip: 127.0.0.1, protocol: udp}").ports,
            [
                tcp(80, None),
                tcp(81, Some(8080)),
                tcp(82, None),
                PortMapping { container_port: 83, host_port: Some(8083), host_ip: lo, protocol: Protocol::Udp },
            ]
        );
        assert_eq!(
            ok("ports: [\"8000-8001:9000-9001\"]").ports,
            [tcp(9000, Some(8000)), tcp(9001, Some(8001))]
        );
        // The same host port on other protocols or other addresses is fine.
        assert_eq!(ok("ports: [\"8080:80\", \"8080:80/udp\"]").ports.len(), 2);
        assert_eq!(
            ok("ports: [\"127.0.0.1:8080:80\", \"10.0.0.1:8080:81\"]")
                .ports
                .len(),
            2
        );
        assert_eq!(ok("ports: [80, 80]").ports.len(), 2);
        check_errors(&[
            (
                "ports: [\"8080:0\"]",
                &[r#"spec.ports[0]: "8080:0": port 0 is out of range, use 1 to 65535"#],
            ),
            (
                "ports: [\"8080:80\", \"8080:81\"]",
                &["spec.ports[1]: host port 8080/tcp is already published by spec.ports[0]"],
            ),
            (
                "ports: [\"127.0.0.1:8080:80\", \"8080:81\"]",
                &["spec.ports[1]: host port 8080/tcp is already published by spec.ports[0]"],
            ),
            (
                "ports: [\"0.0.0.0:53:53/udp\", \"127.0.0.1:53:54/udp\"]",
                &["spec.ports[1]: host port 53/udp is already published by spec.ports[0]"],
            ),
            (
                "ports: [\"8000-8002:9000-9002\", {container: 1, host: 8001}]",
                &["spec.ports[1]: host port 8001/tcp is already published by spec.ports[0]"],
            ),
            (
                "ports: [70000]",
                &["spec.ports[0]: 70000 is out of range, write a port from 1 to 65535"],
            ),
            (
                "ports: [\"127.0.0.1::80\"]",
                &[
                    r#"spec.ports[0]: "127.0.0.1::80" leaves the host port empty, and Argosy does not pick random host ports: write one, e.g. "127.0.0.1:8080:80""#,
                ],
            ),
            (
                "ports: [{host: 8080}]",
                &["spec.ports[0].container: required, write e.g. container: 80"],
            ),
            (
                "ports: [{container: 80, host: 0}]",
                &["spec.ports[0].host: 0 is out of range, write a port from 1 to 65535"],
            ),
            (
                "ports: [{container: 80, host_ip: 127.0.0.1}]",
                &[
                    "spec.ports[0].host_ip: only applies to a published port, add host too, e.g. host: 8080",
                ],
            ),
            (
                "ports: [{container: 80, host: 8080, host_ip: nope}]",
                &[r#"spec.ports[0].host_ip: "nope" is not an IP address, write e.g. 127.0.0.1"#],
            ),
            (
                "ports: [{container: 80, protocol: sctp}]",
                &[r#"spec.ports[0].protocol: "sctp" is not a protocol, write tcp or udp"#],
            ),
            (
                "ports: [true]",
                &[
                    "spec.ports[0]: expected a string like \"8080:80\" or a map like {container: 80, host: 8080}, found true",
                ],
            ),
        ]);
    }

    #[test]
    fn volumes() {
        assert_eq!(
            ok("volumes:\n  - data:/d\n  - {source: /srv/x, target: /x, read_only: true}\n  - {source: logs, target: /logs}").volumes,
            [
                VolumeMount { source: VolumeSource::Named("data".into()), target: "/d".into(), read_only: false },
                VolumeMount { source: VolumeSource::Bind("/srv/x".into()), target: "/x".into(), read_only: true },
                VolumeMount { source: VolumeSource::Named("logs".into()), target: "/logs".into(), read_only: false },
            ]
        );
        check_errors(&[
            (
                "volumes: [\"./data:/data\"]",
                &[
                    r#"spec.volumes[0]: bind source "./data" is not absolute, write the full host path, e.g. /srv/data"#,
                ],
            ),
            (
                "volumes: [\"/data\"]",
                &[r#"spec.volumes[0]: "/data" has no source, name the volume, e.g. "data:/data""#],
            ),
            (
                "volumes: [\"d:/data\"]",
                &[
                    r#"spec.volumes[0]: "d" is not a valid volume name, use 2 to 255 letters, digits, '_', '.' and '-', starting with a letter or digit"#,
                ],
            ),
            (
                "volumes: [\"data:/d\", \"/srv:/d/\"]",
                &["spec.volumes[1]: target /d/ is already mounted by spec.volumes[0]"],
            ),
            (
                "volumes: [{source: ./x, target: /d}]",
                &[
                    r#"spec.volumes[0].source: bind source "./x" is not absolute, write the full host path, e.g. /srv/data"#,
                ],
            ),
            (
                "volumes: [{source: /a/../b, target: /d}]",
                &[
                    r#"spec.volumes[0].source: source "/a/../b" contains '..', write the path without it"#,
                ],
            ),
            (
                "volumes: [{source: data, target: rel}]",
                &[r#"spec.volumes[0].target: target "rel" is not absolute, write e.g. /data"#],
            ),
            (
                "volumes: [{source: data}]",
                &["spec.volumes[0].target: required, write e.g. target: /data"],
            ),
            (
                "volumes: [{target: /d}]",
                &["spec.volumes[0].source: required, write a volume name or an absolute host path"],
            ),
            (
                "volumes: [\"data:/d:z\"]",
                &[r#"spec.volumes[0]: mode "z" is unknown, write ro or rw"#],
            ),
            (
                "volumes: [5]",
                &[
                    "spec.volumes[0]: expected a string like \"data:/var/lib/data\" or a map like {source: data, target: /var/lib/data}, found 5",
                ],
            ),
        ]);
    }

    #[test]
    fn replicas_and_placement() {
        assert_eq!(ok("replicas: 0").replicas, 0);
        assert_eq!(ok("replicas: 1000").replicas, 1000);
        let spec = ok("placement:\n  regions: {eu-west: 2, us-east: 1}");
        assert_eq!(
            spec.replicas, 3,
            "replicas default to the sum of the counts"
        );
        assert_eq!(
            spec.placement.regions,
            [
                RegionPlacement {
                    region: "eu-west".into(),
                    count: RegionCount::Exactly(2)
                },
                RegionPlacement {
                    region: "us-east".into(),
                    count: RegionCount::Exactly(1)
                },
            ]
        );
        assert_eq!(
            ok("replicas: 3\nplacement:\n  regions: {eu-west: 2, us-east: 1}").replicas,
            3
        );
        let spread = |r: &str| RegionPlacement {
            region: r.into(),
            count: RegionCount::Spread,
        };
        let want = [spread("eu-west"), spread("us-east")];
        assert_eq!(
            ok("replicas: 4\nplacement:\n  regions: [eu-west, us-east]")
                .placement
                .regions,
            want
        );
        assert_eq!(
            ok("placement:\n  spread: [eu-west, us-east]")
                .placement
                .regions,
            want
        );
        assert_eq!(ok("placement:\n  regions: []").placement.regions, []);
        let constraints = ok("placement:\n  constraints: {role: db, tier: 1, Zone.x/y: A_b}")
            .placement
            .constraints;
        assert_eq!(constraints.get("tier").map(String::as_str), Some("1"));
        assert_eq!(constraints.len(), 3);
        check_errors(&[
            (
                "replicas: 1001",
                &["spec.replicas: 1001 is out of range, write 0 to 1000"],
            ),
            (
                "replicas: -1",
                &["spec.replicas: -1 is out of range, write 0 to 1000"],
            ),
            (
                "replicas: 4\nplacement:\n  regions: {eu-west: 2, us-east: 1}",
                &[
                    "spec.placement.regions: counts add up to 3 but replicas is 4, make them equal (or leave replicas out)",
                ],
            ),
            (
                "placement:\n  regions: {a: 600, b: 600}",
                &["spec.placement.regions: counts add up to 1200, more than 1000 replicas"],
            ),
            (
                "placement:\n  regions: {eu-west: two}",
                &[r#"spec.placement.regions.eu-west: expected a number of replicas, found "two""#],
            ),
            (
                "placement:\n  regions: {eu-west: -1}",
                &["spec.placement.regions.eu-west: -1 is out of range, write 0 to 1000"],
            ),
            (
                "placement:\n  regions: {'eu west': 1}",
                &[
                    r#"spec.placement.regions."eu west": "eu west" is not a valid region name, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. eu-west"#,
                ],
            ),
            (
                "placement:\n  regions: [eu-west, eu-west]",
                &[
                    "spec.placement.regions[1]: eu-west is already listed at spec.placement.regions[0]",
                ],
            ),
            (
                "placement:\n  regions: [eu-west, 5]",
                &["spec.placement.regions[1]: expected a region name, found 5"],
            ),
            (
                "placement:\n  spread: ['a b']",
                &[
                    r#"spec.placement.spread[0]: "a b" is not a valid region name, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. eu-west"#,
                ],
            ),
            (
                "placement:\n  regions: [eu-west]\n  spread: [us-east]",
                &[
                    "spec.placement.spread: give either regions or spread, not both (regions: [a, b] spreads too)",
                ],
            ),
            (
                "placement:\n  regions: eu-west",
                &[
                    r#"spec.placement.regions: expected a map of region: count (eu-west: 2) or a list of regions to spread over, found "eu-west""#,
                ],
            ),
            (
                "placement:\n  constraints: {'bad key': x}",
                &[
                    r#"spec.placement.constraints."bad key": "bad key" is not a valid label, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. disk"#,
                ],
            ),
            (
                "placement:\n  constraints: {disk: 'has space'}",
                &[
                    r#"spec.placement.constraints.disk: "has space" is not a valid label value, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. ssd"#,
                ],
            ),
            (
                "placement:\n  constraints: {disk: [a]}",
                &["spec.placement.constraints.disk: expected a label value, found a list"],
            ),
            (
                "placement:\n  constraints: [disk]",
                &["spec.placement.constraints: expected a map, found a list"],
            ),
        ]);
    }

    #[test]
    fn resources() {
        let r =
            ok("resources:\n  cpu: 250m\n  memory: 1GiB\n  memory_swap: 1GiB\n  pids: 1").resources;
        assert_eq!(
            r,
            Resources {
                cpu_millis: 250,
                memory_bytes: 1 << 30,
                memory_swap_bytes: Some(1 << 30),
                pids: Some(1)
            }
        );
        assert_eq!(
            ok("resources:\n  cpu: 2\n  memory: 6291456")
                .resources
                .cpu_millis,
            2000
        );
        assert_eq!(ok("resources:\n  cpu: '1.5'").resources.cpu_millis, 1500);
        assert_eq!(
            ok("resources:\n  memory: 6291456").resources.memory_bytes,
            MIN_MEMORY_BYTES
        );
        assert_eq!(
            ok("resources:\n  memory: 512M").resources.memory_bytes,
            512_000_000
        );
        check_errors(&[
            (
                "resources:\n  memory: 64XB",
                &[r#"spec.resources.memory: "64XB" is not a size, write e.g. 64MiB"#],
            ),
            (
                "resources:\n  memory: -64MiB",
                &[
                    r#"spec.resources.memory: "-64MiB" is not a size: sizes cannot be negative, write e.g. 64MiB"#,
                ],
            ),
            (
                "resources:\n  memory: 4MiB",
                &[
                    r#"spec.resources.memory: "4MiB" is below Docker's minimum of 6MiB, write e.g. 64MiB"#,
                ],
            ),
            (
                "resources:\n  memory: 6291455",
                &[
                    "spec.resources.memory: 6291455 is below Docker's minimum of 6MiB, write e.g. 64MiB",
                ],
            ),
            (
                "resources:\n  memory: 0",
                &[
                    "spec.resources.memory: 0 is below Docker's minimum of 6MiB, write e.g. 64MiB (or leave memory out for no limit)",
                ],
            ),
            (
                "resources:\n  memory: 99999PiB",
                &[r#"spec.resources.memory: "99999PiB" is too large, sizes stop at 16EiB"#],
            ),
            (
                "resources:\n  memory: [1]",
                &["spec.resources.memory: expected a size like 64MiB, found a list"],
            ),
            (
                "resources:\n  memory: 256MiB\n  memory_swap: 128MiB",
                &[
                    r#"spec.resources.memory_swap: "128MiB" is less than memory (256MiB); it counts memory plus swap, so write at least 256MiB"#,
                ],
            ),
            (
                "resources:\n  memory_swap: 1GiB",
                &[
                    "spec.resources.memory_swap: needs memory too: it limits memory plus swap, e.g. memory: 256MiB",
                ],
            ),
            (
                "resources:\n  memory_swap: lots",
                &[r#"spec.resources.memory_swap: "lots" is not a size, write e.g. 64MiB"#],
            ),
            (
                "resources:\n  cpu: 0",
                &[
                    r#"spec.resources.cpu: "0" is no CPU at all, write more than 0, e.g. 0.5 or 250m"#,
                ],
            ),
            (
                "resources:\n  cpu: 0.0001",
                &[
                    r#"spec.resources.cpu: "0.0001" is finer than a thousandth of a core, write e.g. 0.25 or 250m"#,
                ],
            ),
            (
                "resources:\n  cpu: -1",
                &[
                    r#"spec.resources.cpu: "-1" is not a CPU amount: it cannot be negative, write e.g. 0.5 or 250m"#,
                ],
            ),
            (
                "resources:\n  cpu: two",
                &[
                    r#"spec.resources.cpu: "two" is not a CPU amount, write cores (0.5, 2) or millicores (250m)"#,
                ],
            ),
            (
                "resources:\n  cpu: [1]",
                &[
                    r#"spec.resources.cpu: expected cores (0.5) or millicores ("250m"), found a list"#,
                ],
            ),
            (
                "resources:\n  cpu: true",
                &[r#"spec.resources.cpu: expected cores (0.5) or millicores ("250m"), found true"#],
            ),
            (
                "resources:\n  pids: 0",
                &["spec.resources.pids: 0 is out of range, write at least 1, e.g. pids: 256"],
            ),
        ]);
    }

    #[test]
    fn health_checks() {
        let h = ok("ports: [\"8080:80\"]\nhealth_check:\n  http: {}")
            .health_check
            .unwrap();
        assert_eq!(
            h,
            HealthCheck {
                probe: HealthProbe::Http {
                    path: "/".into(),
                    port: 80,
                    expected_status: 200
                },
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retries: 3,
                start_period: Duration::ZERO,
            }
        );
        let h = ok("ports: [5432, \"53:53/udp\"]\nhealth_check:\n  tcp: {}\n  interval: 2s\n  start_period: 0").health_check.unwrap();
        assert_eq!(h.probe, HealthProbe::Tcp { port: 5432 });
        assert_eq!(
            h.timeout,
            Duration::from_secs(1),
            "half of a short interval"
        );
        let h = ok(
            "health_check:\n  exec: pg_isready\n  retries: 5\n  timeout: 500ms\n  start_period: 1m",
        )
        .health_check
        .unwrap();
        assert_eq!(
            h.probe,
            HealthProbe::Exec {
                command: vec!["sh".into(), "-c".into(), "pg_isready".into()]
            }
        );
        assert_eq!(
            (h.retries, h.timeout, h.start_period),
            (5, Duration::from_millis(500), Duration::from_secs(60))
        );
        let h = ok("health_check:\n  exec: [pg_isready, -U, pg]\n  http: ~")
            .health_check
            .unwrap();
        assert_eq!(
            h.probe,
            HealthProbe::Exec {
                command: vec!["pg_isready".into(), "-U".into(), "pg".into()]
            }
        );
        let h = ok("health_check:\n  http: {path: /up?deep=1, port: 9000, expected_status: 204}")
            .health_check
            .unwrap();
        assert_eq!(
            h.probe,
            HealthProbe::Http {
                path: "/up?deep=1".into(),
                port: 9000,
                expected_status: 204
            }
        );
        let needs_port =
            "required unless the service declares exactly one tcp port, write e.g. port: 8080";
        check_errors(&[
            (
                "health_check: {}",
                &[
                    "spec.health_check: give one probe: http, tcp or exec, e.g. http: {path: /healthz, port: 8080}",
                ],
            ),
            (
                "health_check:\n  http: {port: 80}\n  tcp: {port: 80}",
                &["spec.health_check: give only one probe, found http and tcp"],
            ),
            (
                "health_check:\n  http: {path: healthz, port: 80}",
                &[
                    r#"spec.health_check.http.path: "healthz" is not a URL path, write e.g. /healthz"#,
                ],
            ),
            (
                "health_check:\n  http: {port: 70000}",
                &[
                    "spec.health_check.http.port: 70000 is out of range, write a port from 1 to 65535",
                ],
            ),
            (
                "health_check:\n  http: {path: /}",
                &[&format!("spec.health_check.http.port: {needs_port}")],
            ),
            (
                "ports: [\"8080:80\", \"9090:90\"]\nhealth_check:\n  http: {path: /}",
                &[&format!("spec.health_check.http.port: {needs_port}")],
            ),
            (
                "ports: [\"53:53/udp\"]\nhealth_check:\n  tcp: {}",
                &[&format!("spec.health_check.tcp.port: {needs_port}")],
            ),
            (
                "health_check:\n  http: {port: 80, expected_status: 99}",
                &[
                    "spec.health_check.http.expected_status: 99 is not an HTTP status, write 100 to 599, e.g. 200",
                ],
            ),
            (
                "health_check:\n  http: {port: 80, expected_status: 600}",
                &[
                    "spec.health_check.http.expected_status: 600 is not an HTTP status, write 100 to 599, e.g. 200",
                ],
            ),
            (
                "health_check:\n  exec: []",
                &[
                    "spec.health_check.exec: is empty, write a command, e.g. [pg_isready, -U, postgres]",
                ],
            ),
            (
                "health_check:\n  exec: ' '",
                &[
                    "spec.health_check.exec: is empty, write a command, e.g. [pg_isready, -U, postgres]",
                ],
            ),
            (
                "health_check:\n  exec: true\n  interval: 500ms",
                &[
                    "spec.health_check.exec: expected a list of strings, or one string for sh -c, found true",
                    "spec.health_check.interval: 500ms is shorter than 1s, write e.g. 10s",
                ],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  timeout: 10s",
                &[
                    "spec.health_check.timeout: 10s is not shorter than interval (10s), write e.g. 5s",
                ],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  timeout: 0s",
                &["spec.health_check.timeout: 0s is no time to answer, write e.g. 5s"],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  interval: 10",
                &["spec.health_check.interval: 10 has no unit, write e.g. 10s"],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  interval: soon",
                &[
                    r#"spec.health_check.interval: "soon" is not a duration, write e.g. 10s, 1m30s or 500ms"#,
                ],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  start_period: [1]",
                &[
                    "spec.health_check.start_period: expected a duration like 10s or 1m30s, found a list",
                ],
            ),
            (
                "health_check:\n  tcp: {port: 1}\n  retries: 0",
                &["spec.health_check.retries: 0 is out of range, write at least 1, e.g. 3"],
            ),
        ]);
    }

    #[test]
    fn pre_deploy_backup_names_a_policy() {
        assert_eq!(ok("name: web").pre_deploy_backup, None);
        assert_eq!(
            ok("pre_deploy_backup: crm-db").pre_deploy_backup.as_deref(),
            Some("crm-db")
        );
        assert_eq!(ok("pre_deploy_backup: ~").pre_deploy_backup, None);
        let toml = "name = \"web\"\nimage = \"nginx\"\npre_deploy_backup = \"crm-db\"\n";
        assert_eq!(
            parse(toml, Format::Toml)
                .unwrap()
                .pre_deploy_backup
                .as_deref(),
            Some("crm-db")
        );
        let help = "use 1-63 lowercase letters, digits and '-', starting with a letter, \
                    e.g. crm-db (see `argosy backup policy list`)";
        check_errors(&[
            (
                "pre_deploy_backup: CRM_DB",
                &[&format!(
                    r#"spec.pre_deploy_backup: "CRM_DB" is not a backup policy name, {help}"#
                )],
            ),
            (
                "pre_deploy_backup: ''",
                &[&format!(
                    r#"spec.pre_deploy_backup: "" is not a backup policy name, {help}"#
                )],
            ),
            (
                "pre_deploy_backup: [crm-db]",
                &["spec.pre_deploy_backup: expected a string, found a list"],
            ),
            (
                "backup: crm-db",
                &["spec.backup: unknown field, did you mean pre_deploy_backup?"],
            ),
        ]);
        // Stored revisions written before the field existed still read.
        let mut json = serde_json::to_value(ok("name: web")).unwrap();
        json.as_object_mut().unwrap().remove("pre_deploy_backup");
        let old: ServiceSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old.pre_deploy_backup, None);
    }

    fn route_of(snippet: &str) -> Route {
        ok(snippet)
            .route
            .unwrap_or_else(|| panic!("{snippet}\nhas no route"))
    }

    #[test]
    fn routes_get_their_defaults() {
        assert_eq!(ok("name: web").route, None);
        assert_eq!(ok("route: ~").route, None, "null is leaving it out");
        let minimal = Route {
            hostnames: vec!["web.example.com".into()],
            paths: vec!["/".into()],
            port: 8080,
            tls: None,
            regions: RouteRegions::Nearest,
            drain: DEFAULT_DRAIN,
        };
        assert_eq!(
            route_of("route:\n  hostnames: [web.example.com]\n  port: 8080"),
            minimal
        );
        assert_eq!(DEFAULT_DRAIN, Duration::from_secs(5));
        // The port is the one tcp container port when there is exactly one.
        assert_eq!(
            route_of(
                "ports: [\"18080:8080\", \"53:53/udp\"]\nroute:\n  hostnames: [web.example.com]"
            ),
            minimal
        );
        assert_eq!(
            route_of("ports: [8080, 8080]\nroute:\n  hostnames: [web.example.com]").port,
            8080
        );
        // Null is the same as leaving a field out.
        assert_eq!(
            route_of(
                "route:\n  hostnames: [web.example.com]\n  port: 8080\n  paths: ~\n  tls: ~\n  regions: ~\n  drain: ~"
            ),
            minimal
        );
        // Written defaults give the same route.
        assert_eq!(
            route_of(
                "route:\n  hostnames: [web.example.com]\n  port: 8080\n  paths: [/]\n  regions: nearest\n  drain: 5s"
            ),
            minimal
        );
    }

    #[test]
    fn routes_take_every_option() {
        use crate::deploy::model::SecretVersion::{Latest, Pinned};
        let route = route_of(
            r#"
ports: [8080]
route:
  hostnames: [Web.Example.com., "*.web.example.com", api.example.com]
  paths: [/, /api/, /static]
  port: 9000
  tls:
    certificate: web/tls@2
  regions: {primary: eu-west, failover: [us-east, ap-south]}
  drain: 0s
"#,
        );
        assert_eq!(
            route,
            Route {
                hostnames: vec![
                    "web.example.com".into(),
                    "*.web.example.com".into(),
                    "api.example.com".into()
                ],
                paths: vec!["/".into(), "/api".into(), "/static".into()],
                port: 9000,
                tls: Some(RouteTls::Certificate(SecretRef {
                    name: "web/tls".into(),
                    version: Pinned(2),
                })),
                regions: RouteRegions::Primary {
                    primary: "eu-west".into(),
                    failover: vec!["us-east".into(), "ap-south".into()],
                },
                drain: Duration::ZERO,
            }
        );
        let base = "route:\n  hostnames: [web.example.com]\n  port: 80\n";
        let with = |rest: &str| route_of(&format!("{base}{rest}"));
        assert_eq!(
            with("  tls: {certificate: web/tls}").tls,
            Some(RouteTls::Certificate(SecretRef {
                name: "web/tls".into(),
                version: Latest,
            }))
        );
        assert_eq!(
            with("  tls: {self_signed: true}").tls,
            Some(RouteTls::SelfSigned)
        );
        assert_eq!(
            with("  regions: {primary: eu-west}").regions,
            RouteRegions::Primary {
                primary: "eu-west".into(),
                failover: vec![],
            }
        );
        assert_eq!(
            with("  regions: {primary: eu-west, failover: []}").regions,
            with("  regions: {primary: eu-west}").regions
        );
        assert_eq!(
            with("  regions: {weights: {eu-west: 3, us-east: 1}}").regions,
            RouteRegions::Weighted(BTreeMap::from([
                ("eu-west".into(), 3),
                ("us-east".into(), 1)
            ]))
        );
        assert_eq!(with("  drain: 1m30s").drain, Duration::from_secs(90));
        assert_eq!(with("  drain: 0").drain, Duration::ZERO);
        // A port `ports` also lists as udp is fine while it lists it as tcp.
        assert_eq!(
            route_of(
                "ports: [\"53:53/udp\", 53]\nroute:\n  hostnames: [dns.example.com]\n  port: 53"
            )
            .port,
            53
        );
        // A port `ports` does not list is published for the ingresses.
        assert_eq!(
            route_of("ports: [8080]\nroute:\n  hostnames: [web.example.com]\n  port: 9000").port,
            9000
        );
    }

    #[test]
    fn route_boundaries_are_accepted() {
        let base = "route:\n  hostnames: [web.example.com]\n";
        for rest in [
            "  port: 1",
            "  port: 65535",
            "  port: 80\n  drain: 10m",
            "  port: 80\n  drain: 0s",
            "  port: 80\n  regions: {weights: {eu-west: 1}}",
            "  port: 80\n  regions: {weights: {eu-west: 1000000, us-east: 1}}",
            "  port: 80\n  regions: {primary: a.b_c/d-1}",
        ] {
            ok(&format!("{base}{rest}"));
        }
        assert_eq!(
            route_of("route:\n  hostnames: [localhost, '*.a', web.example.com]\n  port: 80")
                .hostnames,
            ["localhost", "*.a", "web.example.com"]
        );
    }

    #[test]
    fn routes_in_toml() {
        let toml = r#"
name = "web"
image = "nginx"
ports = [8080]

[route]
hostnames = ["web.example.com", "*.web.example.com"]
drain = "30s"

[route.tls]
self_signed = true

[route.regions.weights]
eu-west = 3
us-east = 1
"#;
        let yaml = ok(r#"
ports: [8080]
route:
  hostnames: [web.example.com, "*.web.example.com"]
  drain: 30s
  tls: {self_signed: true}
  regions: {weights: {eu-west: 3, us-east: 1}}
"#);
        assert_eq!(
            parse(toml, Format::Toml).unwrap_or_else(|e| panic!("{e}")),
            yaml
        );
        let toml = "name = \"web\"\nimage = \"nginx\"\n[route]\nhostnames = [\"web.example.com\"]\nport = 80\nregions = { primary = \"eu-west\", failover = [\"us-east\"] }\n";
        assert_eq!(
            parse(toml, Format::Toml).unwrap().route.unwrap().regions,
            RouteRegions::Primary {
                primary: "eu-west".into(),
                failover: vec!["us-east".into()],
            }
        );
        let text = r#"
name = "web"
image = "nginx"

[route]
hostnames = ["web.example.com", "WEB.example.com"]
port = "80"
drain = "1h"
regions = "eu-west"

[route.tls]
certificate = "web/tls"
self_signed = false
"#;
        expect![[r#"
            spec.route.drain: 1h is longer than the 10m a drain may last, write e.g. 5s
            spec.route.hostnames[1]: "WEB.example.com" is the same hostname as spec.route.hostnames[0] (web.example.com), remove one
            spec.route.port: expected a whole number, found "80"
            spec.route.regions: "eu-west" is not a region policy, write nearest, {primary: eu-west, failover: [us-east]} or {weights: {eu-west: 3, us-east: 1}}
            spec.route.tls: give either certificate or self_signed, not both"#]]
        .assert_eq(&parse(text, Format::Toml).unwrap_err().to_string());
    }

    #[test]
    fn routes_round_trip_through_json() {
        let with_route = [
            parse(example(), Format::Yaml).unwrap(),
            ok(
                "ports: [80]\nroute:\n  hostnames: [a.example.com]\n  tls: {self_signed: true}\n  regions: {weights: {eu-west: 3, us-east: 1}}\n  drain: 250ms",
            ),
            ok(
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: eu-west, failover: [us-east]}",
            ),
        ];
        for spec in with_route {
            assert!(spec.route.is_some());
            let json = serde_json::to_string(&spec).unwrap();
            let back: ServiceSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "{json}");
        }
        // Without a route the stored JSON has no route field, and stored
        // revisions written before the field existed still read.
        let json = serde_json::to_value(ok("name: web")).unwrap();
        assert!(json.get("route").is_none(), "{json}");
        let old: ServiceSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old.route, None);
    }

    #[test]
    fn route_rules() {
        let not_dns = |h: &str| {
            format!(
                "hostname {h:?} is not a DNS name: use lowercase letters, digits and '-' in labels \
                 of 1 to 63 characters separated by dots (a leading '*.' is allowed)"
            )
        };
        let not_path =
            |p: &str| format!("path {p:?} must start with '/' and hold no spaces, '?' or '#'");
        let needs_port =
            "required unless the service declares exactly one tcp port, write e.g. port: 8080";
        let bad_region = |r: &str| {
            format!(
                "{r:?} is not a valid region name, use 1-63 letters, digits, '-', '_', '.' or '/', e.g. eu-west"
            )
        };
        let policy_help = "write nearest, {primary: eu-west, failover: [us-east]} or \
                           {weights: {eu-west: 3, us-east: 1}}";
        let rows: Vec<(&str, Vec<String>)> = vec![
            // hostnames
            (
                "route:\n  port: 80",
                vec!["spec.route.hostnames: required, write e.g. hostnames: [web.example.com]".into()],
            ),
            (
                "route:\n  hostnames: []\n  port: 80",
                vec!["spec.route.hostnames: is empty, write at least one hostname, e.g. [web.example.com]".into()],
            ),
            (
                "route:\n  hostnames: web.example.com\n  port: 80",
                vec![r#"spec.route.hostnames: expected a list of hostnames, e.g. [web.example.com, "*.web.example.com"], found "web.example.com""#.into()],
            ),
            (
                "route:\n  hostnames: [web.example.com, web_1.example.com, 5, '*.*.example.com', '']\n  port: 80",
                vec![
                    format!("spec.route.hostnames[1]: {}", not_dns("web_1.example.com")),
                    "spec.route.hostnames[2]: expected a hostname, found 5".into(),
                    format!("spec.route.hostnames[3]: {}", not_dns("*.*.example.com")),
                    format!("spec.route.hostnames[4]: {}", not_dns("")),
                ],
            ),
            (
                "route:\n  hostnames: [web.example.com, WEB.Example.com., web.example.com]\n  port: 80",
                vec![
                    r#"spec.route.hostnames[1]: "WEB.Example.com." is the same hostname as spec.route.hostnames[0] (web.example.com), remove one"#.into(),
                    "spec.route.hostnames[2]: web.example.com is already listed at spec.route.hostnames[0], remove one".into(),
                ],
            ),
            // paths
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  paths: [/api, api, /api/, '/a b', /a?b, /]",
                vec![
                    format!("spec.route.paths[1]: {}", not_path("api")),
                    r#"spec.route.paths[2]: "/api/" is the same path as spec.route.paths[0] (/api), remove one"#.into(),
                    format!("spec.route.paths[3]: {}", not_path("/a b")),
                    format!("spec.route.paths[4]: {}", not_path("/a?b")),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  paths: [/, /, '//']",
                vec![
                    "spec.route.paths[1]: / is already listed at spec.route.paths[0], remove one".into(),
                    r#"spec.route.paths[2]: "//" is the same path as spec.route.paths[0] (/), remove one"#.into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  paths: []",
                vec!["spec.route.paths: is empty, write at least one path prefix, e.g. [/api], or leave paths out for every path".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  paths: /api",
                vec![r#"spec.route.paths: expected a list of path prefixes, e.g. [/, /api], found "/api""#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  paths: [[/]]",
                vec!["spec.route.paths[0]: expected a path, found a list".into()],
            ),
            // port
            (
                "route:\n  hostnames: [a.example.com]",
                vec![format!("spec.route.port: {needs_port}")],
            ),
            (
                "ports: [\"8080:80\", \"9090:90\"]\nroute:\n  hostnames: [a.example.com]",
                vec![format!("spec.route.port: {needs_port}")],
            ),
            (
                "ports: [\"53:53/udp\"]\nroute:\n  hostnames: [a.example.com]",
                vec![format!("spec.route.port: {needs_port}")],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 0",
                vec!["spec.route.port: 0 is out of range, write a port from 1 to 65535".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 65536",
                vec!["spec.route.port: 65536 is out of range, write a port from 1 to 65535".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: '80'",
                vec![r#"spec.route.port: expected a whole number, found "80""#.into()],
            ),
            (
                "ports: [\"53:53/udp\", 80]\nroute:\n  hostnames: [a.example.com]\n  port: 53",
                vec![r#"spec.route.port: container port 53 is udp in ports, and requests reach it over tcp: choose a tcp port, or add "53/tcp" to ports"#.into()],
            ),
            // tls
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {certificate: web/tls, self_signed: true}",
                vec!["spec.route.tls: give either certificate or self_signed, not both".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {certificate: web/tls, self_signed: false}",
                vec!["spec.route.tls: give either certificate or self_signed, not both".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {self_signed: false}",
                vec!["spec.route.tls.self_signed: false leaves tls without a certificate: remove tls for plain HTTP, or give a secret, e.g. certificate: web/tls".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {}",
                vec!["spec.route.tls: give a certificate (a secret holding the PEM chain and key, e.g. certificate: web/tls) or self_signed: true, or leave tls out for plain HTTP".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {certificate: Web/TLS}",
                vec![r#"spec.route.tls.certificate: secret name "Web/TLS" is not valid: it holds a character other than a-z, 0-9, '-', '_', '.' and '/'; use 1–128 lowercase letters, digits, '-', '_', '.' and '/' (as in crm/db-password)"#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {certificate: web/tls@0}",
                vec![r#"spec.route.tls.certificate: "web/tls@0" does not pin a version, write a version number from 1 after '@', e.g. web/tls@3, or leave '@' out to follow the latest version"#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {self_signed: sure}",
                vec![
                    r#"spec.route.tls.self_signed: expected true or false, found "sure""#.into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: web/tls",
                vec![r#"spec.route.tls: expected a map like {certificate: web/tls} or {self_signed: true}, found "web/tls""#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {certificate: 5}",
                vec!["spec.route.tls.certificate: expected a string, found 5".into()],
            ),
            // regions
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: eu-west",
                vec![format!(r#"spec.route.regions: "eu-west" is not a region policy, {policy_help}"#)],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: Nearest",
                vec![format!(r#"spec.route.regions: "Nearest" is not a region policy, {policy_help}"#)],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: [eu-west, us-east]",
                vec![format!("spec.route.regions: a list is not a region policy, {policy_help}")],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {}",
                vec!["spec.route.regions: give primary (and failover) or weights, e.g. {primary: eu-west, failover: [us-east]}, or write regions: nearest".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {failover: [us-east]}",
                vec!["spec.route.regions.primary: required with failover, write e.g. primary: eu-west".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: eu-west, weights: {eu-west: 1}}",
                vec!["spec.route.regions: give either primary (and failover) or weights, not both".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {failover: [a], weights: {eu-west: 1}}",
                vec!["spec.route.regions: give either primary (and failover) or weights, not both".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: 'eu west'}",
                vec![format!("spec.route.regions.primary: {}", bad_region("eu west"))],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: eu-west, failover: [us-east, eu-west, us-east, 'a b']}",
                vec![
                    "spec.route.regions.failover[1]: eu-west is the primary region, remove it from failover".into(),
                    "spec.route.regions.failover[2]: us-east is already listed at spec.route.regions.failover[0], remove one".into(),
                    format!("spec.route.regions.failover[3]: {}", bad_region("a b")),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: eu-west, failover: us-east}",
                vec![r#"spec.route.regions.failover: expected a list, found "us-east""#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {weights: {}}",
                vec!["spec.route.regions.weights: is empty, give each region that serves a weight, e.g. {eu-west: 3, us-east: 1}".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {weights: {eu-west: 0, us-east: -2, ap-south: 1000001, 'a b': 1}}",
                vec![
                    "spec.route.regions.weights.eu-west: 0 is out of range, write at least 1 (leave the region out to send it nothing)".into(),
                    "spec.route.regions.weights.us-east: -2 is out of range, write at least 1 (leave the region out to send it nothing)".into(),
                    "spec.route.regions.weights.ap-south: 1000001 is out of range, write at most 1000000 (weights are relative: 3 and 1 send three quarters and one quarter)".into(),
                    format!(r#"spec.route.regions.weights."a b": {}"#, bad_region("a b")),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {weights: {eu-west: x}}",
                vec![r#"spec.route.regions.weights.eu-west: expected a whole number, found "x""#.into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {weights: [eu-west]}",
                vec!["spec.route.regions.weights: expected a map, found a list".into()],
            ),
            // drain
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  drain: 10m1s",
                vec!["spec.route.drain: 10m 1s is longer than the 10m a drain may last, write e.g. 5s".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  drain: 5",
                vec!["spec.route.drain: 5 has no unit, write e.g. 5s".into()],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  drain: soon",
                vec![r#"spec.route.drain: "soon" is not a duration, write e.g. 10s, 1m30s or 500ms"#.into()],
            ),
            // shape
            (
                "route: [a.example.com]",
                vec!["spec.route: expected a map, found a list".into()],
            ),
            (
                "route: {}",
                vec![
                    "spec.route.hostnames: required, write e.g. hostnames: [web.example.com]".into(),
                    format!("spec.route.port: {needs_port}"),
                ],
            ),
            (
                "ingress:\n  hostnames: [a.example.com]",
                vec!["spec.ingress: unknown field, did you mean route?".into()],
            ),
            (
                "routes:\n  hostnames: [a.example.com]",
                vec!["spec.routes: unknown field, did you mean route?".into()],
            ),
            (
                "hostnames: [a.example.com]",
                vec!["spec.hostnames: unknown field, did you mean route.hostnames?".into()],
            ),
            (
                "route:\n  hostname: a.example.com\n  port: 80",
                vec![
                    "spec.route.hostnames: required, write e.g. hostnames: [web.example.com]".into(),
                    "spec.route.hostname: unknown field, did you mean hostnames?".into(),
                ],
            ),
            (
                "route:\n  hosts: [a.example.com]\n  port: 80",
                vec![
                    "spec.route.hostnames: required, write e.g. hostnames: [web.example.com]".into(),
                    "spec.route.hosts: unknown field, did you mean hostnames?".into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  path: /api\n  drain_timeout: 1s\n  weights: {a: 1}",
                vec![
                    "spec.route.path: unknown field, did you mean paths?".into(),
                    "spec.route.drain_timeout: unknown field, did you mean drain?".into(),
                    "spec.route.weights: unknown field, expected one of hostnames, paths, port, tls, regions, drain".into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  target_port: 80\n  certificate: web/tls",
                vec![
                    format!("spec.route.port: {needs_port}"),
                    "spec.route.target_port: unknown field, did you mean port?".into(),
                    "spec.route.certificate: unknown field, did you mean tls.certificate?".into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  tls: {cert: web/tls}",
                vec![
                    "spec.route.tls: give a certificate (a secret holding the PEM chain and key, e.g. certificate: web/tls) or self_signed: true, or leave tls out for plain HTTP".into(),
                    "spec.route.tls.cert: unknown field, did you mean certificate?".into(),
                ],
            ),
            (
                "route:\n  hostnames: [a.example.com]\n  port: 80\n  regions: {primary: eu-west, failovers: [us-east]}",
                vec!["spec.route.regions.failovers: unknown field, did you mean failover?".into()],
            ),
            // Every mistake at once, in document order.
            (
                "route:\n  drain: 1h\n  hostnames: [A_B]\n  tls: {}\n  port: 0",
                vec![
                    "spec.route.drain: 1h is longer than the 10m a drain may last, write e.g. 5s".into(),
                    format!("spec.route.hostnames[0]: {}", not_dns("A_B")),
                    "spec.route.tls: give a certificate (a secret holding the PEM chain and key, e.g. certificate: web/tls) or self_signed: true, or leave tls out for plain HTTP".into(),
                    "spec.route.port: 0 is out of range, write a port from 1 to 65535".into(),
                ],
            ),
        ];
        let rows: Vec<(&str, Vec<&str>)> = rows
            .iter()
            .map(|(s, e)| (*s, e.iter().map(String::as_str).collect()))
            .collect();
        let rows: Vec<(&str, &[&str])> = rows.iter().map(|(s, e)| (*s, e.as_slice())).collect();
        check_errors(&rows);
    }

    #[test]
    fn restart_policies() {
        for (written, want) in [
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::Always),
            ("no", RestartPolicy::Never),
            ("\"no\"", RestartPolicy::Never),
            ("never", RestartPolicy::Never),
            ("false", RestartPolicy::Never),
            ("on-failure", RestartPolicy::OnFailure { max_retries: None }),
            (
                "On-Failure:5",
                RestartPolicy::OnFailure {
                    max_retries: Some(5),
                },
            ),
        ] {
            assert_eq!(
                ok(&format!("restart: {written}")).restart,
                want,
                "{written}"
            );
        }
        let help = "write always, on-failure, on-failure:5 or no";
        check_errors(&[
            (
                "restart: sometimes",
                &[&format!(
                    r#"spec.restart: "sometimes" is not a restart policy, {help}"#
                )],
            ),
            (
                "restart: yes",
                &[&format!(
                    "spec.restart: true is not a restart policy, {help}"
                )],
            ),
            (
                "restart: 5",
                &[&format!("spec.restart: 5 is not a restart policy, {help}")],
            ),
            (
                "restart: on-failure:0",
                &[
                    r#"spec.restart: "on-failure:0" needs a whole number of retries from 1, e.g. on-failure:5"#,
                ],
            ),
            (
                "restart: on-failure:x",
                &[
                    r#"spec.restart: "on-failure:x" needs a whole number of retries from 1, e.g. on-failure:5"#,
                ],
            ),
        ]);
    }

    #[test]
    fn update_strategies() {
        let rolling = |s: &str| match ok(s).update {
            UpdateStrategy::Rolling(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(rolling("update: {}"), Rolling::default());
        let r = rolling("update:\n  max_parallel: 3");
        assert_eq!(
            (r.max_surge, r.max_unavailable),
            (3, 0),
            "max_parallel is max_surge"
        );
        let r = rolling("update:\n  max_unavailable: 2");
        assert_eq!((r.max_surge, r.max_unavailable), (1, 2));
        let r = rolling(
            "update:\n  max_surge: 0\n  max_unavailable: 1\n  auto_revert: false\n  min_healthy_time: 0s\n  healthy_deadline: 1m\n  progress_deadline: 1m",
        );
        assert_eq!(
            r,
            Rolling {
                max_surge: 0,
                max_unavailable: 1,
                min_healthy_time: Duration::ZERO,
                healthy_deadline: Duration::from_secs(60),
                progress_deadline: Duration::from_secs(60),
                auto_revert: false,
            }
        );
        assert_eq!(
            ok("update:\n  strategy: blue_green").update,
            UpdateStrategy::BlueGreen(BlueGreen {
                min_healthy_time: Duration::from_secs(10),
                healthy_deadline: Duration::from_secs(300),
                auto_promote: false,
                keep_old_for: Duration::from_secs(600),
                auto_revert: true,
            })
        );
        assert_eq!(
            ok("update:\n  strategy: blue_green\n  auto_promote: true\n  keep_old_for: 0s").update,
            UpdateStrategy::BlueGreen(BlueGreen {
                min_healthy_time: Duration::from_secs(10),
                healthy_deadline: Duration::from_secs(300),
                auto_promote: true,
                keep_old_for: Duration::ZERO,
                auto_revert: true,
            })
        );
        assert_eq!(
            ok("update:\n  strategy: canary").update,
            UpdateStrategy::Canary(Canary {
                canaries: 1,
                steps: vec![25, 50, 100],
                min_healthy_time: Duration::from_secs(10),
                healthy_deadline: Duration::from_secs(300),
                auto_promote: false,
                auto_revert: true,
            })
        );
        match ok("replicas: 10\nupdate:\n  strategy: canary\n  canaries: 2\n  steps: [10, 100]\n  auto_promote: true").update {
            UpdateStrategy::Canary(c) => {
                assert_eq!((c.canaries, c.steps, c.auto_promote), (2, vec![10, 100], true));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok("replicas: 0\nupdate:\n  strategy: canary\n  canaries: 3").update,
            UpdateStrategy::Canary(_)
        ));
        check_errors(&[
            (
                "update:\n  strategy: bluegreen",
                &[
                    r#"spec.update.strategy: "bluegreen" is not a strategy, write rolling, blue_green or canary"#,
                ],
            ),
            (
                "update:\n  strategy: rolling\n  canaries: 2",
                &[
                    "spec.update.canaries: only used by strategy canary, remove it or set strategy: canary",
                ],
            ),
            (
                "update:\n  keep_old_for: 1m",
                &[
                    "spec.update.keep_old_for: only used by strategy blue_green, remove it or set strategy: blue_green",
                ],
            ),
            (
                "update:\n  auto_promote: true",
                &[
                    "spec.update.auto_promote: only used by strategies blue_green and canary, remove it",
                ],
            ),
            (
                "update:\n  strategy: canary\n  max_parallel: 2\n  progress_deadline: 1h",
                &[
                    "spec.update.max_parallel: only used by strategy rolling, remove it or set strategy: rolling",
                    "spec.update.progress_deadline: only used by strategy rolling, remove it or set strategy: rolling",
                ],
            ),
            (
                "update:\n  strategy: blue_green\n  max_surge: 2\n  steps: [100]",
                &[
                    "spec.update.max_surge: only used by strategy rolling, remove it or set strategy: rolling",
                    "spec.update.steps: only used by strategy canary, remove it or set strategy: canary",
                ],
            ),
            (
                "update:\n  max_parallel: 2\n  max_surge: 1",
                &[
                    "spec.update.max_parallel: give either max_parallel or max_surge/max_unavailable, not both",
                ],
            ),
            (
                "update:\n  max_parallel: 0",
                &["spec.update.max_parallel: 0 is out of range, write 1 to 1000"],
            ),
            (
                "update:\n  max_surge: 0",
                &[
                    "spec.update: max_surge and max_unavailable are both 0, so nothing could be replaced: set max_surge: 1 or max_unavailable: 1",
                ],
            ),
            (
                "update:\n  max_unavailable: -1",
                &["spec.update.max_unavailable: -1 is out of range, write 0 to 1000"],
            ),
            (
                "update:\n  max_surge: 1001",
                &["spec.update.max_surge: 1001 is out of range, write 0 to 1000"],
            ),
            (
                "update:\n  healthy_deadline: 5s",
                &[
                    "spec.update.healthy_deadline: 5s is not longer than min_healthy_time (10s), make it longer",
                ],
            ),
            (
                "update:\n  min_healthy_time: 5m",
                &[
                    "spec.update.healthy_deadline: 5m is not longer than min_healthy_time (5m), make it longer",
                ],
            ),
            (
                "update:\n  progress_deadline: 1m",
                &[
                    "spec.update.progress_deadline: 1m is shorter than healthy_deadline (5m), make it at least that",
                ],
            ),
            (
                "update:\n  min_healthy_time: 10",
                &["spec.update.min_healthy_time: 10 has no unit, write e.g. 10s"],
            ),
            (
                "update:\n  strategy: blue_green\n  keep_old_for: forever",
                &[
                    r#"spec.update.keep_old_for: "forever" is not a duration, write e.g. 10s, 1m30s or 500ms"#,
                ],
            ),
            (
                "update:\n  strategy: canary\n  canaries: 0",
                &["spec.update.canaries: 0 is out of range, write at least 1, e.g. 1"],
            ),
            (
                "replicas: 2\nupdate:\n  strategy: canary\n  canaries: 3",
                &["spec.update.canaries: 3 is more than replicas (2), write at most 2"],
            ),
            (
                "update:\n  strategy: canary\n  steps: []",
                &["spec.update.steps: is empty, write percents ending at 100, e.g. [25, 50, 100]"],
            ),
            (
                "update:\n  strategy: canary\n  steps: [50, 25, 100]",
                &["spec.update.steps[1]: 25 does not go up from the step before (50)"],
            ),
            (
                "update:\n  strategy: canary\n  steps: [50, 50, 100]",
                &["spec.update.steps[1]: 50 does not go up from the step before (50)"],
            ),
            (
                "update:\n  strategy: canary\n  steps: [25, 50]",
                &["spec.update.steps: must end at 100, e.g. [25, 50, 100]"],
            ),
            (
                "update:\n  strategy: canary\n  steps: [0, 100]",
                &["spec.update.steps[0]: 0 is not a percent from 1 to 100"],
            ),
            (
                "update:\n  strategy: canary\n  steps: [25, 150]",
                &[
                    "spec.update.steps: must end at 100, e.g. [25, 50, 100]",
                    "spec.update.steps[1]: 150 is not a percent from 1 to 100",
                ],
            ),
        ]);
    }

    /// The edges of every range are inside it.
    #[test]
    fn boundaries_are_accepted() {
        let long_name = format!("name: {}", "a".repeat(63));
        for snippet in [
            "name: a",
            "name: a-1",
            long_name.as_str(),
            "env: {_: x}",
            "replicas: 0\nplacement:\n  regions: {eu-west: 0}",
            "resources:\n  memory: 6MiB\n  memory_swap: 6MiB\n  cpu: 1m\n  pids: 1",
            "health_check:\n  tcp: {port: 1}\n  interval: 1s\n  timeout: 999ms\n  retries: 1",
            "health_check:\n  http: {port: 65535, expected_status: 100}",
            "health_check:\n  http: {port: 1, expected_status: 599}",
            "update:\n  min_healthy_time: 4m59s",
            "update:\n  progress_deadline: 5m",
            "update:\n  max_surge: 1000\n  max_unavailable: 1000",
            "update:\n  max_parallel: 1000",
            "replicas: 2\nupdate:\n  strategy: canary\n  canaries: 2\n  steps: [100]",
            "update:\n  strategy: canary\n  steps: [1, 2, 100]",
            "restart: on-failure:1",
        ] {
            ok(snippet);
        }
    }

    #[test]
    fn yaml_aliases_work_and_bombs_are_refused() {
        let r = ok("resources: {memory: &m 256MiB, memory_swap: *m}").resources;
        assert_eq!(r.memory_swap_bytes, Some(r.memory_bytes));
        let spec = ok("x-common: &env {A: '1'}\nenv: *env");
        assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            yaml_errors("resources:\n  x-a: 1"),
            ["spec.resources.x-a: unknown field, expected one of cpu, memory, memory_swap, pids"],
            "x- fields are for the top level only"
        );
        // A billion laughs: nine levels of ten aliases each.
        let mut bomb = String::from(
            "name: web\nimage: nginx\nenv:\n  A: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        );
        for level in 1..10 {
            let prev = format!("*a{}", level - 1);
            let refs = [prev.as_str(); 10].join(", ");
            bomb.push_str(&format!("  B{level}: &a{level} [{refs}]\n"));
        }
        assert_eq!(
            parse(&bomb, Format::Yaml).unwrap_err().to_string(),
            "spec: the YAML expands to more values or deeper nesting than a spec needs (aliases?), \
             write it out plainly"
        );
        let deep = format!(
            "name: web\nimage: nginx\nenv: {}{}",
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(parse(&deep, Format::Yaml).is_err());
    }
}
