//! What the fleet looks like to the alert rules: plain facts about hosts
//! (status, latest sample, certificate), allocations (state, health,
//! restarts, OOM kills), finished deployments and backup policies (their
//! newest backup and verification, their RPO), turned into one
//! [`Observation`] per subject a rule selects. Pure: the evaluation loop
//! gathers the facts, this decides what they mean (a policy's standing
//! against its RPO is `backup::status`'s decision).

use super::evaluate::{Observation, Reading};
use super::rules::{
    Labels, RESERVED_LABELS, Rule, STABLE_RUN_MS, Selector, Signal, Subject, number,
};
use crate::backup::retention::Candidate;
use crate::backup::status::{self, PolicyFacts};
use crate::store::{BackupPolicyRow, BackupRow, Metric, SampleRow};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A host as alerting sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub online: bool,
    pub revoked: bool,
    pub last_seen_ms: Option<i64>,
    pub enrolled_at_ms: i64,
    pub cert_not_after_ms: i64,
    /// The latest sample, while the host is online.
    pub sample: Option<SampleRow>,
}

/// An allocation that should be running on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationFacts {
    pub id: String,
    pub service: String,
    pub host_id: String,
    /// pending, pulling, starting, running, exited, failed, stopped.
    pub state: String,
    /// starting, healthy, unhealthy, none.
    pub health: String,
    pub restarts: u32,
    /// The container's last exit was an OOM kill.
    pub oom_killed: bool,
    pub message: String,
    pub healthy_since_ms: i64,
    /// When the agent last reported a change.
    pub reported_at_ms: i64,
}

/// A deployment that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOutcome {
    pub id: String,
    pub service: String,
    /// `succeeded`, `failed: …`, `reverted`, `cancelled`.
    pub phase: String,
    pub finished_at_ms: i64,
}

/// A routed service the regions whose ingresses cannot serve it, with
/// the reason each gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFacts {
    pub service: String,
    /// `(region, why)`, empty while every region can serve it.
    pub unserved: Vec<(String, String)>,
}

/// A backup policy: what its backups say, and its RPO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicyFacts {
    pub name: String,
    /// The service whose host runs it (`service:` policies).
    pub service: Option<String>,
    pub rpo: Duration,
    /// With `created_at_ms` set, so that a policy that never succeeded
    /// becomes overdue.
    pub backups: PolicyFacts,
}

impl BackupPolicyFacts {
    /// A stored policy and its newest backups (any order).
    pub fn from_rows(row: &BackupPolicyRow, backups: &[BackupRow]) -> Self {
        let service = stored_policy_service(&row.spec, &row.format);
        let candidates: Vec<Candidate> = backups.iter().map(Candidate::from).collect();
        BackupPolicyFacts {
            name: row.name.clone(),
            service,
            rpo: Duration::from_secs(u64::try_from(row.rpo_seconds).unwrap_or(0)),
            backups: PolicyFacts {
                created_at_ms: Some(row.created_at_ms),
                ..PolicyFacts::from_backups(&candidates)
            },
        }
    }
}

/// The `service:` of a stored policy. Only that field is read: the spec was
/// validated when it was applied, and validating it again (its schedule's
/// longest gap included) at every evaluation would cost milliseconds per
/// policy. A spec that cannot be read has none.
fn stored_policy_service(spec: &str, format: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct RunsOnService {
        service: Option<String>,
    }
    let read = match format {
        "toml" => toml::from_str::<RunsOnService>(spec).ok(),
        _ => serde_saphyr::from_str::<RunsOnService>(spec).ok(),
    };
    read?.service
}

/// Everything the rules look at, gathered once per evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub hosts: Vec<HostFacts>,
    pub allocations: Vec<AllocationFacts>,
    /// Recently finished deployments (any order).
    pub deployments: Vec<DeploymentOutcome>,
    /// Every backup policy (gathered only while a backup rule is enabled).
    pub backup_policies: Vec<BackupPolicyFacts>,
    /// Every routed service that is not stopped.
    pub routes: Vec<RouteFacts>,
    /// When this control plane started watching the fleet: hosts cannot
    /// have reported to it before.
    pub watching_since_ms: i64,
}

/// How long after the control plane starts its hosts get to reconnect
/// before their silence counts (agents retry with backoff capped at 30 s).
pub const RECONNECT_GRACE_MS: i64 = 60_000;

/// The value of a host metric in a sample; `None` when it cannot be
/// computed (memory percent of a host reporting no memory).
pub fn metric_value(metric: Metric, s: &SampleRow) -> Option<f64> {
    let value = match metric {
        Metric::Cpu => s.cpu_percent,
        Metric::Load1 => s.load1,
        Metric::Load5 => s.load5,
        Metric::Load15 => s.load15,
        Metric::MemoryUsed => s.memory_used as f64,
        Metric::MemoryAvailable => s.memory_available as f64,
        Metric::MemoryPercent if s.memory_total > 0 => {
            s.memory_used as f64 * 100.0 / s.memory_total as f64
        }
        Metric::MemoryPercent => return None,
        Metric::SwapUsed => s.swap_used as f64,
        Metric::DiskUsedPercent => s.disk_used_percent,
        Metric::NetRx => s.net_rx_bps,
        Metric::NetTx => s.net_tx_bps,
        Metric::Uptime => s.uptime_s as f64,
        Metric::Processes => s.processes as f64,
    };
    Some(value)
}

/// Whether an allocation's last reported state is a problem: it failed,
/// exited, or runs but fails its health check.
pub fn is_unhealthy(a: &AllocationFacts) -> bool {
    matches!(a.state.as_str(), "failed" | "exited")
        || (a.state == "running" && a.health == "unhealthy")
}

/// Whether an allocation has run healthily for [`STABLE_RUN_MS`].
pub fn is_stable(a: &AllocationFacts, now_ms: i64) -> bool {
    a.state == "running"
        && matches!(a.health.as_str(), "healthy" | "none")
        && a.healthy_since_ms > 0
        && now_ms - a.healthy_since_ms >= STABLE_RUN_MS
}

/// Whether a deployment's phase is a failure worth an alert.
pub fn is_failed_deployment(phase: &str) -> bool {
    phase == "reverted" || phase.starts_with("failed")
}

fn host_labels(host: &HostFacts) -> Labels {
    let mut labels: Labels = host
        .labels
        .iter()
        .filter(|(k, _)| !RESERVED_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("host".into(), host.id.clone());
    labels.insert("hostname".into(), host.hostname.clone());
    labels.insert("region".into(), host.region.clone());
    labels
}

fn host_subject<'a>(host: &'a HostFacts, services: &'a [String]) -> Subject<'a> {
    Subject {
        region: Some(&host.region),
        host_id: Some(&host.id),
        hostname: Some(&host.hostname),
        host_labels: Some(&host.labels),
        services,
    }
}

fn place(host: &HostFacts) -> String {
    format!("{} ({})", host.hostname, host.region)
}

fn unit_suffix(signal: Signal) -> String {
    match signal.unit() {
        "" => String::new(),
        "%" => " %".to_owned(),
        unit => format!(" {unit}"),
    }
}

/// The observations of `rule` over `facts` at `now_ms`.
pub fn observe(rule: &Rule, facts: &Facts, now_ms: i64) -> Vec<Observation> {
    let hosts: BTreeMap<&str, &HostFacts> =
        facts.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    match rule.signal {
        Signal::Host(_) | Signal::OfflineSeconds | Signal::CertificateDaysLeft => {
            observe_hosts(rule, facts, now_ms)
        }
        Signal::AllocationUnhealthy | Signal::AllocationRestarts | Signal::OomKill => facts
            .allocations
            .iter()
            .filter_map(|a| Some((a, *hosts.get(a.host_id.as_str())?)))
            .filter(|(a, host)| {
                let services = std::slice::from_ref(&a.service);
                rule.selector.matches(&host_subject(host, services))
            })
            .filter_map(|(a, host)| observe_allocation(rule.signal, a, host, now_ms))
            .collect(),
        Signal::DeploymentFailed => observe_deployments(&rule.selector, facts),
        Signal::RouteUnserved => facts
            .routes
            .iter()
            .filter(|r| {
                rule.selector.matches(&Subject {
                    services: std::slice::from_ref(&r.service),
                    ..Subject::default()
                })
            })
            .map(|r| Observation {
                labels: [("service".to_owned(), r.service.clone())].into(),
                reading: Reading::Level(if r.unserved.is_empty() { 0.0 } else { 1.0 }),
                detail: if r.unserved.is_empty() {
                    format!("every region's ingresses serve {}", r.service)
                } else {
                    let regions: Vec<&str> = r
                        .unserved
                        .iter()
                        .map(|(region, _)| region.as_str())
                        .collect();
                    format!(
                        "the ingresses of {} answer 503 for {}: {}",
                        regions.join(", "),
                        r.service,
                        r.unserved[0].1
                    )
                },
            })
            .collect(),
        Signal::BackupFailed | Signal::BackupOverdue | Signal::BackupVerificationFailed => facts
            .backup_policies
            .iter()
            .filter(|p| {
                let services = p.service.as_slice();
                rule.selector.matches(&Subject {
                    services,
                    ..Subject::default()
                })
            })
            .filter_map(|p| observe_backup_policy(rule.signal, p, now_ms))
            .collect(),
    }
}

/// One backup policy's reading of a backup signal: the newest backup's
/// failure and the newest verification's failure are events (keyed by the
/// backup, and the verification's time), the RPO a level.
fn observe_backup_policy(
    signal: Signal,
    policy: &BackupPolicyFacts,
    now_ms: i64,
) -> Option<Observation> {
    let mut labels: Labels = [("policy".to_owned(), policy.name.clone())].into();
    if let Some(service) = &policy.service {
        labels.insert("service".into(), service.clone());
    }
    let first_line = |text: &str| text.lines().next().unwrap_or_default().trim().to_owned();
    let (reading, detail) = match signal {
        Signal::BackupFailed => {
            let failure = policy.backups.latest_backup_failed()?;
            let detail = format!(
                "backup {} of policy {} failed: {}",
                failure.backup_id,
                policy.name,
                first_line(&failure.error)
            );
            let reading = Reading::Event {
                key: failure.backup_id.clone(),
                at_ms: failure.failed_at_ms,
            };
            (reading, detail)
        }
        Signal::BackupOverdue => {
            let status = status::evaluate(&policy.backups, policy.rpo, now_ms);
            let value = if status.rpo_breached { 1.0 } else { 0.0 };
            let detail = format!("backup policy {}: {}", policy.name, status.reason);
            (Reading::Level(value), detail)
        }
        Signal::BackupVerificationFailed => {
            let verification = policy
                .backups
                .last_verification
                .as_ref()
                .filter(|v| !v.passed)?;
            let detail = format!(
                "verification of backup {} of policy {} failed: {}",
                verification.backup_id,
                policy.name,
                first_line(&verification.error)
            );
            let reading = Reading::Event {
                key: format!("{}@{}", verification.backup_id, verification.at_ms),
                at_ms: verification.at_ms,
            };
            (reading, detail)
        }
        _ => return None,
    };
    Some(Observation {
        labels,
        reading,
        detail,
    })
}

fn observe_hosts(rule: &Rule, facts: &Facts, now_ms: i64) -> Vec<Observation> {
    let mut services: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for a in &facts.allocations {
        services
            .entry(a.host_id.as_str())
            .or_default()
            .insert(a.service.clone());
    }
    let mut out = Vec::new();
    for host in facts.hosts.iter().filter(|h| !h.revoked) {
        let runs: Vec<String> = services
            .get(host.id.as_str())
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if !rule.selector.matches(&host_subject(host, &runs)) {
            continue;
        }
        let (reading, detail) = match rule.signal {
            Signal::Host(metric) => {
                let value = host
                    .sample
                    .as_ref()
                    .filter(|_| host.online)
                    .and_then(|s| metric_value(metric, s));
                match value {
                    Some(value) => (
                        Reading::Level(value),
                        format!(
                            "{metric} {}{} on {}",
                            number(value),
                            unit_suffix(rule.signal),
                            place(host)
                        ),
                    ),
                    None => (
                        Reading::Unknown,
                        format!("no recent sample from {}", place(host)),
                    ),
                }
            }
            Signal::OfflineSeconds if host.online => {
                (Reading::Level(0.0), format!("{} is online", place(host)))
            }
            Signal::OfflineSeconds => {
                let since = host.last_seen_ms.unwrap_or(host.enrolled_at_ms);
                if since < facts.watching_since_ms
                    && now_ms - facts.watching_since_ms < RECONNECT_GRACE_MS
                {
                    let detail = format!(
                        "{} has not reconnected since the control plane started",
                        place(host)
                    );
                    (Reading::Unknown, detail)
                } else {
                    let seconds = ((now_ms - since) as f64 / 1000.0).max(0.0).floor();
                    let detail = format!(
                        "{} is offline: not heard from for {}",
                        place(host),
                        super::rules::duration_text((seconds as i64) * 1000)
                    );
                    (Reading::Level(seconds), detail)
                }
            }
            Signal::CertificateDaysLeft => {
                let days = (host.cert_not_after_ms - now_ms) as f64 / 86_400_000.0;
                let detail = format!(
                    "the agent certificate of {} expires in {} days ({}); check that the agent renews it",
                    place(host),
                    number(days),
                    crate::clock::format_ms(host.cert_not_after_ms)
                );
                (Reading::Level(days), detail)
            }
            _ => continue,
        };
        out.push(Observation {
            labels: host_labels(host),
            reading,
            detail,
        });
    }
    out
}

fn observe_allocation(
    signal: Signal,
    a: &AllocationFacts,
    host: &HostFacts,
    now_ms: i64,
) -> Option<Observation> {
    let mut labels: Labels = [
        ("allocation".to_owned(), a.id.clone()),
        ("service".to_owned(), a.service.clone()),
        ("host".to_owned(), host.id.clone()),
        ("hostname".to_owned(), host.hostname.clone()),
        ("region".to_owned(), host.region.clone()),
    ]
    .into();
    labels.retain(|_, v| !v.is_empty());
    let who = format!("allocation {} of {} on {}", a.id, a.service, place(host));
    let because = if a.message.is_empty() {
        String::new()
    } else {
        format!(": {}", a.message)
    };
    let (reading, detail) = match signal {
        Signal::AllocationUnhealthy => {
            let unhealthy = is_unhealthy(a);
            let detail = if unhealthy {
                format!("{who} is {} ({}){because}", a.state, a.health)
            } else {
                format!("{who} is {} ({})", a.state, a.health)
            };
            (Reading::Level(if unhealthy { 1.0 } else { 0.0 }), detail)
        }
        Signal::AllocationRestarts => {
            if a.restarts == 0 {
                return None;
            }
            let looping = !is_stable(a, now_ms);
            let value = if looping { f64::from(a.restarts) } else { 0.0 };
            let detail = format!(
                "{who} restarted {} time(s) and has not run healthily for {} since{because}",
                a.restarts,
                super::rules::duration_text(STABLE_RUN_MS)
            );
            (Reading::Level(value), detail)
        }
        Signal::OomKill => {
            if !a.oom_killed {
                return None;
            }
            let detail = format!(
                "{who} was OOM-killed: it reached its memory limit (restarts so far: {})",
                a.restarts
            );
            let reading = Reading::Event {
                key: format!("restarts-{}", a.restarts),
                at_ms: a.reported_at_ms,
            };
            (reading, detail)
        }
        _ => return None,
    };
    Some(Observation {
        labels,
        reading,
        detail,
    })
}

fn observe_deployments(selector: &Selector, facts: &Facts) -> Vec<Observation> {
    let mut latest: BTreeMap<&str, &DeploymentOutcome> = BTreeMap::new();
    for d in &facts.deployments {
        let newer = latest
            .get(d.service.as_str())
            .is_none_or(|held| (d.finished_at_ms, &d.id) > (held.finished_at_ms, &held.id));
        if newer {
            latest.insert(&d.service, d);
        }
    }
    latest
        .into_values()
        .filter(|d| is_failed_deployment(&d.phase))
        .filter(|d| {
            let services = std::slice::from_ref(&d.service);
            selector.matches(&Subject {
                services,
                ..Subject::default()
            })
        })
        .map(|d| Observation {
            labels: [("service".to_owned(), d.service.clone())].into(),
            reading: Reading::Event {
                key: d.id.clone(),
                at_ms: d.finished_at_ms,
            },
            detail: format!("deployment {} of {} ended {}", d.id, d.service, d.phase),
        })
        .collect()
}

#[cfg(test)]
mod route_tests {
    use super::*;
    use crate::alerts::rules::builtin_rules;

    #[test]
    fn a_route_that_some_region_cannot_serve_reads_one_with_the_reason() {
        let rule = builtin_rules(86_400_000)
            .into_iter()
            .find(|r| r.signal == Signal::RouteUnserved)
            .unwrap();
        assert_eq!(rule.for_ms, 60_000);
        let facts = Facts {
            routes: vec![
                RouteFacts {
                    service: "web".into(),
                    unserved: vec![(
                        "eu-west".into(),
                        "service web has no healthy allocation in any region it may be served from (eu-west: 0 of 2 healthy)".into(),
                    )],
                },
                RouteFacts {
                    service: "api".into(),
                    unserved: vec![],
                },
            ],
            ..Facts::default()
        };
        let seen = observe(&rule, &facts, 0);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].labels["service"], "web");
        assert_eq!(seen[0].reading, Reading::Level(1.0));
        assert!(
            seen[0].detail.starts_with(
                "the ingresses of eu-west answer 503 for web: service web has no healthy allocation"
            ),
            "{}",
            seen[0].detail
        );
        assert_eq!(seen[1].reading, Reading::Level(0.0));
        // A selector on another service sees neither.
        let mut only_db = rule.clone();
        only_db.selector.service = Some("db".into());
        assert!(observe(&only_db, &facts, 0).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::{RuleDefinition, builtin_rules};

    const NOW: i64 = 1_800_000_000_000;

    fn sample(host: &str, cpu: f64) -> SampleRow {
        SampleRow {
            host_id: host.into(),
            ts_ms: NOW - 1_000,
            cpu_percent: cpu,
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
            memory_used: 900,
            memory_available: 100,
            memory_total: 1_000,
            swap_used: 0,
            swap_total: 0,
            disk_used_percent: 42.0,
            disk_used: 42,
            disk_total: 100,
            net_rx_bps: 1.0,
            net_tx_bps: 2.0,
            uptime_s: 100,
            processes: 50,
        }
    }

    fn host(id: &str, region: &str, cpu: f64) -> HostFacts {
        HostFacts {
            id: id.into(),
            hostname: format!("{id}.example"),
            region: region.into(),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            online: true,
            revoked: false,
            last_seen_ms: Some(NOW - 1_000),
            enrolled_at_ms: NOW - 86_400_000,
            cert_not_after_ms: NOW + 20 * 3_600_000,
            sample: Some(sample(id, cpu)),
        }
    }

    fn allocation(id: &str, host: &str, state: &str, health: &str) -> AllocationFacts {
        AllocationFacts {
            id: id.into(),
            service: "crm".into(),
            host_id: host.into(),
            state: state.into(),
            health: health.into(),
            restarts: 0,
            oom_killed: false,
            message: String::new(),
            healthy_since_ms: 0,
            reported_at_ms: NOW - 5_000,
        }
    }

    fn builtin(name: &str) -> Rule {
        builtin_rules(86_400_000)
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    fn values(observations: &[Observation]) -> Vec<(String, f64)> {
        observations
            .iter()
            .map(|o| {
                let who = o
                    .labels
                    .get("allocation")
                    .or_else(|| o.labels.get("host"))
                    .or_else(|| o.labels.get("service"))
                    .cloned()
                    .unwrap_or_default();
                let value = match &o.reading {
                    Reading::Level(v) => *v,
                    Reading::Event { .. } | Reading::Unknown => f64::NAN,
                };
                (who, value)
            })
            .collect()
    }

    #[test]
    fn host_metrics_come_from_the_latest_sample_of_online_hosts() {
        let mut offline = host("h3", "eu-west", 99.0);
        offline.online = false;
        let mut revoked = host("h4", "eu-west", 99.0);
        revoked.revoked = true;
        let facts = Facts {
            hosts: vec![
                host("h1", "eu-west", 93.25),
                host("h2", "us-east", 10.0),
                offline,
                revoked,
            ],
            ..Facts::default()
        };
        let seen = observe(&builtin("HostCpuHigh"), &facts, NOW);
        assert_eq!(
            values(&seen)[..2],
            [("h1".into(), 93.25), ("h2".into(), 10.0)]
        );
        assert_eq!(seen.len(), 3, "the revoked host is gone");
        assert_eq!(
            seen[2].reading,
            Reading::Unknown,
            "the offline host cannot be read"
        );
        assert_eq!(seen[2].detail, "no recent sample from h3.example (eu-west)");
        assert_eq!(seen[0].detail, "cpu 93.25 % on h1.example (eu-west)");
        assert_eq!(seen[0].labels["region"], "eu-west");
        assert_eq!(seen[0].labels["role"], "web", "host labels ride along");
        let memory = observe(&builtin("HostMemoryHigh"), &facts, NOW);
        assert_eq!(values(&memory)[0].1, 90.0);
        let disk = observe(&builtin("HostDiskFull"), &facts, NOW);
        assert_eq!(values(&disk)[0].1, 42.0);
    }

    #[test]
    fn selectors_pick_hosts_by_region_label_host_and_service() {
        let rule = |extra: RuleDefinition| {
            RuleDefinition {
                name: "R".into(),
                metric: "load".into(),
                threshold: Some(0.1),
                ..extra
            }
            .validate(false)
            .unwrap()
        };
        let mut db = host("h2", "eu-west", 1.0);
        db.labels = [("role".to_owned(), "db".to_owned())].into();
        let facts = Facts {
            hosts: vec![host("h1", "eu-west", 1.0), db, host("h3", "us-east", 1.0)],
            allocations: vec![allocation("a1", "h3", "running", "healthy")],
            ..Facts::default()
        };
        let hosts = |r: Rule| -> Vec<String> {
            values(&observe(&r, &facts, NOW))
                .into_iter()
                .map(|(h, _)| h)
                .collect()
        };
        assert_eq!(
            hosts(rule(RuleDefinition::default())),
            vec!["h1", "h2", "h3"]
        );
        assert_eq!(
            hosts(rule(RuleDefinition {
                region: Some("eu-west".into()),
                ..Default::default()
            })),
            vec!["h1", "h2"]
        );
        assert_eq!(
            hosts(rule(RuleDefinition {
                labels: [("role".to_owned(), "db".to_owned())].into(),
                ..Default::default()
            })),
            vec!["h2"]
        );
        assert_eq!(
            hosts(rule(RuleDefinition {
                host: Some("h1.example".into()),
                ..Default::default()
            })),
            vec!["h1"]
        );
        assert_eq!(
            hosts(rule(RuleDefinition {
                service: Some("crm".into()),
                ..Default::default()
            })),
            vec!["h3"],
            "the hosts running the service"
        );
    }

    #[test]
    fn offline_hosts_report_how_long_they_have_been_silent() {
        let mut gone = host("h2", "eu-west", 0.0);
        gone.online = false;
        gone.last_seen_ms = Some(NOW - 75_500);
        let mut never = host("h3", "eu-west", 0.0);
        never.online = false;
        never.last_seen_ms = None;
        never.enrolled_at_ms = NOW - 10_000;
        let facts = Facts {
            hosts: vec![host("h1", "eu-west", 0.0), gone, never],
            ..Facts::default()
        };
        let seen = observe(&builtin("HostOffline"), &facts, NOW);
        assert_eq!(
            values(&seen),
            vec![("h1".into(), 0.0), ("h2".into(), 75.0), ("h3".into(), 10.0)]
        );
        assert_eq!(
            seen[1].detail,
            "h2.example (eu-west) is offline: not heard from for 1m15s"
        );
    }

    #[test]
    fn certificates_count_days_left() {
        let facts = Facts {
            hosts: vec![host("h1", "eu-west", 0.0)],
            ..Facts::default()
        };
        let seen = observe(&builtin("AgentCertificateExpiring"), &facts, NOW);
        assert!((values(&seen)[0].1 - 20.0 / 24.0).abs() < 1e-9);
        assert!(
            seen[0].detail.contains("expires in 0.83 days"),
            "{}",
            seen[0].detail
        );
    }

    #[test]
    fn unhealthy_means_failed_exited_or_failing_its_check() {
        let cases = [
            ("running", "healthy", 0.0),
            ("running", "none", 0.0),
            ("running", "starting", 0.0),
            ("starting", "starting", 0.0),
            ("pulling", "starting", 0.0),
            ("running", "unhealthy", 1.0),
            ("exited", "unhealthy", 1.0),
            ("failed", "none", 1.0),
        ];
        for (state, health, expected) in cases {
            let facts = Facts {
                hosts: vec![host("h1", "eu-west", 0.0)],
                allocations: vec![allocation("a1", "h1", state, health)],
                ..Facts::default()
            };
            let seen = observe(&builtin("AllocationUnhealthy"), &facts, NOW);
            assert_eq!(
                values(&seen),
                vec![("a1".into(), expected)],
                "{state}/{health}"
            );
            assert_eq!(seen[0].labels["service"], "crm");
            assert_eq!(seen[0].labels["region"], "eu-west");
        }
    }

    #[test]
    fn allocations_on_unknown_hosts_are_skipped() {
        let facts = Facts {
            hosts: vec![],
            allocations: vec![allocation("a1", "gone", "failed", "none")],
            ..Facts::default()
        };
        assert!(observe(&builtin("AllocationUnhealthy"), &facts, NOW).is_empty());
    }

    #[test]
    fn restarts_count_until_the_allocation_has_run_stably() {
        let mut looping = allocation("a1", "h1", "exited", "unhealthy");
        looping.restarts = 4;
        let mut recovering = allocation("a2", "h1", "running", "healthy");
        recovering.restarts = 5;
        recovering.healthy_since_ms = NOW - 60_000;
        let mut stable = allocation("a3", "h1", "running", "healthy");
        stable.restarts = 9;
        stable.healthy_since_ms = NOW - STABLE_RUN_MS;
        let never = allocation("a4", "h1", "running", "healthy");
        let facts = Facts {
            hosts: vec![host("h1", "eu-west", 0.0)],
            allocations: vec![looping, recovering, stable, never],
            ..Facts::default()
        };
        let seen = observe(&builtin("AllocationRestartLoop"), &facts, NOW);
        assert_eq!(
            values(&seen),
            vec![("a1".into(), 4.0), ("a2".into(), 5.0), ("a3".into(), 0.0)]
        );
    }

    #[test]
    fn oom_kills_are_events_keyed_by_restart_count() {
        let mut killed = allocation("a1", "h1", "running", "healthy");
        killed.oom_killed = true;
        killed.restarts = 2;
        let facts = Facts {
            hosts: vec![host("h1", "eu-west", 0.0)],
            allocations: vec![killed, allocation("a2", "h1", "running", "healthy")],
            ..Facts::default()
        };
        let seen = observe(&builtin("AllocationOomKilled"), &facts, NOW);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].reading,
            Reading::Event {
                key: "restarts-2".into(),
                at_ms: NOW - 5_000
            }
        );
        assert!(seen[0].detail.contains("OOM-killed"), "{}", seen[0].detail);
    }

    #[test]
    fn the_latest_finished_deployment_of_each_service_counts() {
        let d = |id: &str, service: &str, phase: &str, at: i64| DeploymentOutcome {
            id: id.into(),
            service: service.into(),
            phase: phase.into(),
            finished_at_ms: at,
        };
        let facts = Facts {
            deployments: vec![
                d("d1", "crm", "failed: health checks failed", NOW - 50_000),
                d("d2", "crm", "succeeded", NOW - 10_000),
                d("d3", "billing", "succeeded", NOW - 50_000),
                d("d4", "billing", "reverted", NOW - 10_000),
                d("d5", "web", "failed: image not found", NOW - 1_000),
                d("d6", "api", "cancelled", NOW - 1_000),
            ],
            ..Facts::default()
        };
        let seen = observe(&builtin("DeploymentFailed"), &facts, NOW);
        let keys: Vec<(String, String)> = seen
            .iter()
            .map(|o| match &o.reading {
                Reading::Event { key, .. } => (o.labels["service"].clone(), key.clone()),
                Reading::Level(_) | Reading::Unknown => panic!("an event"),
            })
            .collect();
        assert_eq!(
            keys,
            vec![("billing".into(), "d4".into()), ("web".into(), "d5".into())]
        );
        assert_eq!(
            seen[1].detail,
            "deployment d5 of web ended failed: image not found"
        );
        let crm_only = RuleDefinition {
            name: "CrmFailed".into(),
            metric: "deployment_failed".into(),
            service: Some("billing".into()),
            ..RuleDefinition::default()
        }
        .validate(false)
        .unwrap();
        assert_eq!(observe(&crm_only, &facts, NOW).len(), 1);
    }

    fn policy(name: &str, service: Option<&str>, backups: PolicyFacts) -> BackupPolicyFacts {
        BackupPolicyFacts {
            name: name.into(),
            service: service.map(str::to_owned),
            rpo: Duration::from_secs(6 * 3600),
            backups: PolicyFacts {
                created_at_ms: Some(NOW - 30 * 86_400_000),
                ..backups
            },
        }
    }

    fn candidate(id: &str, taken_at_ms: i64, state: &str) -> crate::backup::retention::Candidate {
        crate::backup::retention::Candidate {
            id: id.into(),
            taken_at_ms,
            finished_at_ms: Some(taken_at_ms + 60_000),
            state: state.into(),
            verify_state: "not-verified".into(),
            verified_at_ms: None,
            restore_ms: None,
            error: (state == "failed")
                .then(|| "S3 upload failed: 503 Slow Down\nretries: 5".into()),
            verify_error: None,
        }
    }

    fn backup_facts(backups: &[crate::backup::retention::Candidate]) -> PolicyFacts {
        PolicyFacts::from_backups(backups)
    }

    #[test]
    fn a_failed_newest_backup_is_an_event_of_its_policy() {
        const HOUR: i64 = 3_600_000;
        let facts = Facts {
            backup_policies: vec![
                policy(
                    "crm-db",
                    Some("crm"),
                    backup_facts(&[
                        candidate("b-2", NOW - HOUR, "failed"),
                        candidate("b-1", NOW - 3 * HOUR, "ok"),
                    ]),
                ),
                // A failure followed by a success is history.
                policy(
                    "files",
                    None,
                    backup_facts(&[
                        candidate("b-4", NOW - HOUR, "ok"),
                        candidate("b-3", NOW - 3 * HOUR, "failed"),
                    ]),
                ),
            ],
            ..Facts::default()
        };
        let seen = observe(&builtin("BackupFailed"), &facts, NOW);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].reading,
            Reading::Event {
                key: "b-2".into(),
                at_ms: NOW - HOUR + 60_000
            }
        );
        assert_eq!(
            seen[0].labels,
            [
                ("policy".to_owned(), "crm-db".to_owned()),
                ("service".to_owned(), "crm".to_owned())
            ]
            .into()
        );
        assert_eq!(
            seen[0].detail,
            "backup b-2 of policy crm-db failed: S3 upload failed: 503 Slow Down"
        );
        // A policy that never succeeded and whose backup failed.
        let never = Facts {
            backup_policies: vec![policy(
                "new",
                None,
                backup_facts(&[candidate("b-9", NOW - HOUR, "failed")]),
            )],
            ..Facts::default()
        };
        assert_eq!(observe(&builtin("BackupFailed"), &never, NOW).len(), 1);
        // Selected by service: host-bound policies have none.
        let crm_only = RuleDefinition {
            name: "CrmBackupFailed".into(),
            metric: "backup_failed".into(),
            service: Some("crm".into()),
            ..RuleDefinition::default()
        }
        .validate(false)
        .unwrap();
        assert_eq!(observe(&crm_only, &never, NOW).len(), 0);
        assert_eq!(observe(&crm_only, &facts, NOW).len(), 1);
    }

    #[test]
    fn backups_older_than_the_rpo_are_overdue() {
        const HOUR: i64 = 3_600_000;
        let mut fresh_policy = policy("new", None, PolicyFacts::default());
        fresh_policy.backups.created_at_ms = Some(NOW - HOUR);
        let facts = Facts {
            backup_policies: vec![
                policy(
                    "fresh",
                    None,
                    backup_facts(&[candidate("b-1", NOW - HOUR, "ok")]),
                ),
                policy(
                    "stale",
                    None,
                    backup_facts(&[candidate("b-2", NOW - 7 * HOUR, "ok")]),
                ),
                policy(
                    "at-rpo",
                    None,
                    backup_facts(&[candidate("b-3", NOW - 6 * HOUR, "ok")]),
                ),
                // Created a month ago, never succeeded.
                policy("never", None, PolicyFacts::default()),
                // Created an hour ago: its first backup still has time.
                fresh_policy,
            ],
            ..Facts::default()
        };
        let seen = observe(&builtin("BackupOverdue"), &facts, NOW);
        let values: Vec<(String, f64)> = seen
            .iter()
            .map(|o| match o.reading {
                Reading::Level(v) => (o.labels["policy"].clone(), v),
                _ => panic!("a level"),
            })
            .collect();
        assert_eq!(
            values,
            [
                ("fresh".to_owned(), 0.0),
                ("stale".to_owned(), 1.0),
                ("at-rpo".to_owned(), 0.0),
                ("never".to_owned(), 1.0),
                ("new".to_owned(), 0.0),
            ]
        );
        assert_eq!(
            seen[1].detail,
            "backup policy stale: last success 7h ago, RPO 6h"
        );
        assert!(
            seen[3]
                .detail
                .starts_with("backup policy never: no successful backup yet")
        );
    }

    #[test]
    fn a_failed_newest_verification_is_an_event_keyed_by_backup_and_time() {
        const HOUR: i64 = 3_600_000;
        let mut bad = candidate("b-2", NOW - 3 * HOUR, "ok");
        bad.verify_state = "failed".into();
        bad.verified_at_ms = Some(NOW - HOUR);
        bad.verify_error =
            Some("artifact b-2 is missing from every destination (local, offsite)".into());
        let mut good = candidate("b-1", NOW - 5 * HOUR, "ok");
        good.verify_state = "ok".into();
        good.verified_at_ms = Some(NOW - 2 * HOUR);
        let facts = Facts {
            backup_policies: vec![policy(
                "crm-db",
                None,
                backup_facts(&[bad.clone(), good.clone()]),
            )],
            ..Facts::default()
        };
        let seen = observe(&builtin("BackupVerificationFailed"), &facts, NOW);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].reading,
            Reading::Event {
                key: format!("b-2@{}", NOW - HOUR),
                at_ms: NOW - HOUR
            }
        );
        assert_eq!(
            seen[0].detail,
            "verification of backup b-2 of policy crm-db failed: artifact b-2 is missing from every destination (local, offsite)"
        );
        // A newer verification that passed: nothing to report.
        good.verified_at_ms = Some(NOW - 10 * 60_000);
        let facts = Facts {
            backup_policies: vec![policy("crm-db", None, backup_facts(&[bad, good]))],
            ..Facts::default()
        };
        assert!(observe(&builtin("BackupVerificationFailed"), &facts, NOW).is_empty());
    }

    #[test]
    fn stored_policies_become_facts() {
        let row = BackupPolicyRow {
            name: "crm-db".into(),
            spec: crate::backup::spec::example().into(),
            format: "yaml".into(),
            source_kind: "postgres".into(),
            schedule: "0 */2 * * *".into(),
            verify_schedule: String::new(),
            rpo_seconds: 6 * 3600,
            created_at_ms: NOW - 1_000,
            updated_at_ms: NOW - 1_000,
            updated_by: "user:alice".into(),
            last_scheduled_ms: None,
            last_verify_scheduled_ms: None,
        };
        let facts = BackupPolicyFacts::from_rows(&row, &[]);
        assert_eq!(facts.service.as_deref(), Some("crm-postgres"));
        let toml = BackupPolicyRow {
            spec: "name = \"crm-db\"\nservice = \"crm\"\n".into(),
            format: "toml".into(),
            ..row.clone()
        };
        assert_eq!(
            BackupPolicyFacts::from_rows(&toml, &[]).service.as_deref(),
            Some("crm")
        );
        let on_a_host = BackupPolicyRow {
            spec: "name: crm-db\nhost: db-1\n".into(),
            ..row.clone()
        };
        assert_eq!(BackupPolicyFacts::from_rows(&on_a_host, &[]).service, None);
        assert_eq!(facts.rpo, Duration::from_secs(6 * 3600));
        assert_eq!(facts.backups.created_at_ms, Some(NOW - 1_000));
        let broken = BackupPolicyRow {
            spec: "not: [a policy".into(),
            ..row
        };
        assert_eq!(BackupPolicyFacts::from_rows(&broken, &[]).service, None);
    }

    #[test]
    fn memory_percent_needs_a_total() {
        let mut s = sample("h1", 0.0);
        s.memory_total = 0;
        assert_eq!(metric_value(Metric::MemoryPercent, &s), None);
        assert_eq!(metric_value(Metric::Processes, &s), Some(50.0));
    }
}
