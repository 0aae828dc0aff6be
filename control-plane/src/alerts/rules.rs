//! Alert rules: what a rule watches (a signal), when that counts as a
//! problem (a comparison with a threshold held for a while, or an event),
//! how bad it is (severity) and where it applies (a selector by region,
//! host labels, host and service). Also the built-in rules every control
//! plane starts with, the rule file format, and tuning. Pure: no I/O.

use crate::store::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Label names and values identifying an alert (sorted, so equal sets
/// compare and hash equal).
pub type Labels = BTreeMap<String, String>;

/// Label names an alert carries itself; host labels with these names are
/// not copied onto alerts.
pub const RESERVED_LABELS: [&str; 9] = [
    "alertname",
    "severity",
    "host",
    "hostname",
    "region",
    "service",
    "allocation",
    "deployment",
    "policy",
];

/// How bad a firing alert is. Ordered: `Info < Warning < Critical`, so a
/// channel's minimum severity is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not info, warning or critical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: use info, warning or critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

/// How a value is compared with a rule's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Comparison {
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }

    /// Whether `value` breaches `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }

    /// Of two breaching values for the same alert, the worse one.
    pub fn worse(self, a: f64, b: f64) -> f64 {
        match self {
            Comparison::Above | Comparison::AtLeast => a.max(b),
            Comparison::Below | Comparison::AtMost => a.min(b),
        }
    }
}

impl FromStr for Comparison {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            ">" => Ok(Comparison::Above),
            ">=" => Ok(Comparison::AtLeast),
            "<" => Ok(Comparison::Below),
            "<=" => Ok(Comparison::AtMost),
            other => Err(format!("unknown comparison {other:?}: use >, >=, < or <=")),
        }
    }
}

/// What a rule watches. Host signals give one value per host, allocation
/// signals one per allocation that should be running; events are things
/// that happened (an OOM kill, a failed deployment) rather than levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A metric of the host's latest sample (`cpu`, `memory_percent`, …).
    Host(#[serde(with = "metric_name")] Metric),
    /// Seconds since an offline host was last heard from (0 while online).
    OfflineSeconds,
    /// Days until the host's agent certificate expires.
    CertificateDaysLeft,
    /// 1 while an allocation that should run has failed, exited or fails
    /// its health check; 0 otherwise.
    AllocationUnhealthy,
    /// The restarts of an allocation that has not run healthily for
    /// [`STABLE_RUN_MS`] since; 0 once it has.
    AllocationRestarts,
    /// An allocation's container was killed for exceeding its memory limit.
    OomKill,
    /// A deployment ended failed or reverted.
    DeploymentFailed,
    /// The newest backup of a backup policy failed.
    BackupFailed,
    /// 1 while a backup policy is past its RPO: its newest successful
    /// backup is older than the RPO, or it has none and is older than it.
    BackupOverdue,
    /// The newest verification (a real restore) of a policy's backups failed.
    BackupVerificationFailed,
    /// 1 while some region's ingresses cannot serve a routed service (no
    /// healthy allocation anywhere its route allows: they answer 503);
    /// 0 otherwise.
    RouteUnserved,
}

/// How long an allocation must run healthily before its past restarts stop
/// counting as a restart loop.
pub const STABLE_RUN_MS: i64 = 10 * 60_000;

mod metric_name {
    use crate::store::Metric;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(metric: &Metric, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(metric.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// What kind of thing a signal's values are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Host,
    Allocation,
    Service,
    BackupPolicy,
}

impl Signal {
    /// Every signal name a rule may use, for messages.
    pub const NAMES: &'static str = "cpu, memory (memory_percent), disk (disk_used_percent), \
         load (load1), load5, load15, memory_used, memory_available, swap_used, net_rx, net_tx, \
         uptime, processes, offline_seconds, certificate_days_left, allocation_unhealthy, \
         allocation_restarts, oom_kill, deployment_failed, backup_failed, backup_overdue, \
         backup_verification_failed, route_unserved";

    pub fn name(self) -> &'static str {
        match self {
            Signal::Host(metric) => metric.name(),
            Signal::OfflineSeconds => "offline_seconds",
            Signal::CertificateDaysLeft => "certificate_days_left",
            Signal::AllocationUnhealthy => "allocation_unhealthy",
            Signal::AllocationRestarts => "allocation_restarts",
            Signal::OomKill => "oom_kill",
            Signal::DeploymentFailed => "deployment_failed",
            Signal::BackupFailed => "backup_failed",
            Signal::BackupOverdue => "backup_overdue",
            Signal::BackupVerificationFailed => "backup_verification_failed",
            Signal::RouteUnserved => "route_unserved",
        }
    }

    /// Events fire when they happen and stay firing for the rule's
    /// `keep_firing_for`; they take no comparison, threshold or `for`.
    pub fn is_event(self) -> bool {
        matches!(
            self,
            Signal::OomKill
                | Signal::DeploymentFailed
                | Signal::BackupFailed
                | Signal::BackupVerificationFailed
        )
    }

    pub fn subject(self) -> SubjectKind {
        match self {
            Signal::Host(_) | Signal::OfflineSeconds | Signal::CertificateDaysLeft => {
                SubjectKind::Host
            }
            Signal::AllocationUnhealthy | Signal::AllocationRestarts | Signal::OomKill => {
                SubjectKind::Allocation
            }
            Signal::DeploymentFailed | Signal::RouteUnserved => SubjectKind::Service,
            Signal::BackupFailed | Signal::BackupOverdue | Signal::BackupVerificationFailed => {
                SubjectKind::BackupPolicy
            }
        }
    }

    /// The unit values are shown in.
    pub fn unit(self) -> &'static str {
        match self {
            Signal::Host(metric) => match metric.unit() {
                "percent" => "%",
                "bytes" => "bytes",
                "bytes_per_second" => "bytes/s",
                "seconds" => "s",
                _ => "",
            },
            Signal::OfflineSeconds => "s",
            Signal::CertificateDaysLeft => "days",
            Signal::AllocationRestarts => "restarts",
            Signal::AllocationUnhealthy
            | Signal::OomKill
            | Signal::DeploymentFailed
            | Signal::BackupFailed
            | Signal::BackupOverdue
            | Signal::BackupVerificationFailed
            | Signal::RouteUnserved => "",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Signal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let signal =
            match s {
                "memory" => Signal::Host(Metric::MemoryPercent),
                "disk" => Signal::Host(Metric::DiskUsedPercent),
                "load" => Signal::Host(Metric::Load1),
                "offline_seconds" => Signal::OfflineSeconds,
                "certificate_days_left" => Signal::CertificateDaysLeft,
                "allocation_unhealthy" => Signal::AllocationUnhealthy,
                "allocation_restarts" => Signal::AllocationRestarts,
                "oom_kill" => Signal::OomKill,
                "deployment_failed" => Signal::DeploymentFailed,
                "backup_failed" => Signal::BackupFailed,
                "backup_overdue" => Signal::BackupOverdue,
                "backup_verification_failed" => Signal::BackupVerificationFailed,
                "route_unserved" => Signal::RouteUnserved,
                other => Signal::Host(other.parse().map_err(|_| {
                    format!("unknown metric {other:?}: use one of {}", Signal::NAMES)
                })?),
            };
        Ok(signal)
    }
}

/// Where a rule applies. Empty fields match everything; a field the
/// subject does not have (a region for a deployment) does not match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Host labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A host id or hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For host signals: hosts running an allocation of this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// What a selector is matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject<'a> {
    pub region: Option<&'a str>,
    pub host_id: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub host_labels: Option<&'a BTreeMap<String, String>>,
    /// The services the subject belongs to (a host: those it runs).
    pub services: &'a [String],
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.region.is_none()
            && self.labels.is_empty()
            && self.host.is_none()
            && self.service.is_none()
    }

    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        let region = self
            .region
            .as_deref()
            .is_none_or(|want| subject.region == Some(want));
        let labels = self.labels.is_empty()
            || subject
                .host_labels
                .is_some_and(|have| self.labels.iter().all(|(k, v)| have.get(k) == Some(v)));
        let host = self
            .host
            .as_deref()
            .is_none_or(|want| subject.host_id == Some(want) || subject.hostname == Some(want));
        let service = self
            .service
            .as_deref()
            .is_none_or(|want| subject.services.iter().any(|s| s == want));
        region && labels && host && service
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(region) = &self.region {
            parts.push(format!("region={region}"));
        }
        for (k, v) in &self.labels {
            parts.push(format!("{k}={v}"));
        }
        if let Some(host) = &self.host {
            parts.push(format!("host={host}"));
        }
        if let Some(service) = &self.service {
            parts.push(format!("service={service}"));
        }
        if parts.is_empty() {
            f.write_str("everywhere")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// A validated alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The alert name (`HostCpuHigh`); also the rule's id.
    pub name: String,
    pub signal: Signal,
    /// Unused by event rules.
    pub op: Comparison,
    /// Unused by event rules.
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (0: at once).
    pub for_ms: i64,
    /// How long a firing alert stays firing after its condition stopped
    /// holding (for events: after the event).
    pub keep_firing_for_ms: i64,
    pub severity: Severity,
    #[serde(default)]
    pub selector: Selector,
    pub enabled: bool,
    /// One of the rules every control plane starts with: it can be tuned
    /// and disabled, not removed.
    pub builtin: bool,
}

impl Rule {
    /// Whether a level breaches the rule.
    pub fn breached_by(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    /// The condition in words, e.g. `cpu > 80 % for 5m`.
    pub fn condition(&self) -> String {
        if self.signal.is_event() {
            return format!(
                "{} (stays firing {})",
                self.signal,
                duration_text(self.keep_firing_for_ms)
            );
        }
        let unit = match self.signal.unit() {
            "" => String::new(),
            "%" => " %".to_owned(),
            unit => format!(" {unit}"),
        };
        let mut text = format!(
            "{} {} {}{unit}",
            self.signal,
            self.op.symbol(),
            number(self.threshold)
        );
        if self.for_ms > 0 {
            text.push_str(&format!(" for {}", duration_text(self.for_ms)));
        }
        text
    }
}

/// A number without trailing zeros (`80`, `0.25`).
pub fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Milliseconds as a short duration (`5m`, `90s`, `1h30m`, `0s`).
pub fn duration_text(ms: i64) -> String {
    if ms <= 0 {
        return "0s".to_owned();
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        if text.is_empty() && secs == 0 {
            return format!("{ms}ms");
        }
        text.push_str(&format!("{s}s"));
    }
    text
}

/// A rule as people write it: in a rules file, on the command line or in
/// JSON. [`RuleDefinition::validate`] turns it into a [`Rule`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDefinition {
    pub name: String,
    /// The signal (`cpu`, `memory`, `disk`, `load`, `oom_kill`, …).
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// A duration like `5m` (default 0: fire at once).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// A duration like `15m`; events default to 30m, levels to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// info, warning (default) or critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Why a rule definition, a rules file or a tuning was refused. Every
/// problem of a rule is listed at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {name:?} is not valid: {}", problems.join("; "))]
    Invalid { name: String, problems: Vec<String> },
    #[error("the rules file is not valid {format}: {message}")]
    File {
        format: &'static str,
        message: String,
    },
    #[error("the rules file defines {0:?} twice; rule names are unique")]
    Duplicate(String),
    #[error("the rules file defines no rules: write `rules:` followed by a list")]
    Empty,
}

/// How long events stay firing unless the rule says otherwise.
pub const DEFAULT_EVENT_KEEP_FIRING_MS: i64 = 30 * 60_000;

/// The longest `for` or `keep_firing_for` a rule may have.
const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;

fn parse_duration(field: &str, text: &str, problems: &mut Vec<String>) -> i64 {
    match humantime::parse_duration(text.trim()) {
        Ok(d) => {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if ms > MAX_DURATION_MS {
                problems.push(format!("{field} {text:?} is longer than 7 days"));
            }
            ms
        }
        Err(_) => {
            problems.push(format!(
                "{field} {text:?} is not a duration like 30s, 5m or 1h"
            ));
            0
        }
    }
}

/// Whether `name` can be an alert name: a letter, then letters, digits or
/// `_`, at most 64 characters (Prometheus' alertname convention).
pub fn is_rule_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn check_label_part(field: &str, value: &str, problems: &mut Vec<String>) {
    if !crate::deploy::units::is_label_part(value) {
        problems.push(format!(
            "{field} {value:?} is not valid: use 1–63 letters, digits, '-', '_', '.' or '/'"
        ));
    }
}

impl RuleDefinition {
    /// Checks every field and returns the rule, or every problem found.
    pub fn validate(&self, builtin: bool) -> Result<Rule, RuleError> {
        let mut problems = Vec::new();
        if !is_rule_name(&self.name) {
            problems.push(format!(
                "the name {:?} must start with a letter and hold only letters, digits and '_' (at most 64), like HostCpuHigh",
                self.name
            ));
        }
        let signal = match self.metric.trim().parse::<Signal>() {
            Ok(signal) => Some(signal),
            Err(message) => {
                problems.push(message);
                None
            }
        };
        let is_event = signal.is_some_and(Signal::is_event);
        let op = match (&self.op, is_event) {
            (Some(_), true) => {
                problems.push(format!(
                    "{} is an event: it takes no comparison",
                    self.metric
                ));
                Comparison::Above
            }
            (Some(text), false) => text.trim().parse().unwrap_or_else(|message| {
                problems.push(message);
                Comparison::Above
            }),
            (None, _) => Comparison::Above,
        };
        let threshold = match (self.threshold, is_event) {
            (Some(_), true) => {
                problems.push(format!(
                    "{} is an event: it takes no threshold",
                    self.metric
                ));
                0.0
            }
            (Some(value), false) if !value.is_finite() => {
                problems.push(format!("the threshold {value} is not a finite number"));
                0.0
            }
            (Some(value), false) => value,
            (None, true) => 0.0,
            (None, false) => {
                problems.push("a threshold is required (e.g. --threshold 80)".to_owned());
                0.0
            }
        };
        let for_ms = match &self.for_ {
            Some(text) => parse_duration("for", text, &mut problems),
            None => 0,
        };
        if is_event && for_ms > 0 {
            problems.push(format!(
                "{} is an event: it fires when it happens and takes no `for`; use keep_firing_for for how long it stays firing",
                self.metric
            ));
        }
        let keep_firing_for_ms = match &self.keep_firing_for {
            Some(text) => parse_duration("keep_firing_for", text, &mut problems),
            None if is_event => DEFAULT_EVENT_KEEP_FIRING_MS,
            None => 0,
        };
        if is_event && keep_firing_for_ms == 0 {
            problems.push("an event rule needs a keep_firing_for above 0".to_owned());
        }
        let severity = match &self.severity {
            Some(text) => text.trim().parse().unwrap_or_else(|e: UnknownSeverity| {
                problems.push(e.to_string());
                Severity::Warning
            }),
            None => Severity::Warning,
        };
        if let Some(region) = &self.region {
            check_label_part("region", region, &mut problems);
        }
        for (k, v) in &self.labels {
            check_label_part("label name", k, &mut problems);
            check_label_part(&format!("label {k}"), v, &mut problems);
        }
        if let Some(host) = self.host.as_deref().filter(|h| h.trim().is_empty()) {
            problems.push(format!("host {host:?} is empty"));
        }
        if let Some(service) = &self.service {
            check_label_part("service", service, &mut problems);
        }
        let about = match signal.map(Signal::subject) {
            Some(SubjectKind::Service) => Some("services"),
            Some(SubjectKind::BackupPolicy) => {
                Some("backup policies (by the service they back up)")
            }
            Some(SubjectKind::Host | SubjectKind::Allocation) | None => None,
        };
        if let Some(about) = about
            && (self.region.is_some() || !self.labels.is_empty() || self.host.is_some())
        {
            problems.push(format!(
                "{} is about {about}: select with --service only",
                self.metric
            ));
        }
        match signal {
            Some(signal) if problems.is_empty() => Ok(Rule {
                name: self.name.clone(),
                signal,
                op,
                threshold,
                for_ms,
                keep_firing_for_ms,
                severity,
                selector: Selector {
                    region: self.region.clone(),
                    labels: self.labels.clone(),
                    host: self.host.clone(),
                    service: self.service.clone(),
                },
                enabled: self.enabled.unwrap_or(true),
                builtin,
            }),
            _ => Err(RuleError::Invalid {
                name: self.name.clone(),
                problems,
            }),
        }
    }
}

impl From<&Rule> for RuleDefinition {
    fn from(rule: &Rule) -> Self {
        let event = rule.signal.is_event();
        RuleDefinition {
            name: rule.name.clone(),
            metric: rule.signal.name().to_owned(),
            op: (!event).then(|| rule.op.symbol().to_owned()),
            threshold: (!event).then_some(rule.threshold),
            for_: (rule.for_ms > 0).then(|| duration_text(rule.for_ms)),
            keep_firing_for: (rule.keep_firing_for_ms > 0)
                .then(|| duration_text(rule.keep_firing_for_ms)),
            severity: Some(rule.severity.as_str().to_owned()),
            region: rule.selector.region.clone(),
            labels: rule.selector.labels.clone(),
            host: rule.selector.host.clone(),
            service: rule.selector.service.clone(),
            enabled: Some(rule.enabled),
        }
    }
}

/// A rules file: `rules:` and a list of rule definitions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleDefinition>,
}

/// The format of a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesFormat {
    Yaml,
    Toml,
}

impl RulesFormat {
    pub fn name(self) -> &'static str {
        match self {
            RulesFormat::Yaml => "YAML",
            RulesFormat::Toml => "TOML",
        }
    }
}

/// Reads a rules file and validates every rule in it. All or nothing: one
/// invalid rule refuses the file.
pub fn parse_rules_file(text: &str, format: RulesFormat) -> Result<Vec<RuleDefinition>, RuleError> {
    let file: RulesFile = match format {
        RulesFormat::Yaml => serde_saphyr::from_str(text).map_err(|e| RuleError::File {
            format: format.name(),
            message: e.to_string(),
        })?,
        RulesFormat::Toml => toml::from_str(text).map_err(|e| RuleError::File {
            format: format.name(),
            message: e.to_string(),
        })?,
    };
    if file.rules.is_empty() {
        return Err(RuleError::Empty);
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in &file.rules {
        if !seen.insert(rule.name.as_str()) {
            return Err(RuleError::Duplicate(rule.name.clone()));
        }
        rule.validate(false)?;
    }
    Ok(file.rules)
}

/// Changes to a rule's knobs; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tuning {
    pub threshold: Option<f64>,
    pub for_: Option<String>,
    pub keep_firing_for: Option<String>,
    pub severity: Option<String>,
    pub enabled: Option<bool>,
}

impl Tuning {
    /// The rule with these changes, validated like a new definition.
    pub fn apply(&self, rule: &Rule) -> Result<Rule, RuleError> {
        let mut definition = RuleDefinition::from(rule);
        if let Some(threshold) = self.threshold {
            definition.threshold = Some(threshold);
        }
        if let Some(text) = &self.for_ {
            definition.for_ = Some(text.clone());
        }
        if let Some(text) = &self.keep_firing_for {
            definition.keep_firing_for = Some(text.clone());
        }
        if let Some(text) = &self.severity {
            definition.severity = Some(text.clone());
        }
        if let Some(enabled) = self.enabled {
            definition.enabled = Some(enabled);
        }
        definition.validate(rule.builtin)
    }
}

/// The rules every control plane starts with, on by default. The
/// certificate rule's threshold is the smaller of 7 days and a quarter of
/// the agent certificate lifetime: agents renew at two thirds of it, so
/// with the default 24 h certificates a literal 7 days would always fire;
/// this way it fires when renewal has been failing for a while.
pub fn builtin_rules(agent_cert_ttl_ms: i64) -> Vec<Rule> {
    let cert_days = (agent_cert_ttl_ms as f64 / 4.0 / 86_400_000.0).min(7.0);
    let cert_days = (cert_days * 100.0).round() / 100.0;
    let rule = |name: &str,
                signal: Signal,
                op: Comparison,
                threshold: f64,
                for_ms: i64,
                keep_firing_for_ms: i64,
                severity: Severity| Rule {
        name: name.to_owned(),
        signal,
        op,
        threshold,
        for_ms,
        keep_firing_for_ms,
        severity,
        selector: Selector::default(),
        enabled: true,
        builtin: true,
    };
    const MIN: i64 = 60_000;
    use Comparison::*;
    vec![
        rule(
            "HostCpuHigh",
            Signal::Host(Metric::Cpu),
            Above,
            80.0,
            5 * MIN,
            0,
            Severity::Warning,
        ),
        rule(
            "HostMemoryHigh",
            Signal::Host(Metric::MemoryPercent),
            Above,
            85.0,
            5 * MIN,
            0,
            Severity::Warning,
        ),
        rule(
            "HostDiskFull",
            Signal::Host(Metric::DiskUsedPercent),
            Above,
            90.0,
            0,
            0,
            Severity::Critical,
        ),
        // A service whose ingresses answer 503 somewhere for a minute: long
        // enough that a first deployment becoming healthy does not fire.
        rule(
            "RouteUnserved",
            Signal::RouteUnserved,
            Above,
            0.0,
            MIN,
            0,
            Severity::Critical,
        ),
        rule(
            "HostOffline",
            Signal::OfflineSeconds,
            Above,
            60.0,
            0,
            0,
            Severity::Critical,
        ),
        rule(
            "AllocationUnhealthy",
            Signal::AllocationUnhealthy,
            Above,
            0.0,
            2 * MIN,
            0,
            Severity::Warning,
        ),
        rule(
            "AllocationRestartLoop",
            Signal::AllocationRestarts,
            AtLeast,
            3.0,
            0,
            0,
            Severity::Warning,
        ),
        rule(
            "AllocationOomKilled",
            Signal::OomKill,
            Above,
            0.0,
            0,
            30 * MIN,
            Severity::Warning,
        ),
        rule(
            "DeploymentFailed",
            Signal::DeploymentFailed,
            Above,
            0.0,
            0,
            60 * MIN,
            Severity::Critical,
        ),
        // A failed backup stays firing 6 hours, longer than the usual
        // schedule's gap, so that failing every run is one alert, not one
        // per run; a failed verification (usually daily) stays a day.
        rule(
            "BackupFailed",
            Signal::BackupFailed,
            Above,
            0.0,
            0,
            6 * 60 * MIN,
            Severity::Critical,
        ),
        rule(
            "BackupOverdue",
            Signal::BackupOverdue,
            Above,
            0.0,
            0,
            0,
            Severity::Critical,
        ),
        rule(
            "BackupVerificationFailed",
            Signal::BackupVerificationFailed,
            Above,
            0.0,
            0,
            24 * 60 * MIN,
            Severity::Warning,
        ),
        rule(
            "AgentCertificateExpiring",
            Signal::CertificateDaysLeft,
            Below,
            cert_days,
            0,
            0,
            Severity::Warning,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(name: &str, metric: &str) -> RuleDefinition {
        RuleDefinition {
            name: name.into(),
            metric: metric.into(),
            ..RuleDefinition::default()
        }
    }

    #[test]
    fn a_custom_cpu_rule_validates() {
        let rule = RuleDefinition {
            op: Some(">".into()),
            threshold: Some(80.0),
            for_: Some("5m".into()),
            severity: Some("critical".into()),
            region: Some("eu-west".into()),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            ..definition("WebCpuHigh", "cpu")
        }
        .validate(false)
        .unwrap();
        assert_eq!(rule.signal, Signal::Host(Metric::Cpu));
        assert_eq!(rule.for_ms, 300_000);
        assert_eq!(rule.severity, Severity::Critical);
        assert!(rule.enabled && !rule.builtin);
        assert_eq!(rule.condition(), "cpu > 80 % for 5m");
        assert_eq!(rule.selector.to_string(), "region=eu-west,role=web");
    }

    #[test]
    fn aliases_name_the_usual_metrics() {
        for (alias, signal) in [
            ("memory", Signal::Host(Metric::MemoryPercent)),
            ("disk", Signal::Host(Metric::DiskUsedPercent)),
            ("load", Signal::Host(Metric::Load1)),
            ("load15", Signal::Host(Metric::Load15)),
            ("oom_kill", Signal::OomKill),
        ] {
            assert_eq!(alias.parse::<Signal>(), Ok(signal), "{alias}");
        }
        let err = "temperature".parse::<Signal>().unwrap_err();
        assert!(err.contains("cpu, memory"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = RuleDefinition {
            op: Some("~".into()),
            for_: Some("soon".into()),
            severity: Some("dire".into()),
            region: Some("EU West".into()),
            ..definition("9lives", "cpu")
        }
        .validate(false)
        .unwrap_err();
        let RuleError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 6, "{problems:#?}");
        let text = err.to_string();
        for needle in [
            "start with a letter",
            "unknown comparison",
            "threshold is required",
            "\"soon\"",
            "unknown severity",
            "region \"EU West\"",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn events_take_no_comparison_threshold_or_for() {
        let rule = definition("Oom", "oom_kill").validate(false).unwrap();
        assert_eq!(rule.keep_firing_for_ms, DEFAULT_EVENT_KEEP_FIRING_MS);
        assert_eq!(rule.condition(), "oom_kill (stays firing 30m)");
        let err = RuleDefinition {
            op: Some(">".into()),
            threshold: Some(1.0),
            for_: Some("1m".into()),
            keep_firing_for: Some("0s".into()),
            ..definition("Oom", "oom_kill")
        }
        .validate(false)
        .unwrap_err();
        let RuleError::Invalid { problems, .. } = err else {
            panic!()
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn service_signals_take_only_a_service_selector() {
        assert!(
            RuleDefinition {
                service: Some("crm".into()),
                ..definition("CrmDeployFailed", "deployment_failed")
            }
            .validate(false)
            .is_ok()
        );
        assert!(
            RuleDefinition {
                region: Some("eu-west".into()),
                ..definition("X", "deployment_failed")
            }
            .validate(false)
            .is_err()
        );
    }

    #[test]
    fn backup_signals_are_about_policies() {
        for (name, event) in [
            ("backup_failed", true),
            ("backup_overdue", false),
            ("backup_verification_failed", true),
        ] {
            let signal: Signal = name.parse().unwrap();
            assert_eq!(signal.name(), name);
            assert_eq!(signal.is_event(), event, "{name}");
            assert_eq!(signal.subject(), SubjectKind::BackupPolicy);
            assert!(Signal::NAMES.contains(name), "{name}");
        }
        let rule = RuleDefinition {
            service: Some("crm".into()),
            severity: Some("critical".into()),
            ..definition("CrmBackupFailed", "backup_failed")
        }
        .validate(false)
        .unwrap();
        assert_eq!(rule.keep_firing_for_ms, DEFAULT_EVENT_KEEP_FIRING_MS);
        let err = RuleDefinition {
            labels: [("role".to_owned(), "db".to_owned())].into(),
            threshold: Some(0.0),
            ..definition("X", "backup_overdue")
        }
        .validate(false)
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("backup_overdue is about backup policies (by the service they back up): select with --service only"),
            "{err}"
        );
    }

    #[test]
    fn durations_are_bounded() {
        let err = RuleDefinition {
            threshold: Some(1.0),
            for_: Some("30d".into()),
            ..definition("Long", "cpu")
        }
        .validate(false)
        .unwrap_err();
        assert!(err.to_string().contains("longer than 7 days"), "{err}");
    }

    #[test]
    fn comparisons_hold_and_pick_the_worse_value() {
        assert!(Comparison::Above.holds(81.0, 80.0));
        assert!(!Comparison::Above.holds(80.0, 80.0));
        assert!(Comparison::AtLeast.holds(80.0, 80.0));
        assert!(Comparison::Below.holds(1.0, 2.0));
        assert!(!Comparison::Below.holds(2.0, 2.0));
        assert!(Comparison::AtMost.holds(2.0, 2.0));
        assert_eq!(Comparison::Above.worse(1.0, 3.0), 3.0);
        assert_eq!(Comparison::Below.worse(1.0, 3.0), 1.0);
    }

    #[test]
    fn selectors_match_region_labels_host_and_service() {
        let labels: BTreeMap<String, String> = [("role".to_owned(), "web".to_owned())].into();
        let services = ["crm".to_owned()];
        let web = Subject {
            region: Some("eu-west"),
            host_id: Some("h1"),
            hostname: Some("web-1"),
            host_labels: Some(&labels),
            services: &services,
        };
        let select = |region: Option<&str>,
                      label: Option<(&str, &str)>,
                      host: Option<&str>,
                      service: Option<&str>| Selector {
            region: region.map(str::to_owned),
            labels: label
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            host: host.map(str::to_owned),
            service: service.map(str::to_owned),
        };
        assert!(select(None, None, None, None).matches(&web));
        assert!(
            select(
                Some("eu-west"),
                Some(("role", "web")),
                Some("web-1"),
                Some("crm")
            )
            .matches(&web)
        );
        assert!(select(None, None, Some("h1"), None).matches(&web));
        assert!(!select(Some("us-east"), None, None, None).matches(&web));
        assert!(!select(None, Some(("role", "db")), None, None).matches(&web));
        assert!(!select(None, None, Some("web-2"), None).matches(&web));
        assert!(!select(None, None, None, Some("billing")).matches(&web));
        // A service has no region or labels: such selectors do not match it.
        let service = Subject {
            services: &services,
            ..Subject::default()
        };
        assert!(!select(Some("eu-west"), None, None, None).matches(&service));
        assert!(!select(None, Some(("role", "web")), None, None).matches(&service));
        assert!(select(None, None, None, Some("crm")).matches(&service));
    }

    #[test]
    fn builtins_are_valid_and_round_trip_through_definitions() {
        let rules = builtin_rules(24 * 3_600_000);
        assert_eq!(rules.len(), 13);
        for rule in &rules {
            let again = RuleDefinition::from(rule).validate(true).unwrap();
            assert_eq!(&again, rule, "{}", rule.name);
            assert!(rule.enabled && rule.builtin);
        }
        let cert = rules
            .iter()
            .find(|r| r.name == "AgentCertificateExpiring")
            .unwrap();
        assert_eq!(
            cert.threshold, 0.25,
            "a quarter of a day with 24h certificates"
        );
        let long = builtin_rules(365 * 86_400_000);
        let cert = long
            .iter()
            .find(|r| r.name == "AgentCertificateExpiring")
            .unwrap();
        assert_eq!(cert.threshold, 7.0);
        let names: Vec<String> = rules.iter().map(|r| r.condition()).collect();
        expect_test::expect![[r#"
            [
                "cpu > 80 % for 5m",
                "memory_percent > 85 % for 5m",
                "disk_used_percent > 90 %",
                "route_unserved > 0 for 1m",
                "offline_seconds > 60 s",
                "allocation_unhealthy > 0 for 2m",
                "allocation_restarts >= 3 restarts",
                "oom_kill (stays firing 30m)",
                "deployment_failed (stays firing 1h)",
                "backup_failed (stays firing 6h)",
                "backup_overdue > 0",
                "backup_verification_failed (stays firing 24h)",
                "certificate_days_left < 0.25 days",
            ]
        "#]]
        .assert_debug_eq(&names);
    }

    #[test]
    fn rules_files_parse_in_yaml_and_toml() {
        let yaml = "rules:\n  - name: WebCpu\n    metric: cpu\n    op: '>'\n    threshold: 70\n    for: 1m\n    labels: {role: web}\n  - name: CrmOom\n    metric: oom_kill\n    service: crm\n    keep_firing_for: 10m\n";
        let rules = parse_rules_file(yaml, RulesFormat::Yaml).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].validate(false).unwrap().for_ms, 60_000);
        let toml = "[[rules]]\nname = \"Disk\"\nmetric = \"disk\"\nop = \">=\"\nthreshold = 95.0\nseverity = \"critical\"\n";
        let rules = parse_rules_file(toml, RulesFormat::Toml).unwrap();
        assert_eq!(rules[0].validate(false).unwrap().op, Comparison::AtLeast);
    }

    #[test]
    fn rules_files_are_all_or_nothing() {
        let twice = "rules:\n  - {name: A, metric: cpu, threshold: 1}\n  - {name: A, metric: cpu, threshold: 2}\n";
        assert_eq!(
            parse_rules_file(twice, RulesFormat::Yaml),
            Err(RuleError::Duplicate("A".into()))
        );
        let bad = "rules:\n  - {name: A, metric: cpu, threshold: 1}\n  - {name: B, metric: cpu}\n";
        assert!(matches!(
            parse_rules_file(bad, RulesFormat::Yaml),
            Err(RuleError::Invalid { name, .. }) if name == "B"
        ));
        assert_eq!(
            parse_rules_file("rules: []\n", RulesFormat::Yaml),
            Err(RuleError::Empty)
        );
        let unknown = "rules:\n  - {name: A, metric: cpu, threshold: 1, treshold: 2}\n";
        assert!(matches!(
            parse_rules_file(unknown, RulesFormat::Yaml),
            Err(RuleError::File { .. })
        ));
    }

    #[test]
    fn tuning_changes_only_what_it_names() {
        let cpu = builtin_rules(86_400_000).remove(0);
        let tuned = Tuning {
            threshold: Some(95.0),
            severity: Some("critical".into()),
            ..Tuning::default()
        }
        .apply(&cpu)
        .unwrap();
        assert_eq!(tuned.threshold, 95.0);
        assert_eq!(tuned.severity, Severity::Critical);
        assert_eq!(tuned.for_ms, cpu.for_ms);
        assert!(tuned.builtin);
        let off = Tuning {
            enabled: Some(false),
            ..Tuning::default()
        }
        .apply(&tuned)
        .unwrap();
        assert!(!off.enabled);
        assert!(
            Tuning {
                for_: Some("never".into()),
                ..Tuning::default()
            }
            .apply(&cpu)
            .is_err()
        );
    }

    #[test]
    fn durations_print_short() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(500), "500ms");
        assert_eq!(duration_text(90_000), "1m30s");
        assert_eq!(duration_text(3_600_000), "1h");
        assert_eq!(number(80.0), "80");
        assert_eq!(number(0.25), "0.25");
    }
}
