//! `RoutingService`: where the ingresses send each routed service's
//! requests, region by region, with the reasons (`argosy routes show`,
//! `argosy routes list`, the dashboard's routing page).

use crate::auth::{Action, Target};
use crate::deploy::controller::{DeployError, RoutedService};
use crate::grpc::{Caller, caller};
use crate::routing::controller::Decisions;
use crate::routing::wire::{describe_regions, describe_tls};
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, routing_service_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The traffic `show` reports: the last five minutes.
const TRAFFIC_WINDOW_MS: i64 = 5 * 60 * 1000;

pub struct RoutingApi {
    pub cp: Arc<ControlPlane>,
}

fn routing_status(error: DeployError) -> Status {
    Status::unavailable(format!(
        "cannot compute the routing tables: {error}; retry when the store is reachable"
    ))
}

fn may_see(caller: &Caller, service: &RoutedService) -> Result<(), Status> {
    caller.read(
        Action::ReadDeployments,
        Target::Service {
            name: &service.name,
            regions: &service.placement_regions,
        },
    )?;
    Ok(())
}

impl RoutingApi {
    async fn decisions(&self) -> Result<(Vec<RoutedService>, Decisions), Status> {
        let services = self
            .cp
            .deploy
            .routed_services()
            .await
            .map_err(routing_status)?;
        let decisions = self
            .cp
            .routing
            .compute(&self.cp.deploy)
            .await
            .map_err(routing_status)?;
        Ok((services, decisions))
    }
}

#[tonic::async_trait]
impl routing_service_server::RoutingService for RoutingApi {
    async fn show_routes(
        &self,
        request: Request<pb::ShowRoutesRequest>,
    ) -> Result<Response<pb::ShowRoutesResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let name = request.get_ref().service.trim();
        let (services, decisions) = self.decisions().await?;
        let Some(service) = services.iter().find(|s| s.name == name) else {
            caller.read_role(Action::ReadDeployments)?;
            let exists = self
                .cp
                .store
                .service(name)
                .await
                .map_err(crate::grpc::store_status)?
                .is_some();
            return Err(if exists {
                Status::failed_precondition(format!(
                    "service {name} has no route: add a `route:` section (hostnames, port) to its spec and apply it"
                ))
            } else {
                Status::not_found(format!(
                    "no service named {name:?}; `argosy services list` shows them"
                ))
            });
        };
        may_see(&caller, service)?;
        let by_region = decisions
            .iter()
            .filter_map(|(region, services)| {
                let route = services.get(name)?;
                Some(pb::RegionRoutes {
                    region: region.clone(),
                    backends: route.message.backends.clone(),
                    explanation: route.decided.explanation.clone(),
                    serving: route.decided.serves(),
                })
            })
            .collect();
        let since = self.cp.now_ms() - TRAFFIC_WINDOW_MS;
        let traffic = self
            .cp
            .deploy
            .traffic()
            .since(name, since)
            .into_iter()
            .map(|(revision, stats)| pb::RevisionTraffic {
                service: name.to_owned(),
                revision,
                requests: stats.requests,
                errors: stats.errors,
                p50_micros: (stats.p50_ms * 1000.0).round() as u64,
                p99_micros: (stats.p99_ms * 1000.0).round() as u64,
            })
            .collect();
        Ok(Response::new(pb::ShowRoutesResponse {
            service: service.name.clone(),
            hostnames: service.route.hostnames.clone(),
            paths: service.route.paths.clone(),
            regions: describe_regions(&service.route.regions),
            tls: describe_tls(service),
            by_region,
            traffic,
        }))
    }

    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        caller.read_role(Action::ReadDeployments)?;
        let (services, decisions) = self.decisions().await?;
        let routes = services
            .iter()
            .filter(|service| may_see(&caller, service).is_ok())
            .map(|service| {
                let (serving, not_serving): (Vec<_>, Vec<_>) = decisions
                    .iter()
                    .filter_map(|(region, routes)| Some((region, routes.get(&service.name)?)))
                    .partition(|(_, route)| route.decided.serves());
                pb::RouteSummary {
                    service: service.name.clone(),
                    hostnames: service.route.hostnames.clone(),
                    paths: service.route.paths.clone(),
                    regions: describe_regions(&service.route.regions),
                    serving: serving.into_iter().map(|(r, _)| r.clone()).collect(),
                    not_serving: not_serving.into_iter().map(|(r, _)| r.clone()).collect(),
                }
            })
            .collect();
        let latencies = self
            .cp
            .routing
            .latencies()
            .into_iter()
            .map(|((from_region, to_region), rtt_micros)| pb::RegionLatency {
                from_region,
                to_region,
                rtt_micros,
            })
            .collect();
        Ok(Response::new(pb::ListRoutesResponse { routes, latencies }))
    }
}
