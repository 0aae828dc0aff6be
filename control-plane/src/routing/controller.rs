//! The routing controller: computes every region's routing table from
//! desired state, reported allocation health and the rollouts moving
//! services (`split`, `table`), and pushes a region's table to the agents
//! connected to this replica whenever it changes, and to each agent when
//! it connects. Tables are versioned (never decreasing, also across
//! restarts: versions start from the clock), so an agent ignores a stale
//! one.

use super::dns::{DnsTable, Ingress, NamedRoute, dns_table};
use super::latency::RoundTrips;
use super::split::revision_split;
use super::table::{Latencies, RegionRoute, ServiceTraffic, route_for_region};
use super::wire::{endpoints, regional_policy, route_message, standbys};
use crate::clock::Clock;
use crate::deploy::controller::{DeployError, Deployments, RoutedService};
use crate::fleet::{Fleet, HostRegion};
use argosy_proto::v1::{self as pb, control_message};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One region's decision for one service, with the route an ingress gets.
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    pub decided: RegionRoute,
    pub message: pb::Route,
}

/// Holds the tables last pushed, per region.
pub struct Router {
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
    pushed: Mutex<Pushed>,
    dns: Mutex<Arc<DnsTable>>,
    round_trips: Mutex<RoundTrips>,
}

/// How many ingresses of each other region an agent probes.
pub const PROBES_PER_REGION: usize = 3;

#[derive(Default)]
struct Pushed {
    tables: HashMap<String, pb::RoutingTable>,
    last_version: u64,
}

impl Router {
    pub fn new(fleet: Arc<Fleet>, clock: Arc<dyn Clock>) -> Self {
        Self {
            fleet,
            clock,
            pushed: Mutex::new(Pushed::default()),
            dns: Mutex::new(Arc::new(DnsTable::default())),
            round_trips: Mutex::new(RoundTrips::default()),
        }
    }

    fn round_trips(&self) -> std::sync::MutexGuard<'_, RoundTrips> {
        self.round_trips.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the round trips an agent on `host_id` measured.
    pub fn record_round_trips(&self, host_id: &str, report: &pb::LatencyReport, now_ms: i64) {
        let Some(from) = self.fleet.region_of(host_id) else {
            return;
        };
        let mut trips = self.round_trips();
        for measured in &report.regions {
            trips.record(&from, &measured.region, measured.rtt_micros, now_ms);
        }
        trips.forget_old(now_ms);
    }

    /// The round trips between regions that count now (µs).
    pub fn latencies(&self) -> Latencies {
        self.round_trips().current(self.clock.now_ms())
    }

    /// What the DNS answers, as of the last refresh.
    pub fn dns_table(&self) -> Arc<DnsTable> {
        self.dns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every region's decision for every routed service: region → service
    /// → route. Regions are those of the enrolled hosts.
    pub async fn compute(&self, deploy: &Deployments) -> Result<Decisions, DeployError> {
        Ok(self.compute_with_services(deploy).await?.1)
    }

    async fn compute_with_services(
        &self,
        deploy: &Deployments,
    ) -> Result<(Vec<RoutedService>, Decisions), DeployError> {
        let services = deploy.routed_services().await?;
        let hosts = self.fleet.regions();
        let decisions = decide(&services, &hosts, &self.latencies());
        Ok((services, decisions))
    }

    /// Recomputes the tables and sends each region whose table changed to
    /// its connected agents; recomputes what the DNS answers.
    pub async fn refresh(&self, deploy: &Deployments) -> Result<(), DeployError> {
        let (services, computed) = self.compute_with_services(deploy).await?;
        let hosts = self.fleet.regions();
        let dns = dns_answers(&services, &computed, &hosts);
        *self.dns.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(dns);
        let mut changed = Vec::new();
        {
            let mut pushed = self.pushed();
            let regions: BTreeSet<&str> = hosts.iter().map(|h| h.region.as_str()).collect();
            for region in regions {
                let routes: Vec<pb::Route> = computed
                    .get(region)
                    .map(|services| services.values().map(|s| s.message.clone()).collect())
                    .unwrap_or_default();
                let probes = probe_targets(&hosts, region);
                if pushed
                    .tables
                    .get(region)
                    .is_some_and(|table| table.routes == routes && table.probes == probes)
                {
                    continue;
                }
                let version = (pushed.last_version + 1).max(self.version_floor());
                pushed.last_version = version;
                let table = pb::RoutingTable {
                    version,
                    routes,
                    probes,
                };
                pushed.tables.insert(region.to_owned(), table.clone());
                changed.push((region.to_owned(), table));
            }
        }
        for (region, table) in changed {
            tracing::debug!(region, version = table.version, "routing table changed");
            for host in hosts.iter().filter(|h| h.region == region) {
                self.fleet.send(
                    &host.host_id,
                    pb::ControlMessage {
                        body: Some(control_message::Body::Routing(table.clone())),
                    },
                );
            }
        }
        Ok(())
    }

    /// Versions start from the clock, so a restarted control plane never
    /// sends a version an agent already has.
    fn version_floor(&self) -> u64 {
        u64::try_from(self.clock.now_ms()).unwrap_or(0)
    }

    /// The table last pushed to `region`, for an agent that just connected.
    pub fn table_for(&self, region: &str) -> Option<pb::RoutingTable> {
        self.pushed().tables.get(region).cloned()
    }
}

/// Keeps `cp`'s routing tables current until `shutdown`: after every
/// allocation change, host change, and at least every `every`.
pub async fn run(
    cp: Arc<crate::state::ControlPlane>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let changed = cp.deploy.allocations_changed();
    let mut hosts = cp.fleet.subscribe();
    loop {
        if let Err(error) = cp.routing.refresh(&cp.deploy).await {
            tracing::warn!(%error, "could not recompute the routing tables; retrying");
        }
        tokio::select! {
            () = changed.notified() => {}
            _ = hosts.recv() => {}
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        // Let a burst of changes (a rollout step) settle into one table.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ingresses agents in `region` measure round trips to: up to
/// [`PROBES_PER_REGION`] online hosts of every other region, by host id.
pub fn probe_targets(hosts: &[HostRegion], region: &str) -> Vec<pb::ProbeTarget> {
    let mut by_region: BTreeMap<&str, Vec<&HostRegion>> = BTreeMap::new();
    for host in hosts.iter().filter(|h| h.online && h.region != region) {
        if host.ingress.is_some() {
            by_region
                .entry(host.region.as_str())
                .or_default()
                .push(host);
        }
    }
    by_region
        .into_values()
        .flat_map(|mut hosts| {
            hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
            hosts.truncate(PROBES_PER_REGION);
            hosts
        })
        .filter_map(|h| {
            Some(pb::ProbeTarget {
                region: h.region.clone(),
                host: h.host_id.clone(),
                address: h.ingress?.to_string(),
            })
        })
        .collect()
}

/// Region → service → route.
pub type Decisions = BTreeMap<String, BTreeMap<String, ServiceRoute>>;

/// The DNS table for these decisions over the online hosts' ingresses.
fn dns_answers(
    services: &[RoutedService],
    decisions: &Decisions,
    hosts: &[HostRegion],
) -> DnsTable {
    let routes: Vec<NamedRoute<'_>> = services
        .iter()
        .map(|service| NamedRoute {
            hostnames: &service.route.hostnames,
            by_region: decisions
                .iter()
                .filter_map(|(region, routes)| {
                    Some((region.as_str(), &routes.get(&service.name)?.decided))
                })
                .collect(),
        })
        .collect();
    let ingresses: Vec<Ingress> = hosts
        .iter()
        .filter(|h| h.online)
        .filter_map(|h| {
            Some(Ingress {
                region: h.region.clone(),
                address: h.ingress?.ip(),
            })
        })
        .collect();
    dns_table(&routes, &ingresses)
}

/// The decision over plain data: for every region with a host, every
/// routed service's route.
pub fn decide(
    services: &[RoutedService],
    hosts: &[HostRegion],
    latencies: &Latencies,
) -> Decisions {
    let by_id: HashMap<&str, &HostRegion> = hosts.iter().map(|h| (h.host_id.as_str(), h)).collect();
    let regions: BTreeSet<&str> = hosts.iter().map(|h| h.region.as_str()).collect();
    let mut tables: Decisions = regions
        .iter()
        .map(|r| ((*r).to_owned(), BTreeMap::new()))
        .collect();
    for service in services {
        let endpoints = endpoints(service, &by_id);
        let live: Vec<u64> = service
            .allocations
            .iter()
            .filter(|a| a.desired_run)
            .map(|a| u64::try_from(a.revision).unwrap_or(0))
            .collect();
        let split = revision_split(service.rollout.as_ref(), &live);
        let policy = regional_policy(&service.route.regions);
        let traffic = ServiceTraffic {
            service: &service.name,
            policy: &policy,
            split: &split,
            endpoints: &endpoints,
            latencies,
        };
        for region in &regions {
            let decided = route_for_region(&traffic, region);
            let standby = standbys(&endpoints, &split, &decided);
            let message = route_message(service, &decided, &standby);
            if let Some(table) = tables.get_mut(*region) {
                table.insert(service.name.clone(), ServiceRoute { decided, message });
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::RouteRegions;
    use crate::store::AllocationRow;
    use std::net::{IpAddr, SocketAddr};

    fn host(id: &str, region: &str, online: bool, ingress: Option<&str>) -> HostRegion {
        HostRegion {
            host_id: id.to_owned(),
            region: region.to_owned(),
            online,
            ingress: ingress.map(|a| a.parse::<SocketAddr>().unwrap()),
        }
    }

    fn allocation(id: &str, host: &str, address: &str) -> AllocationRow {
        crate::routing::wire::tests::row(id, Some(host), "healthy", address, true)
    }

    fn web(regions: RouteRegions, allocations: Vec<AllocationRow>) -> RoutedService {
        let mut web = crate::routing::wire::tests::service(None, allocations);
        web.route.hostnames = vec!["web.apps.test".to_owned()];
        web.route.regions = regions;
        web
    }

    #[test]
    fn probes_name_a_few_online_ingresses_of_every_other_region() {
        let hosts = [
            host("h1", "eu-west", true, Some("10.1.0.1:7480")),
            host("h4", "us-east", true, Some("10.2.0.4:7480")),
            host("h2", "us-east", true, Some("10.2.0.2:7480")),
            host("h3", "us-east", true, Some("10.2.0.3:7480")),
            host("h5", "us-east", true, Some("10.2.0.5:7480")),
            host("h6", "us-east", false, Some("10.2.0.6:7480")),
            host("h7", "ap-south", true, None),
        ];
        let probes: Vec<(String, String)> = probe_targets(&hosts, "eu-west")
            .into_iter()
            .map(|p| (p.host, p.address))
            .collect();
        assert_eq!(
            probes,
            [
                ("h2".to_owned(), "10.2.0.2:7480".to_owned()),
                ("h3".to_owned(), "10.2.0.3:7480".to_owned()),
                ("h4".to_owned(), "10.2.0.4:7480".to_owned()),
            ]
        );
        let from_us: Vec<String> = probe_targets(&hosts, "us-east")
            .into_iter()
            .map(|p| p.host)
            .collect();
        assert_eq!(from_us, ["h1"]);
    }

    #[test]
    fn every_region_gets_a_route_and_the_dns_follows_the_serving_region() {
        let hosts = [
            host("h1", "eu-west", true, Some("127.0.0.1:7480")),
            host("h2", "us-east", true, Some("127.0.0.3:7480")),
        ];
        let primary = RouteRegions::Primary {
            primary: "eu-west".to_owned(),
            failover: vec!["us-east".to_owned()],
        };
        let services = [web(
            primary.clone(),
            vec![
                allocation("a1", "h1", "127.0.0.1:32001"),
                allocation("a2", "h2", "127.0.0.3:32002"),
            ],
        )];
        let decisions = decide(&services, &hosts, &Latencies::new());
        assert_eq!(decisions.len(), 2);
        for region in ["eu-west", "us-east"] {
            let route = &decisions[region]["web"];
            let weighted: Vec<&str> = route
                .message
                .backends
                .iter()
                .filter(|b| b.weight > 0)
                .map(|b| b.allocation.as_str())
                .collect();
            assert_eq!(weighted, ["a1"], "{region}");
        }
        let dns = dns_answers(&services, &decisions, &hosts);
        let eu: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(dns.names["web.apps.test"].anywhere, [eu]);

        // The primary's host goes offline: its allocation no longer counts.
        let hosts = [
            host("h1", "eu-west", false, Some("127.0.0.1:7480")),
            host("h2", "us-east", true, Some("127.0.0.3:7480")),
        ];
        let decisions = decide(&services, &hosts, &Latencies::new());
        let us: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(
            decisions["eu-west"]["web"].message.backends[0].region,
            "us-east"
        );
        let dns = dns_answers(&services, &decisions, &hosts);
        assert_eq!(dns.names["web.apps.test"].anywhere, [us]);
    }

    #[test]
    fn nearest_follows_measured_round_trips() {
        let hosts = [
            host("h1", "eu-west", true, Some("10.1.0.1:7480")),
            host("h2", "us-east", true, Some("10.2.0.1:7480")),
            host("h3", "ap-south", true, Some("10.3.0.1:7480")),
        ];
        // Allocations in us-east and ap-south only.
        let services = [web(
            RouteRegions::Nearest,
            vec![
                allocation("a2", "h2", "10.2.0.1:32001"),
                allocation("a3", "h3", "10.3.0.1:32001"),
            ],
        )];
        let serving = |latencies: &Latencies| -> String {
            let decisions = decide(&services, &hosts, latencies);
            decisions["eu-west"]["web"]
                .decided
                .backends
                .iter()
                .find(|b| b.weight > 0)
                .map(|b| b.region.clone())
                .unwrap_or_default()
        };
        let mut latencies = Latencies::new();
        latencies.insert(("eu-west".into(), "us-east".into()), 80_000);
        latencies.insert(("eu-west".into(), "ap-south".into()), 120_000);
        assert_eq!(serving(&latencies), "us-east");
        latencies.insert(("eu-west".into(), "us-east".into()), 200_000);
        assert_eq!(serving(&latencies), "ap-south");
    }
}
