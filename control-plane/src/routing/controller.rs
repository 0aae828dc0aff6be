//! The routing controller: computes every region's routing table from
//! desired state, reported allocation health and the rollouts moving
//! services (`split`, `table`), and pushes a region's table to the agents
//! connected to this replica whenever it changes, and to each agent when
//! it connects. Tables are versioned (never decreasing, also across
//! restarts: versions start from the clock), so an agent ignores a stale
//! one.

use super::split::revision_split;
use super::table::{Latencies, RegionRoute, ServiceTraffic, route_for_region};
use super::wire::{endpoints, regional_policy, route_message};
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
}

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
        }
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every region's decision for every routed service: region → service
    /// → route. Regions are those of the enrolled hosts.
    pub async fn compute(
        &self,
        deploy: &Deployments,
    ) -> Result<BTreeMap<String, BTreeMap<String, ServiceRoute>>, DeployError> {
        let services = deploy.routed_services().await?;
        let hosts = self.fleet.regions();
        Ok(decide(&services, &hosts, &Latencies::new()))
    }

    /// Recomputes the tables and sends each region whose table changed to
    /// its connected agents.
    pub async fn refresh(&self, deploy: &Deployments) -> Result<(), DeployError> {
        let computed = self.compute(deploy).await?;
        let hosts = self.fleet.regions();
        let mut changed = Vec::new();
        {
            let mut pushed = self.pushed();
            let regions: BTreeSet<&str> = hosts.iter().map(|h| h.region.as_str()).collect();
            for region in regions {
                let routes: Vec<pb::Route> = computed
                    .get(region)
                    .map(|services| services.values().map(|s| s.message.clone()).collect())
                    .unwrap_or_default();
                if pushed
                    .tables
                    .get(region)
                    .is_some_and(|table| table.routes == routes)
                {
                    continue;
                }
                let version = (pushed.last_version + 1).max(self.version_floor());
                pushed.last_version = version;
                let table = pb::RoutingTable { version, routes };
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

/// The decision over plain data: for every region with a host, every
/// routed service's route.
pub fn decide(
    services: &[RoutedService],
    hosts: &[HostRegion],
    latencies: &Latencies,
) -> BTreeMap<String, BTreeMap<String, ServiceRoute>> {
    let by_id: HashMap<&str, &HostRegion> = hosts.iter().map(|h| (h.host_id.as_str(), h)).collect();
    let regions: BTreeSet<&str> = hosts.iter().map(|h| h.region.as_str()).collect();
    let mut tables: BTreeMap<String, BTreeMap<String, ServiceRoute>> = regions
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
            let message = route_message(service, &decided);
            if let Some(table) = tables.get_mut(*region) {
                table.insert(service.name.clone(), ServiceRoute { decided, message });
            }
        }
    }
    tables
}
