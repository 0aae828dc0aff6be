//! `FleetService`: list, read, watch and revoke hosts; query metric history.

use crate::auth::{Action, Target};
use crate::grpc::{caller, store_status};
use crate::state::ControlPlane;
use crate::store::{Metric, MetricQuery};
use argosy_proto::v1::{
    self as pb, GetHostRequest, Host, HostEvent, ListHostsRequest, ListHostsResponse,
    QueryMetricsRequest, QueryMetricsResponse, RevokeHostRequest, WatchHostsRequest,
    fleet_service_server,
};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The gRPC adapter for fleet reads.
pub struct FleetApi {
    pub cp: Arc<ControlPlane>,
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no host with id {id:?}; `argosy hosts list` shows the ids"
    ))
}

impl FleetApi {
    async fn revoke(&self, id: &str) -> Result<Host, Status> {
        let now = self.cp.now_ms();
        self.cp
            .store
            .revoke_host(id, now)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(id))?;
        self.cp.fleet.revoked(id, now).ok_or_else(|| not_found(id))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HostEvent, Status>> + Send>>;

#[tonic::async_trait]
impl fleet_service_server::FleetService for FleetApi {
    async fn list_hosts(
        &self,
        request: Request<ListHostsRequest>,
    ) -> Result<Response<ListHostsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let who = caller.read(Action::ReadFleet, Target::Global)?;
        let filter = request.get_ref();
        let mut hosts = self.cp.fleet.list(&filter.region, &filter.labels);
        hosts.retain(|h| who.scope.allows_region(&h.region));
        Ok(Response::new(ListHostsResponse { hosts }))
    }

    async fn get_host(&self, request: Request<GetHostRequest>) -> Result<Response<Host>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let id = &request.get_ref().id;
        let host = self.cp.fleet.get(id).ok_or_else(|| not_found(id))?;
        caller.read(Action::ReadFleet, Target::Region(&host.region))?;
        Ok(Response::new(host))
    }

    type WatchHostsStream = WatchStream;

    async fn watch_hosts(
        &self,
        request: Request<WatchHostsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let scope = caller
            .read(Action::ReadFleet, Target::Global)?
            .scope
            .clone();
        let include_metrics = request.get_ref().include_metrics;
        let mut events = self.cp.fleet.subscribe();
        let stream = async_stream::stream! {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if event.kind == pb::host_event::Kind::Metrics as i32 && !include_metrics {
                            continue;
                        }
                        if !event.host.as_ref().is_some_and(|h| scope.allows_region(&h.region)) {
                            continue;
                        }
                        yield Ok(event);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        yield Err(Status::data_loss(format!(
                            "the watcher fell {missed} events behind and was cut off; list the hosts again and re-watch"
                        )));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn query_metrics(
        &self,
        request: Request<QueryMetricsRequest>,
    ) -> Result<Response<QueryMetricsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let q = request.into_inner();
        let host = self
            .cp
            .fleet
            .get(&q.host_id)
            .ok_or_else(|| not_found(&q.host_id))?;
        caller.read(Action::ReadMetrics, Target::Region(&host.region))?;
        let metric: Metric = q
            .metric
            .parse()
            .map_err(|e: crate::store::UnknownMetric| Status::invalid_argument(e.to_string()))?;
        let now = self.cp.now_ms();
        let end_ms = if q.end_ms == 0 { now } else { q.end_ms };
        let query = MetricQuery {
            host_id: q.host_id.clone(),
            metric,
            start_ms: q.start_ms,
            end_ms,
            step_ms: q.step_ms,
        };
        let result = self
            .cp
            .store
            .query_metric(&query, &self.cp.settings.retention, now)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::InvalidQuery(message) => {
                    Status::invalid_argument(message.to_string())
                }
                other => store_status(other),
            })?;
        Ok(Response::new(QueryMetricsResponse {
            host_id: q.host_id,
            metric: metric.name().to_owned(),
            unit: metric.unit().to_owned(),
            step_ms: result.step_ms,
            points: result
                .points
                .into_iter()
                .map(|p| pb::MetricPoint {
                    timestamp_ms: p.timestamp_ms,
                    avg: p.avg,
                    max: p.max,
                })
                .collect(),
        }))
    }

    async fn revoke_host(
        &self,
        request: Request<RevokeHostRequest>,
    ) -> Result<Response<Host>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let id = &request.get_ref().id;
        let region = self.cp.fleet.get(id).ok_or_else(|| not_found(id))?.region;
        let call = caller
            .change(
                &self.cp,
                Action::RevokeHost,
                Target::Region(&region),
                "host.revoke",
                id,
            )
            .await?;
        call.run(&self.cp, async |principal| {
            let result = self.revoke(id).await;
            if result.is_ok() {
                tracing::info!(host_id = id, by = principal.actor(), "host revoked");
            }
            result
        })
        .await
    }
}
