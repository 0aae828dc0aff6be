//! The routing decision: from a service's route policy, its allocations'
//! health, the rollout's traffic split and the measured latency between
//! regions, the backends an ingress in one region sends that service's
//! requests to, with weights — and the sentences that explain them
//! (`argosy routes show`). Pure: plain data in, plain data out.
//!
//! For an ingress in region R the serving regions are chosen by the
//! service's [`RegionalPolicy`]:
//! - `Primary { primary, failover }`: the first of `[primary, failover…]`
//!   with a healthy allocation (the others are "failover only");
//! - `Nearest`: the region with a healthy allocation and the lowest
//!   measured round trip from R (R itself counts as 0; unmeasured pairs
//!   come last, by name);
//! - `Weighted`: every weighted region with a healthy allocation, its
//!   weight renormalised over those.
//!
//! Inside the serving regions the rollout's split decides each revision's
//! share (a canary at 10 % sends one request in ten to the new revision); a
//! revision with no healthy allocation there gives its share to the others.
//! A revision's share is spread evenly over its healthy allocations. Draining
//! allocations are listed with weight 0 — no new requests, in-flight ones
//! finish — and unhealthy ones are left out. Weights are integers in parts
//! per million, so they add up exactly.

use std::collections::{BTreeMap, BTreeSet};

/// Weights are in parts per million of a region's requests for a service.
pub const WHOLE: u32 = 1_000_000;

/// Where a service is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionalPolicy {
    /// All traffic to `primary`; to the first failover region with a
    /// healthy allocation when `primary` has none.
    Primary {
        primary: String,
        failover: Vec<String>,
    },
    /// To the region with the lowest measured round trip that has a
    /// healthy allocation.
    Nearest,
    /// Fixed shares per region (relative weights, renormalised over the
    /// regions that have a healthy allocation).
    Weighted(BTreeMap<String, u32>),
}

/// One allocation of a service, as the agents last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub allocation: String,
    pub host: String,
    pub region: String,
    pub revision: u64,
    /// `ip:port` an ingress connects to.
    pub address: String,
    pub healthy: bool,
    /// Being stopped: no new requests, in-flight ones finish.
    pub draining: bool,
}

/// The rollout's traffic split between revisions, relative weights (the
/// stable revision alone is `{stable: 1}`).
pub type RevisionSplit = BTreeMap<u64, u32>;

/// Measured round trips between regions in microseconds, `(from, to)`.
pub type Latencies = BTreeMap<(String, String), u64>;

/// One backend of a route in one region's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub allocation: String,
    pub host: String,
    pub region: String,
    pub revision: u64,
    pub address: String,
    /// Parts per million of the region's requests; 0 for draining.
    pub weight: u32,
}

/// Where one region's ingresses send one service's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRoute {
    pub region: String,
    pub backends: Vec<Backend>,
    /// Why, in sentences (`argosy routes show`, the dashboard, and the
    /// 503 body when `backends` carries no weight).
    pub explanation: String,
}

impl RegionRoute {
    /// Whether any request can be sent anywhere.
    pub fn serves(&self) -> bool {
        self.backends.iter().any(|b| b.weight > 0)
    }
}

/// What the decision is computed over, for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTraffic<'a> {
    pub service: &'a str,
    pub policy: &'a RegionalPolicy,
    pub split: &'a RevisionSplit,
    pub endpoints: &'a [Endpoint],
    pub latencies: &'a Latencies,
}

/// Whether `endpoint` may take new requests: healthy, not draining, and
/// of a revision the split gives traffic to.
fn takes_requests(endpoint: &Endpoint, split: &RevisionSplit) -> bool {
    endpoint.healthy && !endpoint.draining && split.get(&endpoint.revision).is_some_and(|w| *w > 0)
}

fn healthy_in<'e>(
    traffic: &'e ServiceTraffic<'_>,
    region: &'e str,
) -> impl Iterator<Item = &'e Endpoint> {
    traffic
        .endpoints
        .iter()
        .filter(move |e| e.region == region && takes_requests(e, traffic.split))
}

fn has_healthy(traffic: &ServiceTraffic<'_>, region: &str) -> bool {
    healthy_in(traffic, region).next().is_some()
}

/// The round trip from `from` to `to` (0 within a region), if measured.
fn round_trip(latencies: &Latencies, from: &str, to: &str) -> Option<u64> {
    if from == to {
        return Some(0);
    }
    latencies
        .get(&(from.to_owned(), to.to_owned()))
        .or_else(|| latencies.get(&(to.to_owned(), from.to_owned())))
        .copied()
}

/// Splits `total` parts over `weights` in proportion, exactly: the
/// remainder goes to the largest fractional parts, ties to the first.
pub fn apportion(total: u32, weights: &[u32]) -> Vec<u32> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u64, u64)> = weights
        .iter()
        .map(|&w| {
            let product = u64::from(total) * u64::from(w);
            (product / sum, product % sum)
        })
        .collect();
    let mut shares: Vec<u32> = exact
        .iter()
        .map(|&(q, _)| u32::try_from(q).unwrap_or(u32::MAX))
        .collect();
    let given: u64 = exact.iter().map(|&(q, _)| q).sum();
    let mut left = u64::from(total) - given;
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        if weights[i] > 0 {
            shares[i] += 1;
            left -= 1;
        }
    }
    shares
}

/// The serving regions for an ingress in `region` with their shares, and
/// what to say about the regions left out.
fn serving_regions(
    traffic: &ServiceTraffic<'_>,
    region: &str,
) -> (Vec<(String, u32)>, Vec<String>) {
    match traffic.policy {
        RegionalPolicy::Primary { primary, failover } => {
            let order: Vec<&String> = std::iter::once(primary).chain(failover).collect();
            match order.iter().position(|r| has_healthy(traffic, r)) {
                Some(0) => {
                    let notes = failover
                        .iter()
                        .map(|r| format!("{r}: failover only"))
                        .collect();
                    (vec![(primary.clone(), WHOLE)], notes)
                }
                Some(i) => {
                    let mut notes = vec![format!(
                        "{}: no healthy allocation, failing over to {}",
                        order[..i]
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        order[i]
                    )];
                    notes.extend(order[i + 1..].iter().map(|r| format!("{r}: failover only")));
                    (vec![(order[i].clone(), WHOLE)], notes)
                }
                None => (Vec::new(), Vec::new()),
            }
        }
        RegionalPolicy::Nearest => {
            let regions: BTreeSet<&str> = traffic
                .endpoints
                .iter()
                .filter(|e| takes_requests(e, traffic.split))
                .map(|e| e.region.as_str())
                .collect();
            let nearest = regions.into_iter().min_by(|a, b| {
                let (ra, rb) = (
                    round_trip(traffic.latencies, region, a),
                    round_trip(traffic.latencies, region, b),
                );
                match (ra, rb) {
                    (Some(x), Some(y)) => x.cmp(&y).then(a.cmp(b)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.cmp(b),
                }
            });
            match nearest {
                Some(chosen) => {
                    let why = match round_trip(traffic.latencies, region, chosen) {
                        Some(0) => "served in this region".to_owned(),
                        Some(us) => format!(
                            "the nearest region with a healthy allocation, {:.1} ms from {region}",
                            us as f64 / 1000.0
                        ),
                        None => format!(
                            "no region with a healthy allocation has a measured round trip from {region}; the first by name serves"
                        ),
                    };
                    (vec![(chosen.to_owned(), WHOLE)], vec![why])
                }
                None => (Vec::new(), Vec::new()),
            }
        }
        RegionalPolicy::Weighted(weights) => {
            let live: Vec<(&String, u32)> = weights
                .iter()
                .filter(|(r, w)| **w > 0 && has_healthy(traffic, r))
                .map(|(r, w)| (r, *w))
                .collect();
            let shares = apportion(WHOLE, &live.iter().map(|(_, w)| *w).collect::<Vec<_>>());
            let notes = weights
                .iter()
                .filter(|(r, w)| **w > 0 && !has_healthy(traffic, r))
                .map(|(r, _)| format!("{r}: no healthy allocation, its share goes to the others"))
                .collect();
            (
                live.iter()
                    .zip(shares)
                    .map(|((r, _), s)| ((*r).clone(), s))
                    .collect(),
                notes,
            )
        }
    }
}

fn percent(parts: u32) -> String {
    let p = f64::from(parts) * 100.0 / f64::from(WHOLE);
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// The name a revision goes by in an explanation: the newest of a split
/// is the canary (or the new colour), the others stable.
fn revision_label(split: &RevisionSplit, revision: u64) -> String {
    let newest = split.keys().max().copied();
    if split.len() > 1 && Some(revision) == newest {
        format!("canary rev {revision}")
    } else if split.len() > 1 {
        format!("stable rev {revision}")
    } else {
        format!("rev {revision}")
    }
}

/// Where an ingress in `region` sends `traffic.service`'s requests.
pub fn route_for_region(traffic: &ServiceTraffic<'_>, region: &str) -> RegionRoute {
    let (serving, notes) = serving_regions(traffic, region);
    let mut backends = Vec::new();
    let mut parts = Vec::new();
    for (serving_region, region_share) in &serving {
        // The split over the revisions that are healthy there.
        let live: Vec<(u64, u32)> = traffic
            .split
            .iter()
            .filter(|(rev, w)| {
                **w > 0 && healthy_in(traffic, serving_region).any(|e| e.revision == **rev)
            })
            .map(|(rev, w)| (*rev, *w))
            .collect();
        let revision_shares = apportion(
            *region_share,
            &live.iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        );
        let mut said = Vec::new();
        for ((revision, _), share) in live.iter().zip(&revision_shares) {
            let members: Vec<&Endpoint> = healthy_in(traffic, serving_region)
                .filter(|e| e.revision == *revision)
                .collect();
            let each = apportion(*share, &vec![1; members.len()]);
            for (endpoint, weight) in members.into_iter().zip(each) {
                backends.push(backend(endpoint, weight));
            }
            said.push(format!(
                "{} {}",
                percent(*share),
                revision_label(traffic.split, *revision)
            ));
        }
        for (revision, weight) in traffic.split {
            if *weight > 0 && !live.iter().any(|(r, _)| r == revision) {
                said.push(format!(
                    "{} has no healthy allocation here",
                    revision_label(traffic.split, *revision)
                ));
            }
        }
        parts.push(format!("{serving_region}: {}", said.join(", ")));
    }
    // Draining allocations of the serving regions finish what they have.
    for endpoint in traffic
        .endpoints
        .iter()
        .filter(|e| e.draining && serving.iter().any(|(r, _)| *r == e.region))
    {
        backends.push(backend(endpoint, 0));
    }
    backends.sort_by(|a, b| {
        (&a.region, a.revision, &a.allocation).cmp(&(&b.region, b.revision, &b.allocation))
    });
    parts.extend(notes);
    let explanation = if serving.is_empty() {
        no_healthy_allocation(traffic)
    } else {
        parts.join("; ")
    };
    RegionRoute {
        region: region.to_owned(),
        backends,
        explanation,
    }
}

fn backend(endpoint: &Endpoint, weight: u32) -> Backend {
    Backend {
        allocation: endpoint.allocation.clone(),
        host: endpoint.host.clone(),
        region: endpoint.region.clone(),
        revision: endpoint.revision,
        address: endpoint.address.clone(),
        weight,
    }
}

/// Why nothing can serve: per region, how many allocations there are and
/// how many are healthy.
fn no_healthy_allocation(traffic: &ServiceTraffic<'_>) -> String {
    let mut per_region: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for endpoint in traffic.endpoints {
        let entry = per_region.entry(endpoint.region.as_str()).or_default();
        entry.0 += 1;
        if takes_requests(endpoint, traffic.split) {
            entry.1 += 1;
        }
    }
    let allowed: Vec<&str> = match traffic.policy {
        RegionalPolicy::Primary { primary, failover } => std::iter::once(primary.as_str())
            .chain(failover.iter().map(String::as_str))
            .collect(),
        RegionalPolicy::Weighted(weights) => weights.keys().map(String::as_str).collect(),
        RegionalPolicy::Nearest => per_region.keys().copied().collect(),
    };
    if allowed.is_empty() {
        return format!(
            "service {} has no allocation in any region",
            traffic.service
        );
    }
    let detail: Vec<String> = allowed
        .iter()
        .map(|r| match per_region.get(r) {
            Some((all, healthy)) => format!("{r}: {healthy} of {all} healthy"),
            None => format!("{r}: no allocation"),
        })
        .collect();
    format!(
        "service {} has no healthy allocation in any region it may be served from ({})",
        traffic.service,
        detail.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(alloc: &str, region: &str, revision: u64, healthy: bool) -> Endpoint {
        Endpoint {
            allocation: alloc.to_owned(),
            host: format!("h-{alloc}"),
            region: region.to_owned(),
            revision,
            address: format!("10.0.0.{}:8080", alloc.len()),
            healthy,
            draining: false,
        }
    }

    fn split(pairs: &[(u64, u32)]) -> RevisionSplit {
        pairs.iter().copied().collect()
    }

    fn primary(p: &str, failover: &[&str]) -> RegionalPolicy {
        RegionalPolicy::Primary {
            primary: p.to_owned(),
            failover: failover.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn weights(route: &RegionRoute) -> Vec<(&str, u32)> {
        route
            .backends
            .iter()
            .map(|b| (b.allocation.as_str(), b.weight))
            .collect()
    }

    fn route(
        policy: &RegionalPolicy,
        split: &RevisionSplit,
        endpoints: &[Endpoint],
        latencies: &Latencies,
        region: &str,
    ) -> RegionRoute {
        route_for_region(
            &ServiceTraffic {
                service: "web",
                policy,
                split,
                endpoints,
                latencies,
            },
            region,
        )
    }

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(WHOLE, &[1, 1, 1]), [333_334, 333_333, 333_333]);
        assert_eq!(apportion(WHOLE, &[90, 10]), [900_000, 100_000]);
        assert_eq!(apportion(WHOLE, &[2, 0, 1]), [666_667, 0, 333_333]);
        assert_eq!(apportion(WHOLE, &[0, 0]), [0, 0]);
        assert_eq!(apportion(0, &[1, 2]), [0, 0]);
        assert_eq!(apportion(7, &[1, 1, 1]), [3, 2, 2]);
        for weights in [vec![1, 2, 3], vec![7; 9], vec![1, 999_999], vec![13, 0, 29]] {
            assert_eq!(apportion(WHOLE, &weights).iter().sum::<u32>(), WHOLE);
        }
    }

    #[test]
    fn the_primary_region_serves_and_failover_regions_wait() {
        let endpoints = [
            ep("a1", "eu-west", 7, true),
            ep("a22", "eu-west", 7, true),
            ep("b1", "us-east", 7, true),
        ];
        let policy = primary("eu-west", &["us-east"]);
        for region in ["eu-west", "us-east"] {
            let r = route(
                &policy,
                &split(&[(7, 1)]),
                &endpoints,
                &Latencies::new(),
                region,
            );
            assert_eq!(weights(&r), [("a1", 500_000), ("a22", 500_000)]);
            assert_eq!(
                r.explanation,
                "eu-west: 100 % rev 7; us-east: failover only"
            );
            assert!(r.serves());
        }
    }

    #[test]
    fn a_primary_without_healthy_allocations_fails_over_in_order() {
        let policy = primary("eu-west", &["us-east", "ap-south"]);
        let endpoints = [
            ep("a1", "eu-west", 7, false),
            ep("b1", "us-east", 7, true),
            ep("c1", "ap-south", 7, true),
        ];
        let r = route(
            &policy,
            &split(&[(7, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&r), [("b1", WHOLE)]);
        assert_eq!(
            r.explanation,
            "us-east: 100 % rev 7; eu-west: no healthy allocation, failing over to us-east; ap-south: failover only"
        );
        // And back when the primary recovers.
        let recovered = [ep("a1", "eu-west", 7, true), ep("b1", "us-east", 7, true)];
        let r = route(
            &policy,
            &split(&[(7, 1)]),
            &recovered,
            &Latencies::new(),
            "us-east",
        );
        assert_eq!(weights(&r), [("a1", WHOLE)]);
    }

    #[test]
    fn nothing_healthy_anywhere_says_so_per_region() {
        let policy = primary("eu-west", &["us-east"]);
        let endpoints = [ep("a1", "eu-west", 7, false), ep("a2", "eu-west", 7, false)];
        let r = route(
            &policy,
            &split(&[(7, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert!(!r.serves());
        assert!(r.backends.is_empty());
        assert_eq!(
            r.explanation,
            "service web has no healthy allocation in any region it may be served from (eu-west: 0 of 2 healthy; us-east: no allocation)"
        );
        let none = route(
            &RegionalPolicy::Nearest,
            &split(&[(7, 1)]),
            &[],
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(
            none.explanation,
            "service web has no allocation in any region"
        );
    }

    #[test]
    fn a_canary_gets_its_share_spread_over_its_allocations() {
        let endpoints = [
            ep("s1", "eu-west", 7, true),
            ep("s22", "eu-west", 7, true),
            ep("s333", "eu-west", 7, true),
            ep("c1", "eu-west", 8, true),
        ];
        let policy = primary("eu-west", &["us-east"]);
        let r = route(
            &policy,
            &split(&[(7, 90), (8, 10)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(
            weights(&r),
            [
                ("s1", 300_000),
                ("s22", 300_000),
                ("s333", 300_000),
                ("c1", 100_000)
            ]
        );
        assert_eq!(
            r.explanation,
            "eu-west: 90 % stable rev 7, 10 % canary rev 8; us-east: failover only"
        );
        // A canary at 1 %.
        let r = route(
            &policy,
            &split(&[(7, 99), (8, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(r.backends.iter().map(|b| b.weight).sum::<u32>(), WHOLE);
        assert_eq!(r.backends.last().unwrap().weight, 10_000);
    }

    #[test]
    fn a_revision_without_healthy_allocations_gives_its_share_away() {
        let endpoints = [ep("s1", "eu-west", 7, true), ep("c1", "eu-west", 8, false)];
        let policy = primary("eu-west", &[]);
        let r = route(
            &policy,
            &split(&[(7, 50), (8, 50)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&r), [("s1", WHOLE)]);
        assert_eq!(
            r.explanation,
            "eu-west: 100 % stable rev 7, canary rev 8 has no healthy allocation here"
        );
    }

    #[test]
    fn a_blue_green_switch_is_one_change_of_the_split() {
        let endpoints = [
            ep("blue", "eu-west", 3, true),
            ep("green", "eu-west", 4, true),
        ];
        let policy = primary("eu-west", &[]);
        let before = route(
            &policy,
            &split(&[(3, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&before), [("blue", WHOLE)]);
        let after = route(
            &policy,
            &split(&[(4, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&after), [("green", WHOLE)]);
        let back = route(
            &policy,
            &split(&[(3, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(back, before, "the rollback is the reverse change");
    }

    #[test]
    fn draining_allocations_keep_a_zero_weight_until_stopped() {
        let mut old = ep("old", "eu-west", 7, true);
        old.draining = true;
        let endpoints = [old, ep("new", "eu-west", 8, true)];
        let policy = primary("eu-west", &[]);
        let r = route(
            &policy,
            &split(&[(7, 1), (8, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&r), [("old", 0), ("new", WHOLE)]);
        assert!(
            r.explanation
                .contains("stable rev 7 has no healthy allocation here")
        );
    }

    #[test]
    fn nearest_goes_by_measured_round_trips() {
        let endpoints = [
            ep("a1", "eu-west", 1, false),
            ep("b1", "us-east", 1, true),
            ep("c1", "ap-south", 1, true),
        ];
        let latencies: Latencies = [
            (("eu-west".to_owned(), "us-east".to_owned()), 80_000),
            (("ap-south".to_owned(), "eu-west".to_owned()), 120_000),
        ]
        .into_iter()
        .collect();
        let r = route(
            &RegionalPolicy::Nearest,
            &split(&[(1, 1)]),
            &endpoints,
            &latencies,
            "eu-west",
        );
        assert_eq!(weights(&r), [("b1", WHOLE)]);
        assert_eq!(
            r.explanation,
            "us-east: 100 % rev 1; the nearest region with a healthy allocation, 80.0 ms from eu-west"
        );
        // Healthy at home: home wins.
        let home = [ep("a1", "eu-west", 1, true), ep("b1", "us-east", 1, true)];
        let r = route(
            &RegionalPolicy::Nearest,
            &split(&[(1, 1)]),
            &home,
            &latencies,
            "eu-west",
        );
        assert_eq!(weights(&r), [("a1", WHOLE)]);
        assert_eq!(r.explanation, "eu-west: 100 % rev 1; served in this region");
        // Nothing measured: first by name, and it says so.
        let r = route(
            &RegionalPolicy::Nearest,
            &split(&[(1, 1)]),
            &endpoints,
            &Latencies::new(),
            "eu-west",
        );
        assert_eq!(weights(&r), [("c1", WHOLE)]);
        assert!(r.explanation.contains("the first by name serves"));
    }

    #[test]
    fn weighted_regions_share_and_renormalise_when_one_is_down() {
        let policy = RegionalPolicy::Weighted(
            [("eu-west".to_owned(), 3), ("us-east".to_owned(), 1)]
                .into_iter()
                .collect(),
        );
        let endpoints = [ep("a1", "eu-west", 1, true), ep("b1", "us-east", 1, true)];
        let r = route(
            &policy,
            &split(&[(1, 1)]),
            &endpoints,
            &Latencies::new(),
            "us-east",
        );
        assert_eq!(weights(&r), [("a1", 750_000), ("b1", 250_000)]);
        assert_eq!(r.explanation, "eu-west: 75 % rev 1; us-east: 25 % rev 1");
        let down = [ep("a1", "eu-west", 1, false), ep("b1", "us-east", 1, true)];
        let r = route(
            &policy,
            &split(&[(1, 1)]),
            &down,
            &Latencies::new(),
            "us-east",
        );
        assert_eq!(weights(&r), [("b1", WHOLE)]);
        assert_eq!(
            r.explanation,
            "us-east: 100 % rev 1; eu-west: no healthy allocation, its share goes to the others"
        );
    }

    #[test]
    fn weights_always_add_up_to_the_whole_when_anything_serves() {
        let policies = [
            primary("eu-west", &["us-east"]),
            RegionalPolicy::Nearest,
            RegionalPolicy::Weighted(
                [("eu-west".to_owned(), 2), ("us-east".to_owned(), 5)]
                    .into_iter()
                    .collect(),
            ),
        ];
        let splits = [
            split(&[(1, 1)]),
            split(&[(1, 97), (2, 3)]),
            split(&[(1, 1), (2, 1)]),
        ];
        // Every combination of health over five allocations.
        let base = [
            ep("a", "eu-west", 1, true),
            ep("bb", "eu-west", 2, true),
            ep("ccc", "us-east", 1, true),
            ep("dddd", "us-east", 2, true),
            ep("eeeee", "us-east", 1, true),
        ];
        for mask in 0u32..32 {
            let endpoints: Vec<Endpoint> = base
                .iter()
                .enumerate()
                .map(|(i, e)| Endpoint {
                    healthy: mask & (1 << i) != 0,
                    ..e.clone()
                })
                .collect();
            for policy in &policies {
                for split in &splits {
                    for region in ["eu-west", "us-east"] {
                        let r = route(policy, split, &endpoints, &Latencies::new(), region);
                        let total: u32 = r.backends.iter().map(|b| b.weight).sum();
                        if r.serves() {
                            assert_eq!(total, WHOLE, "{policy:?} {split:?} {mask:05b}");
                            assert!(r.backends.iter().all(|b| {
                                endpoints
                                    .iter()
                                    .any(|e| e.allocation == b.allocation && e.healthy)
                            }));
                        } else {
                            assert_eq!(total, 0);
                            assert!(
                                r.explanation.contains("no healthy allocation"),
                                "{}",
                                r.explanation
                            );
                        }
                    }
                }
            }
        }
    }
}
