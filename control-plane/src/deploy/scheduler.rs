//! Placement: which host each new allocation goes to, or precisely why it
//! has to wait. Pure decisions over plain data (no I/O, no clock, no
//! randomness): the deployment controller gathers the candidate hosts from
//! the fleet registry and the store, calls [`schedule`], and writes the
//! decisions back. [`allocations_to_reschedule`] picks the allocations of
//! hosts that stayed offline past a grace period.
//!
//! Rules, in the order they are applied to each allocation:
//! 1. Region: with `placement.regions` empty any region will do; otherwise
//!    each allocation goes to the listed region furthest below its target
//!    (`RegionCount::Exactly(n)`; `Spread` regions share what the exact
//!    counts leave of `replicas` evenly, the remainder going to the regions
//!    with the most free memory). Allocations of the revision already
//!    running, and those placed or left pending earlier in the batch, count.
//! 2. The host is online and schedulable, and carries every constraint label.
//!    Hosts a `placement.filter` policy excluded ([`HostPolicies`], evaluated
//!    by the controller beforehand and passed in as data) are left out, and
//!    when that leaves none the reason names each host and policy.
//! 3. Every host port the allocation publishes is free on the host
//!    (`port/protocol`, whatever the bind address: conservative).
//! 4. Memory is never overcommitted; CPU is not either unless
//!    [`SchedulerConfig::cpu_overcommit`] is set (it is still reserved).
//! 5. Among the hosts left: fewest allocations of the same service, then
//!    the highest policy score, then most free memory, then smallest host
//!    id — so output is deterministic.
//!
//! Placing a batch updates free capacity, ports and counts as it goes.

use super::model::{Placement, PortMapping, Protocol, RegionCount, Resources};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A host's id as the fleet registry knows it.
pub type HostId = String;
/// An allocation's id (one replica of one revision of a service).
pub type AllocationId = String;
/// A stored, immutable revision of a service.
pub type RevisionId = String;

/// A port published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub port: u16,
    pub protocol: Protocol,
}

impl HostPort {
    pub fn tcp(port: u16) -> Self {
        Self {
            port,
            protocol: Protocol::Tcp,
        }
    }

    pub fn udp(port: u16) -> Self {
        Self {
            port,
            protocol: Protocol::Udp,
        }
    }

    /// The host ports a spec's port mappings publish (unpublished ones are
    /// skipped), sorted and without duplicates.
    pub fn published(ports: &[PortMapping]) -> Vec<HostPort> {
        let set: BTreeSet<HostPort> = ports
            .iter()
            .filter_map(|p| {
                p.host_port.map(|port| HostPort {
                    port,
                    protocol: p.protocol,
                })
            })
            .collect();
        set.into_iter().collect()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{}/{proto}", self.port)
    }
}

/// CPU and memory, as capacity, reservation or free amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Thousandths of a core.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Capacity {
    pub fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
        }
    }

    fn saturating_sub(self, other: Capacity) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }

    fn add(self, other: Capacity) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

impl From<Resources> for Capacity {
    fn from(r: Resources) -> Self {
        Capacity {
            cpu_millis: u64::from(r.cpu_millis),
            memory_bytes: r.memory_bytes,
        }
    }
}

/// How the scheduler treats capacity. Read once from the server config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerConfig {
    /// Held back on every host for the OS, Docker and the agent: it is
    /// subtracted from the inventory's capacity before anything is placed.
    pub host_reserved: Capacity,
    /// Let CPU reservations exceed a host's cores (CPU is compressible;
    /// memory never is). Default: no.
    pub cpu_overcommit: bool,
}

/// Whether a host can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    Online,
    /// Last heard from at `last_seen_ms` (`None`: never).
    Offline {
        last_seen_ms: Option<i64>,
    },
    /// Its certificate was revoked: it will never come back.
    Revoked,
}

/// A host the scheduler may place allocations on, with what is already
/// running there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCandidate {
    pub id: HostId,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub status: HostStatus,
    /// False: cordoned or draining — keeps what it runs, takes nothing new.
    pub schedulable: bool,
    /// From the agent's inventory.
    pub capacity: Capacity,
    /// Sum of the reservations of the allocations placed there.
    pub reserved: Capacity,
    /// Host ports already published by allocations placed there.
    pub ports_in_use: BTreeSet<HostPort>,
    /// Live allocations placed there: service → revision → count.
    pub allocations: BTreeMap<String, BTreeMap<RevisionId, u32>>,
}

impl HostCandidate {
    /// Capacity left for new allocations under `config`.
    pub fn free(&self, config: &SchedulerConfig) -> Capacity {
        self.capacity
            .saturating_sub(config.host_reserved)
            .saturating_sub(self.reserved)
    }

    fn accepts_work(&self) -> bool {
        self.status == HostStatus::Online && self.schedulable
    }

    fn matches(&self, constraints: &BTreeMap<String, String>) -> bool {
        constraints
            .iter()
            .all(|(k, v)| self.labels.get(k) == Some(v))
    }

    /// Live allocations of `service` here, all revisions.
    pub fn count_of(&self, service: &str) -> u32 {
        self.allocations
            .get(service)
            .map(|revs| revs.values().sum())
            .unwrap_or(0)
    }

    /// Live allocations of `service` at `revision` here.
    pub fn count_of_revision(&self, service: &str, revision: &str) -> u32 {
        self.allocations
            .get(service)
            .and_then(|revs| revs.get(revision))
            .copied()
            .unwrap_or(0)
    }
}

/// One allocation waiting for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    pub id: AllocationId,
    pub service: String,
    pub revision: RevisionId,
    /// Replicas the revision wants in total (region shares are computed
    /// from it, not from the batch size).
    pub replicas: u32,
    pub resources: Resources,
    pub placement: Placement,
    /// Host ports it publishes (see [`HostPort::published`]).
    pub ports: Vec<HostPort>,
}

/// Which hosts a pending reason talks about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// `None`: any region.
    pub region: Option<String>,
    pub constraints: BTreeMap<String, String>,
}

impl Scope {
    fn region_suffix(&self) -> String {
        match &self.region {
            Some(r) => format!(" in region {r}"),
            None => String::new(),
        }
    }

    fn constraint_text(&self) -> String {
        self.constraints
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `host matching role=db in region eu-west`
    fn hosts_phrase(&self) -> String {
        let mut s = String::from("host");
        if !self.constraints.is_empty() {
            s.push_str(" matching ");
            s.push_str(&self.constraint_text());
        }
        s.push_str(&self.region_suffix());
        s
    }
}

/// Why an allocation could not be placed; `Display` is the text users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingReason {
    /// No host at all in the scope's region.
    NoHost { scope: Scope },
    /// No online, schedulable host carrying the constraint labels.
    NoOnlineHost { scope: Scope },
    /// `on_every_host`: each listed port is taken on every eligible host;
    /// otherwise no eligible host has all of `ports` free at once.
    PortsTaken {
        scope: Scope,
        ports: Vec<HostPort>,
        on_every_host: bool,
    },
    NotEnoughMemory {
        scope: Scope,
        needed_bytes: u64,
        largest_free_bytes: u64,
        largest_on: HostId,
    },
    NotEnoughCpu {
        scope: Scope,
        needed_millis: u64,
        /// Set when only hosts with this much free memory were considered.
        with_memory_bytes: Option<u64>,
        largest_free_millis: u64,
        largest_on: HostId,
    },
    /// Every online host carrying the constraint labels was excluded by a
    /// placement policy: (host, why), by host id.
    ExcludedByPolicy {
        scope: Scope,
        hosts: Vec<(HostId, String)>,
    },
}

/// Hosts named at most in an [`PendingReason::ExcludedByPolicy`] text.
const EXCLUDED_HOSTS_SHOWN: usize = 5;

/// What `placement.filter` policies said about the candidate hosts for one
/// batch, evaluated by the controller before [`schedule_with_policies`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostPolicies {
    /// Hosts that may not take the batch, with the reasons (each naming
    /// its policy).
    pub excluded: BTreeMap<HostId, Vec<String>>,
    /// Preference among eligible hosts, higher first (absent: 0).
    pub scores: BTreeMap<HostId, f64>,
}

impl HostPolicies {
    fn score(&self, host: &str) -> f64 {
        self.scores.get(host).copied().unwrap_or(0.0)
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingReason::NoHost { scope } => match &scope.region {
                Some(r) => write!(f, "no host is registered in region {r}"),
                None => write!(f, "no host is registered"),
            },
            PendingReason::NoOnlineHost { scope } => {
                write!(f, "no online host")?;
                if !scope.constraints.is_empty() {
                    write!(f, " matches {}", scope.constraint_text())?;
                }
                write!(f, "{}", scope.region_suffix())
            }
            PendingReason::PortsTaken {
                scope,
                ports,
                on_every_host,
            } => {
                let list = ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let region = scope.region_suffix();
                match (on_every_host, ports.len()) {
                    (true, 1) => {
                        write!(f, "port {list} is taken on every eligible host{region}")
                    }
                    (true, _) => {
                        write!(f, "ports {list} are taken on every eligible host{region}")
                    }
                    (false, _) => {
                        write!(f, "no eligible host{region} has all of ports {list} free")
                    }
                }
            }
            PendingReason::NotEnoughMemory {
                scope,
                needed_bytes,
                largest_free_bytes,
                largest_on,
            } => write!(
                f,
                "no {} has {} of free memory (largest free: {} on {largest_on})",
                scope.hosts_phrase(),
                format_bytes(*needed_bytes),
                format_bytes(*largest_free_bytes),
            ),
            PendingReason::NotEnoughCpu {
                scope,
                needed_millis,
                with_memory_bytes,
                largest_free_millis,
                largest_on,
            } => {
                write!(f, "no {}", scope.hosts_phrase())?;
                if let Some(mem) = with_memory_bytes {
                    write!(f, " with {} of free memory", format_bytes(*mem))?;
                }
                write!(
                    f,
                    " has {} of free CPU (largest free: {} on {largest_on})",
                    format_cores(*needed_millis),
                    format_cores(*largest_free_millis),
                )
            }
            PendingReason::ExcludedByPolicy { scope, hosts } => {
                write!(
                    f,
                    "every online {} is excluded by placement policies: ",
                    scope.hosts_phrase()
                )?;
                let shown: Vec<String> = hosts
                    .iter()
                    .take(EXCLUDED_HOSTS_SHOWN)
                    .map(|(host, why)| format!("{host} ({why})"))
                    .collect();
                write!(f, "{}", shown.join("; "))?;
                if hosts.len() > EXCLUDED_HOSTS_SHOWN {
                    write!(f, "; and {} more", hosts.len() - EXCLUDED_HOSTS_SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// What happens to one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Placed { host_id: HostId },
    Pending { reason: PendingReason },
}

/// The decision for one requested allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub allocation_id: AllocationId,
    pub decision: Decision,
}

/// Working state of one host during a batch.
struct Slot<'a> {
    host: &'a HostCandidate,
    free: Capacity,
    ports: BTreeSet<HostPort>,
    /// service → revision → count, including placements of this batch.
    allocations: BTreeMap<String, BTreeMap<RevisionId, u32>>,
}

impl Slot<'_> {
    fn service_count(&self, service: &str) -> u32 {
        self.allocations
            .get(service)
            .map(|revs| revs.values().sum())
            .unwrap_or(0)
    }

    fn revision_count(&self, service: &str, revision: &str) -> u32 {
        self.allocations
            .get(service)
            .and_then(|revs| revs.get(revision))
            .copied()
            .unwrap_or(0)
    }
}

/// Region targets of one (service, revision) within a batch.
struct Group {
    /// `None`: any region.
    targets: Option<Vec<(String, u32)>>,
    /// Allocations of this batch left pending, by region (they still claim
    /// their region's share, so the next ones go elsewhere).
    pending: BTreeMap<String, u32>,
}

/// Places `allocations` (in order) on `hosts`. One [`Scheduled`] per
/// allocation, in input order. Hosts listed twice count once.
pub fn schedule(
    allocations: &[AllocationRequest],
    hosts: &[HostCandidate],
    config: &SchedulerConfig,
) -> Vec<Scheduled> {
    schedule_with_policies(allocations, hosts, config, &HostPolicies::default())
}

/// [`schedule`], leaving out the hosts placement policies excluded and
/// preferring those they scored higher.
pub fn schedule_with_policies(
    allocations: &[AllocationRequest],
    hosts: &[HostCandidate],
    config: &SchedulerConfig,
    policies: &HostPolicies,
) -> Vec<Scheduled> {
    let mut seen = BTreeSet::new();
    let mut slots: Vec<Slot<'_>> = hosts
        .iter()
        .filter(|h| seen.insert(h.id.as_str()))
        .map(|h| Slot {
            host: h,
            free: h.free(config),
            ports: h.ports_in_use.clone(),
            allocations: h.allocations.clone(),
        })
        .collect();
    let mut groups: BTreeMap<(String, RevisionId), Group> = BTreeMap::new();

    allocations
        .iter()
        .map(|alloc| {
            let key = (alloc.service.clone(), alloc.revision.clone());
            let group = groups
                .entry(key)
                .or_insert_with(|| new_group(alloc, &slots));
            let region = choose_region(alloc, group, &slots);
            let decision = place_one(alloc, region.as_deref(), &mut slots, config, policies);
            if let (Decision::Pending { .. }, Some(r)) = (&decision, region) {
                *group.pending.entry(r).or_insert(0) += 1;
            }
            Scheduled {
                allocation_id: alloc.id.clone(),
                decision,
            }
        })
        .collect()
}

fn new_group(alloc: &AllocationRequest, slots: &[Slot<'_>]) -> Group {
    let regions = &alloc.placement.regions;
    if regions.is_empty() {
        return Group {
            targets: None,
            pending: BTreeMap::new(),
        };
    }
    let exact: u32 = regions
        .iter()
        .map(|r| match r.count {
            RegionCount::Exactly(n) => n,
            RegionCount::Spread => 0,
        })
        .sum();
    let spread: Vec<&str> = regions
        .iter()
        .filter(|r| r.count == RegionCount::Spread)
        .map(|r| r.region.as_str())
        .collect();
    let share = alloc.replicas.saturating_sub(exact);
    let (base, remainder) = match u32::try_from(spread.len()) {
        Ok(k) if k > 0 => (share / k, share % k),
        _ => (0, 0),
    };
    // The remainder goes to the spread regions with the most free memory
    // on eligible hosts, then by name.
    let mut by_room: Vec<(&str, u64)> = spread
        .iter()
        .map(|r| (*r, region_free_memory(r, &alloc.placement, slots)))
        .collect();
    by_room.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let extra: BTreeSet<&str> = by_room
        .iter()
        .take(remainder as usize)
        .map(|(r, _)| *r)
        .collect();
    let targets = regions
        .iter()
        .map(|r| {
            let n = match r.count {
                RegionCount::Exactly(n) => n,
                RegionCount::Spread => base + u32::from(extra.contains(r.region.as_str())),
            };
            (r.region.clone(), n)
        })
        .collect();
    Group {
        targets: Some(targets),
        pending: BTreeMap::new(),
    }
}

fn region_free_memory(region: &str, placement: &Placement, slots: &[Slot<'_>]) -> u64 {
    slots
        .iter()
        .filter(|s| {
            s.host.region == region
                && s.host.accepts_work()
                && s.host.matches(&placement.constraints)
        })
        .map(|s| s.free.memory_bytes)
        .fold(0u64, u64::saturating_add)
}

/// The listed region furthest below its target; ties go to the region with
/// the most free memory, then by name.
fn choose_region(alloc: &AllocationRequest, group: &Group, slots: &[Slot<'_>]) -> Option<String> {
    let targets = group.targets.as_ref()?;
    targets
        .iter()
        .map(|(region, target)| {
            let running: u32 = slots
                .iter()
                .filter(|s| &s.host.region == region)
                .map(|s| s.revision_count(&alloc.service, &alloc.revision))
                .sum();
            let pending = group.pending.get(region).copied().unwrap_or(0);
            let deficit = i64::from(*target) - i64::from(running) - i64::from(pending);
            let room = region_free_memory(region, &alloc.placement, slots);
            (region, deficit, room)
        })
        .max_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)).then(b.0.cmp(a.0)))
        .map(|(region, _, _)| region.clone())
}

fn place_one(
    alloc: &AllocationRequest,
    region: Option<&str>,
    slots: &mut [Slot<'_>],
    config: &SchedulerConfig,
    policies: &HostPolicies,
) -> Decision {
    let scope = Scope {
        region: region.map(str::to_owned),
        constraints: alloc.placement.constraints.clone(),
    };
    let need = Capacity::from(alloc.resources);
    let pending = |reason| Decision::Pending { reason };

    let in_scope: Vec<usize> = (0..slots.len())
        .filter(|&i| region.is_none_or(|r| slots[i].host.region == r))
        .collect();
    if in_scope.is_empty() {
        return pending(PendingReason::NoHost { scope });
    }
    let eligible: Vec<usize> = in_scope
        .into_iter()
        .filter(|&i| slots[i].host.accepts_work() && slots[i].host.matches(&scope.constraints))
        .collect();
    if eligible.is_empty() {
        return pending(PendingReason::NoOnlineHost { scope });
    }
    let (excluded, eligible): (Vec<usize>, Vec<usize>) = eligible
        .into_iter()
        .partition(|&i| policies.excluded.contains_key(&slots[i].host.id));
    if eligible.is_empty() {
        let mut hosts: Vec<(HostId, String)> = excluded
            .iter()
            .map(|&i| {
                let id = slots[i].host.id.clone();
                let why = policies
                    .excluded
                    .get(&id)
                    .map(|r| r.join("; "))
                    .unwrap_or_default();
                (id, why)
            })
            .collect();
        hosts.sort();
        return pending(PendingReason::ExcludedByPolicy { scope, hosts });
    }
    let port_ok: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&i| alloc.ports.iter().all(|p| !slots[i].ports.contains(p)))
        .collect();
    if port_ok.is_empty() {
        let mut wanted: Vec<HostPort> = alloc.ports.clone();
        wanted.sort();
        wanted.dedup();
        let everywhere: Vec<HostPort> = wanted
            .iter()
            .copied()
            .filter(|p| eligible.iter().all(|&i| slots[i].ports.contains(p)))
            .collect();
        let on_every_host = !everywhere.is_empty();
        return pending(PendingReason::PortsTaken {
            scope,
            ports: if on_every_host { everywhere } else { wanted },
            on_every_host,
        });
    }
    let mem_ok: Vec<usize> = port_ok
        .iter()
        .copied()
        .filter(|&i| slots[i].free.memory_bytes >= need.memory_bytes)
        .collect();
    if mem_ok.is_empty() {
        let best = largest(&port_ok, slots, |s| s.free.memory_bytes);
        return pending(PendingReason::NotEnoughMemory {
            scope,
            needed_bytes: need.memory_bytes,
            largest_free_bytes: slots[best].free.memory_bytes,
            largest_on: slots[best].host.id.clone(),
        });
    }
    let fits: Vec<usize> = if config.cpu_overcommit {
        mem_ok.clone()
    } else {
        mem_ok
            .iter()
            .copied()
            .filter(|&i| slots[i].free.cpu_millis >= need.cpu_millis)
            .collect()
    };
    if fits.is_empty() {
        let best = largest(&mem_ok, slots, |s| s.free.cpu_millis);
        return pending(PendingReason::NotEnoughCpu {
            scope,
            needed_millis: need.cpu_millis,
            with_memory_bytes: (mem_ok.len() < port_ok.len()).then_some(need.memory_bytes),
            largest_free_millis: slots[best].free.cpu_millis,
            largest_on: slots[best].host.id.clone(),
        });
    }
    let chosen = fits
        .iter()
        .copied()
        .min_by(|&a, &b| {
            let (sa, sb) = (&slots[a], &slots[b]);
            sa.service_count(&alloc.service)
                .cmp(&sb.service_count(&alloc.service))
                .then(
                    policies
                        .score(&sb.host.id)
                        .total_cmp(&policies.score(&sa.host.id)),
                )
                .then(sb.free.memory_bytes.cmp(&sa.free.memory_bytes))
                .then(sa.host.id.cmp(&sb.host.id))
        })
        .unwrap_or(fits[0]);
    let slot = &mut slots[chosen];
    slot.free = slot.free.saturating_sub(need);
    slot.ports.extend(alloc.ports.iter().copied());
    *slot
        .allocations
        .entry(alloc.service.clone())
        .or_default()
        .entry(alloc.revision.clone())
        .or_insert(0) += 1;
    Decision::Placed {
        host_id: slot.host.id.clone(),
    }
}

/// Index of the slot with the largest `key`, smallest host id on ties.
fn largest(candidates: &[usize], slots: &[Slot<'_>], key: impl Fn(&Slot<'_>) -> u64) -> usize {
    candidates
        .iter()
        .copied()
        .max_by(|&a, &b| {
            key(&slots[a])
                .cmp(&key(&slots[b]))
                .then(slots[b].host.id.cmp(&slots[a].host.id))
        })
        .unwrap_or(candidates[0])
}

/// A live allocation (meant to run, not being stopped) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedAllocation {
    pub id: AllocationId,
    pub host_id: HostId,
}

/// The allocations to move elsewhere, in input order: those on hosts that
/// are revoked, unknown, or offline for longer than `grace` (counted from
/// when the host was last heard from; never heard from counts as past it).
/// The caller stops them, creates replacements and calls [`schedule`].
pub fn allocations_to_reschedule(
    hosts: &[HostCandidate],
    allocations: &[HostedAllocation],
    now_ms: i64,
    grace: Duration,
) -> Vec<AllocationId> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let lost: BTreeMap<&str, bool> = hosts
        .iter()
        .map(|h| {
            let lost = match h.status {
                HostStatus::Online => false,
                HostStatus::Revoked => true,
                HostStatus::Offline { last_seen_ms: None } => true,
                HostStatus::Offline {
                    last_seen_ms: Some(seen),
                } => now_ms.saturating_sub(seen) > grace_ms,
            };
            (h.id.as_str(), lost)
        })
        .collect();
    allocations
        .iter()
        .filter(|a| lost.get(a.host_id.as_str()).copied().unwrap_or(true))
        .map(|a| a.id.clone())
        .collect()
}

/// Builds the per-host view [`schedule`] needs from a host's live
/// allocations: reservations, ports and counts. A convenience for callers
/// that hold allocation rows rather than totals.
pub fn tally<'a>(
    placed: impl IntoIterator<Item = (&'a str, &'a str, Capacity, &'a [HostPort])>,
) -> (
    Capacity,
    BTreeSet<HostPort>,
    BTreeMap<String, BTreeMap<RevisionId, u32>>,
) {
    let mut reserved = Capacity::default();
    let mut ports = BTreeSet::new();
    let mut counts: BTreeMap<String, BTreeMap<RevisionId, u32>> = BTreeMap::new();
    for (service, revision, res, published) in placed {
        reserved = reserved.add(res);
        ports.extend(published.iter().copied());
        *counts
            .entry(service.to_owned())
            .or_default()
            .entry(revision.to_owned())
            .or_insert(0) += 1;
    }
    (reserved, ports, counts)
}

/// `2 GiB`, `1.5 GiB`, `512 MiB`, `100 B`: binary units, at most two
/// decimals.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut scale: u64 = 1;
    while unit + 1 < UNITS.len() && bytes >= scale.saturating_mul(1024) {
        scale *= 1024;
        unit += 1;
    }
    format!("{} {}", decimal(bytes, scale), UNITS[unit])
}

/// `1 core`, `1.5 cores`, `0.25 cores`.
pub fn format_cores(millis: u64) -> String {
    let n = decimal(millis, 1000);
    if millis == 1000 {
        format!("{n} core")
    } else {
        format!("{n} cores")
    }
}

/// `value / scale` with up to two decimals, trailing zeros trimmed,
/// rounded down so a "largest free" never reads as more than it is.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let hundredths = u128::from(value % scale) * 100 / u128::from(scale);
    match hundredths {
        0 => whole.to_string(),
        h if h % 10 == 0 => format!("{whole}.{}", h / 10),
        h => format!("{whole}.{h:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::RegionPlacement;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn host(id: &str, region: &str, cpu: u64, mem: u64) -> HostCandidate {
        HostCandidate {
            id: id.to_owned(),
            region: region.to_owned(),
            labels: BTreeMap::new(),
            status: HostStatus::Online,
            schedulable: true,
            capacity: Capacity::new(cpu, mem),
            reserved: Capacity::default(),
            ports_in_use: BTreeSet::new(),
            allocations: BTreeMap::new(),
        }
    }

    fn labelled(mut h: HostCandidate, k: &str, v: &str) -> HostCandidate {
        h.labels.insert(k.to_owned(), v.to_owned());
        h
    }

    fn req(id: &str, cpu: u32, mem: u64) -> AllocationRequest {
        AllocationRequest {
            id: id.to_owned(),
            service: "web".to_owned(),
            revision: "r1".to_owned(),
            replicas: 1,
            resources: Resources {
                cpu_millis: cpu,
                memory_bytes: mem,
                ..Resources::default()
            },
            placement: Placement::default(),
            ports: vec![],
        }
    }

    fn batch(n: usize, cpu: u32, mem: u64) -> Vec<AllocationRequest> {
        (0..n)
            .map(|i| AllocationRequest {
                replicas: u32::try_from(n).unwrap(),
                ..req(&format!("a{i}"), cpu, mem)
            })
            .collect()
    }

    fn with_regions(
        mut reqs: Vec<AllocationRequest>,
        regions: &[(&str, RegionCount)],
    ) -> Vec<AllocationRequest> {
        for r in &mut reqs {
            r.placement.regions = regions
                .iter()
                .map(|(name, count)| RegionPlacement {
                    region: (*name).to_owned(),
                    count: *count,
                })
                .collect();
        }
        reqs
    }

    fn excluding(hosts: &[(&str, &str)]) -> HostPolicies {
        HostPolicies {
            excluded: hosts
                .iter()
                .map(|(h, why)| ((*h).to_owned(), vec![(*why).to_owned()]))
                .collect(),
            scores: BTreeMap::new(),
        }
    }

    #[test]
    fn hosts_excluded_by_policy_take_nothing() {
        let hosts = [
            host("h1", "eu", 4000, 8 * GIB),
            host("h2", "eu", 4000, 4 * GIB),
        ];
        let policies = excluding(&[("h1", "policy gpu-only: no GPU")]);
        let out = schedule_with_policies(
            &batch(2, 100, MIB),
            &hosts,
            &SchedulerConfig::default(),
            &policies,
        );
        assert_eq!(render(&out), "a0 -> h2\na1 -> h2");
    }

    #[test]
    fn when_policies_exclude_every_host_the_reason_names_each() {
        let hosts = [
            host("h2", "eu", 4000, 8 * GIB),
            host("h1", "eu", 4000, 8 * GIB),
            HostCandidate {
                status: HostStatus::Revoked,
                ..host("h3", "eu", 4000, 8 * GIB)
            },
        ];
        let policies = excluding(&[
            ("h1", "policy maintenance: host is draining"),
            (
                "h2",
                "policy window failed: it ran longer than its 10 ms CPU budget (fail closed)",
            ),
        ]);
        let out = schedule_with_policies(
            &batch(1, 100, MIB),
            &hosts,
            &SchedulerConfig::default(),
            &policies,
        );
        assert_eq!(
            render(&out),
            "a0 -> pending: every online host is excluded by placement policies: h1 (policy maintenance: host is draining); h2 (policy window failed: it ran longer than its 10 ms CPU budget (fail closed))"
        );
        let many: Vec<HostCandidate> = (0..7)
            .map(|i| host(&format!("h{i}"), "eu", 1000, GIB))
            .collect();
        let all: Vec<(String, String)> = (0..7)
            .map(|i| (format!("h{i}"), "policy p: no".to_owned()))
            .collect();
        let policies = HostPolicies {
            excluded: all
                .iter()
                .map(|(h, r)| (h.clone(), vec![r.clone()]))
                .collect(),
            scores: BTreeMap::new(),
        };
        let out = schedule_with_policies(
            &batch(1, 100, MIB),
            &many,
            &SchedulerConfig::default(),
            &policies,
        );
        assert!(
            render(&out).ends_with("h4 (policy p: no); and 2 more"),
            "{}",
            render(&out)
        );
    }

    #[test]
    fn policy_scores_break_ties_after_spreading() {
        let hosts = [
            host("h1", "eu", 4000, 8 * GIB),
            host("h2", "eu", 4000, 4 * GIB),
        ];
        let policies = HostPolicies {
            excluded: BTreeMap::new(),
            scores: [("h2".to_owned(), 5.0)].into(),
        };
        let out = schedule_with_policies(
            &batch(3, 100, MIB),
            &hosts,
            &SchedulerConfig::default(),
            &policies,
        );
        // h2 is preferred, but replicas still spread first.
        assert_eq!(render(&out), "a0 -> h2\na1 -> h1\na2 -> h2");
        let plain = schedule(&batch(1, 100, MIB), &hosts, &SchedulerConfig::default());
        assert_eq!(render(&plain), "a0 -> h1");
    }

    /// `a0 -> h1`, `a1 -> pending: reason` — one line per allocation.
    fn render(out: &[Scheduled]) -> String {
        out.iter()
            .map(|s| match &s.decision {
                Decision::Placed { host_id } => format!("{} -> {host_id}", s.allocation_id),
                Decision::Pending { reason } => format!("{} -> pending: {reason}", s.allocation_id),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn run(reqs: &[AllocationRequest], hosts: &[HostCandidate]) -> String {
        render(&schedule(reqs, hosts, &SchedulerConfig::default()))
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            reqs: Vec<AllocationRequest>,
            hosts: Vec<HostCandidate>,
            want: &'static str,
        }
        let mut taken = host("h1", "eu-west", 4000, 4 * GIB);
        taken.ports_in_use.insert(HostPort::tcp(8080));
        let mut taken2 = host("h2", "eu-west", 4000, 4 * GIB);
        taken2.ports_in_use.insert(HostPort::tcp(8080));
        let mut half_used = host("h-abc", "eu-west", 4000, 4 * GIB);
        half_used.reserved = Capacity::new(0, 2 * GIB + GIB / 2);
        let mut offline = host("h0", "eu-west", 4000, 64 * GIB);
        offline.status = HostStatus::Offline {
            last_seen_ms: Some(0),
        };
        let mut cordoned = host("h00", "eu-west", 4000, 64 * GIB);
        cordoned.schedulable = false;
        let ported = |id: &str, ports: Vec<HostPort>| AllocationRequest {
            ports,
            ..req(id, 100, MIB)
        };
        let constrained = |id: &str| {
            let mut r = req(id, 100, MIB);
            r.placement
                .constraints
                .insert("role".to_owned(), "db".to_owned());
            r
        };

        let cases = vec![
            Case {
                name: "fits on the host with most free memory",
                reqs: batch(1, 100, GIB),
                hosts: vec![
                    host("h1", "eu-west", 4000, 2 * GIB),
                    host("h2", "eu-west", 4000, 4 * GIB),
                ],
                want: "a0 -> h2",
            },
            Case {
                name: "host id breaks ties",
                reqs: batch(1, 100, GIB),
                hosts: vec![
                    host("h2", "eu-west", 4000, 4 * GIB),
                    host("h1", "eu-west", 4000, 4 * GIB),
                ],
                want: "a0 -> h1",
            },
            Case {
                name: "capacity exhaustion leaves the rest pending with the largest free",
                reqs: batch(3, 100, 2 * GIB),
                hosts: vec![
                    host("h1", "eu-west", 4000, 3 * GIB),
                    host("h2", "eu-west", 4000, 2 * GIB),
                ],
                want: "a0 -> h1\na1 -> h2\na2 -> pending: no host has 2 GiB of free memory (largest free: 1 GiB on h1)",
            },
            Case {
                name: "memory text from the issue, with region",
                reqs: with_regions(batch(1, 100, 2 * GIB), &[("eu-west", RegionCount::Spread)]),
                hosts: vec![half_used.clone()],
                want: "a0 -> pending: no host in region eu-west has 2 GiB of free memory (largest free: 1.5 GiB on h-abc)",
            },
            Case {
                name: "offline and cordoned hosts are ignored",
                reqs: batch(1, 100, GIB),
                hosts: vec![
                    offline.clone(),
                    cordoned.clone(),
                    host("h9", "eu-west", 1000, 2 * GIB),
                ],
                want: "a0 -> h9",
            },
            Case {
                name: "only offline hosts",
                reqs: with_regions(batch(1, 100, GIB), &[("eu-west", RegionCount::Spread)]),
                hosts: vec![offline.clone(), cordoned.clone()],
                want: "a0 -> pending: no online host in region eu-west",
            },
            Case {
                name: "no host registered in the region",
                reqs: with_regions(batch(1, 100, GIB), &[("ap-south", RegionCount::Exactly(1))]),
                hosts: vec![host("h1", "eu-west", 4000, 4 * GIB)],
                want: "a0 -> pending: no host is registered in region ap-south",
            },
            Case {
                name: "no hosts at all",
                reqs: batch(1, 100, GIB),
                hosts: vec![],
                want: "a0 -> pending: no host is registered",
            },
            Case {
                name: "constraints must all match",
                reqs: vec![constrained("a0")],
                hosts: vec![
                    host("h1", "eu-west", 4000, 8 * GIB),
                    labelled(host("h2", "eu-west", 4000, 2 * GIB), "role", "db"),
                ],
                want: "a0 -> h2",
            },
            Case {
                name: "constraint not met names the label",
                reqs: with_regions(vec![constrained("a0")], &[("eu-west", RegionCount::Spread)]),
                hosts: vec![labelled(
                    host("h1", "eu-west", 4000, 8 * GIB),
                    "role",
                    "web",
                )],
                want: "a0 -> pending: no online host matches role=db in region eu-west",
            },
            Case {
                name: "constraint met only by an offline host",
                reqs: vec![constrained("a0")],
                hosts: vec![labelled(offline.clone(), "role", "db")],
                want: "a0 -> pending: no online host matches role=db",
            },
            Case {
                name: "memory reason mentions the constraint",
                reqs: vec![AllocationRequest {
                    resources: Resources {
                        cpu_millis: 100,
                        memory_bytes: 4 * GIB,
                        ..Resources::default()
                    },
                    ..constrained("a0")
                }],
                hosts: vec![
                    labelled(host("h1", "eu-west", 4000, 3 * GIB), "role", "db"),
                    host("h2", "eu-west", 4000, 64 * GIB),
                ],
                want: "a0 -> pending: no host matching role=db has 4 GiB of free memory (largest free: 3 GiB on h1)",
            },
            Case {
                name: "a taken port moves the allocation",
                reqs: vec![ported("a0", vec![HostPort::tcp(8080)])],
                hosts: vec![taken.clone(), host("h2", "eu-west", 1000, GIB)],
                want: "a0 -> h2",
            },
            Case {
                name: "udp and tcp are different ports",
                reqs: vec![ported("a0", vec![HostPort::udp(8080)])],
                hosts: vec![taken.clone()],
                want: "a0 -> h1",
            },
            Case {
                name: "port taken everywhere",
                reqs: vec![ported("a0", vec![HostPort::tcp(8080), HostPort::tcp(9090)])],
                hosts: vec![taken.clone(), taken2.clone()],
                want: "a0 -> pending: port 8080/tcp is taken on every eligible host",
            },
            Case {
                name: "ports taken on different hosts",
                reqs: vec![ported("a0", vec![HostPort::tcp(8080), HostPort::tcp(9090)])],
                hosts: vec![taken.clone(), {
                    let mut h = host("h2", "eu-west", 4000, GIB);
                    h.ports_in_use.insert(HostPort::tcp(9090));
                    h
                }],
                want: "a0 -> pending: no eligible host has all of ports 8080/tcp, 9090/tcp free",
            },
            Case {
                name: "a batch claims its own ports",
                reqs: vec![
                    ported("a0", vec![HostPort::tcp(80)]),
                    ported("a1", vec![HostPort::tcp(80)]),
                    ported("a2", vec![HostPort::tcp(80)]),
                ],
                hosts: vec![
                    host("h1", "eu-west", 4000, 4 * GIB),
                    host("h2", "eu-west", 4000, 4 * GIB),
                ],
                want: "a0 -> h1\na1 -> h2\na2 -> pending: port 80/tcp is taken on every eligible host",
            },
            Case {
                name: "cpu is reserved and not overcommitted",
                reqs: batch(3, 1500, MIB),
                hosts: vec![
                    host("h1", "eu-west", 2000, 4 * GIB),
                    host("h2", "eu-west", 2000, 4 * GIB),
                ],
                want: "a0 -> h1\na1 -> h2\na2 -> pending: no host has 1.5 cores of free CPU (largest free: 0.5 cores on h1)",
            },
            Case {
                name: "cpu reason narrows to hosts with the memory",
                reqs: batch(1, 2000, 2 * GIB),
                hosts: vec![
                    host("h1", "eu-west", 1000, 4 * GIB),
                    host("h2", "eu-west", 8000, GIB),
                ],
                want: "a0 -> pending: no host with 2 GiB of free memory has 2 cores of free CPU (largest free: 1 core on h1)",
            },
            Case {
                name: "spread over hosts by same-service count first",
                reqs: batch(4, 100, MIB),
                hosts: vec![
                    host("h1", "eu-west", 4000, 8 * GIB),
                    host("h2", "eu-west", 4000, 2 * GIB),
                    host("h3", "eu-west", 4000, GIB),
                ],
                want: "a0 -> h1\na1 -> h2\na2 -> h3\na3 -> h1",
            },
            Case {
                name: "existing allocations of the service count for spreading",
                reqs: batch(2, 100, MIB),
                hosts: vec![
                    {
                        let mut h = host("h1", "eu-west", 4000, 8 * GIB);
                        h.allocations
                            .insert("web".into(), BTreeMap::from([("r0".into(), 2)]));
                        h
                    },
                    host("h2", "eu-west", 4000, 2 * GIB),
                ],
                want: "a0 -> h2\na1 -> h2",
            },
            Case {
                name: "other services do not count for spreading",
                reqs: batch(1, 100, MIB),
                hosts: vec![
                    {
                        let mut h = host("h1", "eu-west", 4000, 8 * GIB);
                        h.allocations
                            .insert("db".into(), BTreeMap::from([("r9".into(), 5)]));
                        h
                    },
                    host("h2", "eu-west", 4000, 2 * GIB),
                ],
                want: "a0 -> h1",
            },
            Case {
                name: "exact region counts",
                reqs: with_regions(
                    batch(3, 100, MIB),
                    &[
                        ("eu-west", RegionCount::Exactly(1)),
                        ("us-east", RegionCount::Exactly(2)),
                    ],
                ),
                hosts: vec![
                    host("e1", "eu-west", 4000, 8 * GIB),
                    host("u1", "us-east", 4000, GIB),
                    host("u2", "us-east", 4000, GIB),
                ],
                want: "a0 -> u1\na1 -> e1\na2 -> u2",
            },
            Case {
                name: "a region without room keeps its share pending; others are not overfilled",
                reqs: with_regions(
                    batch(4, 100, 2 * GIB),
                    &[
                        ("eu-west", RegionCount::Exactly(2)),
                        ("us-east", RegionCount::Exactly(2)),
                    ],
                ),
                hosts: vec![
                    host("e1", "eu-west", 4000, GIB),
                    host("u1", "us-east", 4000, 8 * GIB),
                ],
                want: "a0 -> u1\na1 -> pending: no host in region eu-west has 2 GiB of free memory (largest free: 1 GiB on e1)\na2 -> u1\na3 -> pending: no host in region eu-west has 2 GiB of free memory (largest free: 1 GiB on e1)",
            },
            Case {
                name: "spread shares evenly",
                reqs: with_regions(
                    batch(4, 100, MIB),
                    &[
                        ("eu-west", RegionCount::Spread),
                        ("us-east", RegionCount::Spread),
                    ],
                ),
                hosts: vec![
                    host("e1", "eu-west", 4000, 8 * GIB),
                    host("e2", "eu-west", 4000, 8 * GIB),
                    host("u1", "us-east", 4000, GIB),
                ],
                want: "a0 -> e1\na1 -> u1\na2 -> e2\na3 -> u1",
            },
            Case {
                name: "spread remainder goes to the region with most free capacity",
                reqs: with_regions(
                    batch(3, 100, MIB),
                    &[
                        ("eu-west", RegionCount::Spread),
                        ("us-east", RegionCount::Spread),
                    ],
                ),
                hosts: vec![
                    host("e1", "eu-west", 4000, GIB),
                    host("u1", "us-east", 4000, 4 * GIB),
                    host("u2", "us-east", 4000, 4 * GIB),
                ],
                want: "a0 -> u1\na1 -> u2\na2 -> e1",
            },
            Case {
                name: "spread shares what exact counts leave",
                reqs: with_regions(
                    batch(5, 100, MIB),
                    &[
                        ("eu-west", RegionCount::Exactly(3)),
                        ("us-east", RegionCount::Spread),
                        ("ap-south", RegionCount::Spread),
                    ],
                ),
                hosts: vec![
                    host("e1", "eu-west", 4000, GIB),
                    host("u1", "us-east", 4000, GIB),
                    host("p1", "ap-south", 4000, GIB),
                ],
                want: "a0 -> e1\na1 -> e1\na2 -> p1\na3 -> u1\na4 -> e1",
            },
            Case {
                name: "running allocations of the revision count toward region targets",
                reqs: with_regions(
                    vec![AllocationRequest {
                        replicas: 2,
                        ..req("a0", 100, MIB)
                    }],
                    &[
                        ("eu-west", RegionCount::Spread),
                        ("us-east", RegionCount::Spread),
                    ],
                ),
                hosts: vec![
                    {
                        let mut h = host("e1", "eu-west", 4000, 8 * GIB);
                        h.allocations
                            .insert("web".into(), BTreeMap::from([("r1".into(), 1)]));
                        h
                    },
                    host("u1", "us-east", 4000, GIB),
                ],
                want: "a0 -> u1",
            },
            Case {
                name: "host reservation from inventory is the budget",
                reqs: batch(1, 100, 3 * GIB),
                hosts: vec![{
                    let mut h = host("h1", "eu-west", 4000, 4 * GIB);
                    h.reserved = Capacity::new(0, GIB + 1);
                    h
                }],
                want: "a0 -> pending: no host has 3 GiB of free memory (largest free: 2.99 GiB on h1)",
            },
        ];

        for case in cases {
            assert_eq!(
                run(&case.reqs, &case.hosts),
                case.want,
                "case: {}",
                case.name
            );
        }
    }

    #[test]
    fn host_reservation_is_subtracted() {
        let config = SchedulerConfig {
            host_reserved: Capacity::new(500, 512 * MIB),
            cpu_overcommit: false,
        };
        let hosts = [host("h1", "eu-west", 2000, 2 * GIB)];
        let out = schedule(&batch(2, 100, GIB), &hosts, &config);
        assert_eq!(
            render(&out),
            "a0 -> h1\na1 -> pending: no host has 1 GiB of free memory (largest free: 512 MiB on h1)"
        );
    }

    #[test]
    fn cpu_overcommit_is_opt_in_and_memory_still_is_not() {
        let config = SchedulerConfig {
            cpu_overcommit: true,
            ..SchedulerConfig::default()
        };
        let hosts = [host("h1", "eu-west", 1000, 3 * GIB)];
        let out = schedule(&batch(4, 800, GIB), &hosts, &config);
        assert_eq!(
            render(&out),
            "a0 -> h1\na1 -> h1\na2 -> h1\na3 -> pending: no host has 1 GiB of free memory (largest free: 0 B on h1)"
        );
    }

    #[test]
    fn memory_is_never_overcommitted_across_a_batch() {
        // Many shapes of batches and hosts; the sum placed on every host
        // never exceeds its free memory, and nothing fitting is left pending
        // while a host could still take it.
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let hosts: Vec<HostCandidate> = (0..1 + next(6))
                .map(|i| {
                    let mut h = host(&format!("h{i}"), "eu-west", 500 + next(4000), next(8) * GIB);
                    h.reserved = Capacity::new(next(500), next(2) * GIB);
                    h
                })
                .collect();
            let reqs: Vec<AllocationRequest> = (0..next(20))
                .map(|i| {
                    req(
                        &format!("a{i}"),
                        u32::try_from(next(1500)).unwrap(),
                        (1 + next(4)) * GIB / 2,
                    )
                })
                .collect();
            let config = SchedulerConfig::default();
            let out = schedule(&reqs, &hosts, &config);
            assert_eq!(out.len(), reqs.len());
            for h in &hosts {
                let free = h.free(&config);
                let (mut mem, mut cpu) = (0u64, 0u64);
                for (r, s) in reqs.iter().zip(&out) {
                    if s.decision
                        == (Decision::Placed {
                            host_id: h.id.clone(),
                        })
                    {
                        mem += r.resources.memory_bytes;
                        cpu += u64::from(r.resources.cpu_millis);
                    }
                }
                assert!(mem <= free.memory_bytes, "memory overcommitted on {}", h.id);
                assert!(cpu <= free.cpu_millis, "cpu overcommitted on {}", h.id);
            }
            // Deterministic: the same input gives the same output.
            assert_eq!(schedule(&reqs, &hosts, &config), out);
        }
    }

    #[test]
    fn pending_reasons_are_typed_values() {
        let out = schedule(
            &with_regions(
                batch(1, 100, 2 * GIB),
                &[("eu-west", RegionCount::Exactly(1))],
            ),
            &[host("h-abc", "eu-west", 4000, GIB + GIB / 2)],
            &SchedulerConfig::default(),
        );
        assert_eq!(
            out[0].decision,
            Decision::Pending {
                reason: PendingReason::NotEnoughMemory {
                    scope: Scope {
                        region: Some("eu-west".into()),
                        constraints: BTreeMap::new(),
                    },
                    needed_bytes: 2 * GIB,
                    largest_free_bytes: GIB + GIB / 2,
                    largest_on: "h-abc".into(),
                }
            }
        );
    }

    #[test]
    fn reschedule_after_grace() {
        let grace = Duration::from_secs(300);
        let now = 1_000_000;
        let mut recent = host("recent", "eu-west", 1, 1);
        recent.status = HostStatus::Offline {
            last_seen_ms: Some(now - 300_000),
        };
        let mut gone = host("gone", "eu-west", 1, 1);
        gone.status = HostStatus::Offline {
            last_seen_ms: Some(now - 300_001),
        };
        let mut never = host("never", "eu-west", 1, 1);
        never.status = HostStatus::Offline { last_seen_ms: None };
        let mut revoked = host("revoked", "eu-west", 1, 1);
        revoked.status = HostStatus::Revoked;
        let hosts = [host("up", "eu-west", 1, 1), recent, gone, never, revoked];
        let allocs: Vec<HostedAllocation> = [
            ("a1", "up"),
            ("a2", "recent"),
            ("a3", "gone"),
            ("a4", "never"),
            ("a5", "revoked"),
            ("a6", "deleted"),
            ("a7", "up"),
            ("a8", "gone"),
        ]
        .iter()
        .map(|(id, h)| HostedAllocation {
            id: (*id).into(),
            host_id: (*h).into(),
        })
        .collect();
        assert_eq!(
            allocations_to_reschedule(&hosts, &allocs, now, grace),
            ["a3", "a4", "a5", "a6", "a8"]
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(512 * MIB), "512 MiB");
        assert_eq!(format_bytes(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(format_bytes(GIB + GIB / 4), "1.25 GiB");
        assert_eq!(format_bytes(u64::MAX), "15.99 EiB");
        assert_eq!(format_cores(1000), "1 core");
        assert_eq!(format_cores(250), "0.25 cores");
        assert_eq!(format_cores(2000), "2 cores");
        assert_eq!(HostPort::udp(53).to_string(), "53/udp");
        let mappings = [
            PortMapping {
                container_port: 80,
                host_port: Some(8080),
                host_ip: None,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                container_port: 81,
                host_port: None,
                host_ip: None,
                protocol: Protocol::Tcp,
            },
        ];
        assert_eq!(HostPort::published(&mappings), [HostPort::tcp(8080)]);
    }

    #[test]
    fn tally_sums_a_hosts_allocations() {
        let ports = [HostPort::tcp(80)];
        let (reserved, used, counts) = tally([
            ("web", "r1", Capacity::new(100, GIB), &ports[..]),
            ("web", "r2", Capacity::new(200, GIB), &[][..]),
        ]);
        assert_eq!(reserved, Capacity::new(300, 2 * GIB));
        assert_eq!(used, BTreeSet::from(ports));
        assert_eq!(counts["web"]["r1"], 1);
        let mut h = host("h", "r", 0, 0);
        h.allocations = counts;
        assert_eq!(h.count_of("web"), 2);
        assert_eq!(h.count_of_revision("web", "r2"), 1);
    }
}
