//! `DeployService`: apply specs, read services, revisions and deployments,
//! watch a deployment, steer it (rollback, promote, pause, resume, cancel),
//! and scale or stop a service.

use crate::auth::{Action, Principal, Target};
use crate::deploy::controller::{DeployError, ReportedStatus, ServiceChange};
use crate::deploy::rollout::Event;
use crate::grpc::{Caller, caller, store_status};
use crate::state::ControlPlane;
use crate::store::{AllocationRow, DeploymentRow, ServiceRow};
use argosy_proto::v1::{self as pb, deploy_service_server};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct DeployApi {
    pub cp: Arc<ControlPlane>,
}

fn deploy_status(error: DeployError) -> Status {
    match error {
        DeployError::Store(error) => store_status(error),
        DeployError::NoService(_)
        | DeployError::NoDeployment(_)
        | DeployError::NoRevision { .. } => Status::not_found(error.to_string()),
        DeployError::Busy { .. }
        | DeployError::Rejected(_)
        | DeployError::NothingToRollBackTo { .. }
        | DeployError::ExactRegions { .. }
        | DeployError::NotDeployed(_)
        | DeployError::MissingSecrets(_) => Status::failed_precondition(error.to_string()),
        DeployError::Denied { .. } => Status::permission_denied(error.to_string()),
        DeployError::SecretStore(_) => Status::unavailable(error.to_string()),
        DeployError::StoredSpec { .. }
        | DeployError::StoredState(..)
        | DeployError::StoredSecretVersions { .. } => Status::internal(error.to_string()),
        DeployError::Invalid(_)
        | DeployError::Format(_)
        | DeployError::Replicas(_)
        | DeployError::Route(_) => Status::invalid_argument(error.to_string()),
    }
}

/// The regions a spec places its service in (empty: anywhere); empty for
/// a spec that does not parse (validation reports it).
fn spec_regions(text: &str, format: &str) -> Vec<String> {
    let format = match format {
        "toml" => crate::deploy::spec::Format::Toml,
        _ => crate::deploy::spec::Format::Yaml,
    };
    crate::deploy::spec::parse(text, format)
        .map(|spec| {
            spec.placement
                .regions
                .iter()
                .map(|r| r.region.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The audit log's name for a deployment command.
fn command_event(event: &Event) -> &'static str {
    match event {
        Event::Promote => "deployment.promote",
        Event::Pause => "deployment.pause",
        Event::Resume => "deployment.resume",
        Event::Cancel => "deployment.cancel",
        _ => "deployment.command",
    }
}

fn revision(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// A deployment row as the API shows it, with counts from its service's allocations.
pub fn deployment_wire(row: &DeploymentRow, allocations: &[AllocationRow]) -> pb::Deployment {
    let machine: Option<crate::deploy::rollout::Deployment> =
        serde_json::from_str(&row.state_json).ok();
    let strategy = match machine.as_ref().map(|m| &m.strategy) {
        Some(crate::deploy::model::UpdateStrategy::Rolling(_)) => "rolling",
        Some(crate::deploy::model::UpdateStrategy::BlueGreen(_)) => "blue_green",
        Some(crate::deploy::model::UpdateStrategy::Canary(_)) => "canary",
        None => "",
    };
    let live = |a: &&AllocationRow| a.desired_run;
    let new: Vec<&AllocationRow> = allocations
        .iter()
        .filter(live)
        .filter(|a| a.revision == row.to_revision)
        .collect();
    pb::Deployment {
        id: row.id.clone(),
        service: row.service.clone(),
        from_revision: revision(row.from_revision),
        to_revision: revision(Some(row.to_revision)),
        strategy: strategy.to_owned(),
        phase: row.phase.clone(),
        finished: row.finished_at_ms.is_some(),
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        created_by: row.created_by.clone(),
        replicas: machine.map_or(0, |m| m.replicas),
        new_healthy: new
            .iter()
            .filter(|a| a.state == "running" && matches!(a.health.as_str(), "healthy" | "none"))
            .count() as u32,
        new_total: new.len() as u32,
        old_total: allocations
            .iter()
            .filter(live)
            .filter(|a| a.revision != row.to_revision)
            .count() as u32,
    }
}

fn allocation_wire(a: &AllocationRow) -> pb::AllocationInfo {
    let status: ReportedStatus = serde_json::from_str(&a.status_json).unwrap_or_default();
    pb::AllocationInfo {
        id: a.id.clone(),
        revision: revision(Some(a.revision)),
        host_id: a.host_id.clone().unwrap_or_default(),
        state: a.state.clone(),
        health: a.health.clone(),
        stopping: !a.desired_run,
        message: a.pending_reason.clone().unwrap_or(status.message),
        restarts: status.restarts,
        oom_killed: status.oom_killed,
        container_id: status.container_id,
    }
}

/// How many of the latest events `GetService` shows.
const HISTORY_EVENTS: usize = 20;
/// Deployments listed when the request sets no limit.
const DEFAULT_DEPLOYMENT_LIMIT: u32 = 50;

impl DeployApi {
    /// The latest events of the service's latest deployments, oldest first.
    async fn history(&self, service: &str) -> Result<Vec<pb::ServiceEvent>, Status> {
        let deployments = self
            .cp
            .store
            .list_deployments(Some(service), 5)
            .await
            .map_err(store_status)?;
        let mut events = Vec::new();
        for d in deployments {
            for e in self
                .cp
                .store
                .deployment_events(&d.id, 0)
                .await
                .map_err(store_status)?
            {
                events.push(pb::ServiceEvent {
                    seq: u64::try_from(e.seq).unwrap_or(0),
                    at_ms: e.at_ms,
                    deployment_id: e.deployment_id,
                    message: e.message,
                });
            }
        }
        events.sort_by_key(|e| e.seq);
        let skip = events.len().saturating_sub(HISTORY_EVENTS);
        Ok(events.split_off(skip))
    }

    async fn service_change(&self, change: ServiceChange) -> Result<pb::ServiceChange, Status> {
        Ok(pb::ServiceChange {
            service: Some(self.service_wire(change.service, true).await?),
            started: change.started,
            stopping: change.stopping,
            message: change.message,
        })
    }

    async fn service_wire(&self, row: ServiceRow, history: bool) -> Result<pb::Service, Status> {
        let allocations = self
            .cp
            .store
            .allocations_for_service(&row.name)
            .await
            .map_err(store_status)?;
        let active = self
            .cp
            .store
            .active_deployment(&row.name)
            .await
            .map_err(store_status)?;
        let live: Vec<&AllocationRow> = allocations.iter().filter(|a| a.desired_run).collect();
        Ok(pb::Service {
            name: row.name.clone(),
            current_revision: revision(row.current_revision),
            stable_revision: revision(row.stable_revision),
            replicas: row.replicas,
            running: live.iter().filter(|a| a.state == "running").count() as u32,
            healthy: live
                .iter()
                .filter(|a| a.state == "running" && matches!(a.health.as_str(), "healthy" | "none"))
                .count() as u32,
            active_deployment_id: active.map(|d| d.id).unwrap_or_default(),
            allocations: allocations.iter().map(allocation_wire).collect(),
            updated_at_ms: row.updated_at_ms,
            stopped: row.stopped,
            history: if history {
                self.history(&row.name).await?
            } else {
                Vec::new()
            },
        })
    }

    async fn deployment(&self, id: &str) -> Result<pb::Deployment, Status> {
        let row = self
            .cp
            .store
            .deployment(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("no deployment with id {id:?}")))?;
        self.with_counts(row).await
    }

    async fn with_counts(&self, row: DeploymentRow) -> Result<pb::Deployment, Status> {
        let allocations = self
            .cp
            .store
            .allocations_for_service(&row.service)
            .await
            .map_err(store_status)?;
        Ok(deployment_wire(&row, &allocations))
    }

    async fn command(
        &self,
        request: Request<pb::DeploymentCommand>,
        event: Event,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let id = &request.get_ref().id;
        let service = self
            .cp
            .store
            .deployment(id)
            .await
            .map_err(store_status)?
            .map(|d| d.service)
            .unwrap_or_default();
        let call = self
            .change_service(caller, &service, command_event(&event), id)
            .await?;
        call.run(&self.cp, async |principal| {
            match self.cp.deploy.command(id, event, &principal.actor()).await {
                Ok(row) => self.with_counts(row).await,
                Err(error) => Err(deploy_status(error)),
            }
        })
        .await
    }

    /// Applies an authorized spec and describes the result.
    async fn apply_spec(
        &self,
        r: &pb::ApplyRequest,
        actor: &str,
    ) -> Result<pb::ApplyResponse, Status> {
        let applied = self
            .cp
            .deploy
            .apply(&r.spec, &r.format, actor, false, &self.cp.secrets)
            .await
            .map_err(deploy_status)?;
        let deployment = match applied.deployment {
            Some(row) => Some(self.with_counts(row).await?),
            None => None,
        };
        tracing::info!(
            service = applied.service,
            revision = applied.revision,
            by = actor,
            "spec applied"
        );
        Ok(pb::ApplyResponse {
            service: applied.service,
            revision: revision(Some(applied.revision)),
            created: applied.created,
            deployment,
            warnings: applied.warnings,
            defaults_applied: applied.defaults_applied,
        })
    }

    /// The regions a stored service may be placed in (empty: anywhere),
    /// from its current revision; empty for an unknown service.
    async fn service_regions(&self, service: &str) -> Result<Vec<String>, Status> {
        let Some(row) = self.cp.store.service(service).await.map_err(store_status)? else {
            return Ok(Vec::new());
        };
        let Some(number) = row.current_revision else {
            return Ok(Vec::new());
        };
        let Some(revision) = self
            .cp
            .store
            .revision(service, number)
            .await
            .map_err(store_status)?
        else {
            return Ok(Vec::new());
        };
        Ok(spec_regions(&revision.spec_text, &revision.spec_format))
    }

    /// Authorizes and audits a change to a stored service.
    async fn change_service(
        &self,
        caller: Caller,
        service: &str,
        event: &str,
        subject: &str,
    ) -> Result<crate::grpc::AuditedCall, Status> {
        let regions = self.service_regions(service).await?;
        caller
            .change(
                &self.cp,
                Action::Deploy,
                Target::Service {
                    name: service,
                    regions: &regions,
                },
                event,
                subject,
            )
            .await
    }

    /// Authorizes a read of one service.
    async fn read_service(&self, caller: &Caller, service: &str) -> Result<(), Status> {
        let regions = self.service_regions(service).await?;
        caller.read(
            Action::ReadDeployments,
            Target::Service {
                name: service,
                regions: &regions,
            },
        )?;
        Ok(())
    }

    /// Whether a scoped principal may see this service (listings).
    async fn visible(&self, who: &Principal, service: &str) -> Result<bool, Status> {
        if who.scope.is_unrestricted() {
            return Ok(true);
        }
        let regions = self.service_regions(service).await?;
        Ok(crate::auth::authorize(
            who,
            Action::ReadDeployments,
            Target::Service {
                name: service,
                regions: &regions,
            },
        )
        .is_ok())
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::DeploymentEvent, Status>> + Send>>;
type LogsStream = Pin<Box<dyn Stream<Item = Result<pb::LogLine, Status>> + Send>>;

/// Open log requests of one `Logs` call; telling the agents to stop when
/// the caller goes away.
struct LogRequests {
    cp: Arc<ControlPlane>,
    open: Vec<(u64, String)>,
}

impl Drop for LogRequests {
    fn drop(&mut self) {
        for (id, host) in &self.open {
            self.cp.logs.close(*id);
            self.cp.fleet.send(
                host,
                pb::ControlMessage {
                    body: Some(pb::control_message::Body::LogCancel(pb::LogCancel {
                        request_id: *id,
                    })),
                },
            );
        }
    }
}

#[tonic::async_trait]
impl deploy_service_server::DeployService for DeployApi {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        // The target is what the spec asks for; a spec that does not parse
        // is checked against the role alone, then reported as invalid.
        let format = match r.format.as_str() {
            "yaml" | "yml" => crate::deploy::spec::Format::Yaml,
            "toml" => crate::deploy::spec::Format::Toml,
            other => {
                caller.read_role(Action::Deploy)?;
                return Err(deploy_status(DeployError::Format(other.to_owned())));
            }
        };
        let spec = match crate::deploy::spec::parse(&r.spec, format) {
            Ok(spec) => spec,
            Err(errors) => {
                caller.read_role(Action::Deploy)?;
                return Err(deploy_status(errors.into()));
            }
        };
        let regions: Vec<String> = spec
            .placement
            .regions
            .iter()
            .map(|p| p.region.clone())
            .collect();
        let target = Target::Service {
            name: &spec.name,
            regions: &regions,
        };
        if let Some(policy) = &spec.pre_deploy_backup {
            let known = self
                .cp
                .store
                .backup_policy(policy)
                .await
                .map_err(store_status)?;
            if known.is_none() {
                caller.read_role(Action::Deploy)?;
                return Err(Status::failed_precondition(format!(
                    "pre_deploy_backup names backup policy `{policy}`, which does not exist; \
                     create it with `argosy backup policy apply -f FILE` first"
                )));
            }
        }
        if r.dry_run {
            let who = caller.read(Action::Deploy, target)?;
            let applied = self
                .cp
                .deploy
                .apply(&r.spec, &r.format, &who.actor(), true, &self.cp.secrets)
                .await
                .map_err(deploy_status)?;
            return Ok(Response::new(pb::ApplyResponse {
                service: applied.service,
                revision: 0,
                created: false,
                deployment: None,
                warnings: applied.warnings,
                defaults_applied: applied.defaults_applied,
            }));
        }
        let call = caller
            .change(
                &self.cp,
                Action::Deploy,
                target,
                "service.apply",
                &spec.name,
            )
            .await?;
        call.run(&self.cp, async |principal| {
            self.apply_spec(&r, &principal.actor()).await
        })
        .await
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let who = caller.read(Action::ReadDeployments, Target::Global)?;
        let rows = self.cp.store.list_services().await.map_err(store_status)?;
        let mut services = Vec::with_capacity(rows.len());
        for row in rows {
            if self.visible(who, &row.name).await? {
                services.push(self.service_wire(row, false).await?);
            }
        }
        Ok(Response::new(pb::ListServicesResponse { services }))
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::Service>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let name = &request.get_ref().name;
        self.read_service(&caller, name).await?;
        let row = self
            .cp
            .store
            .service(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no service named {name:?}; `argosy services list` shows them"
                ))
            })?;
        self.service_wire(row, true).await.map(Response::new)
    }

    async fn list_revisions(
        &self,
        request: Request<pb::ListRevisionsRequest>,
    ) -> Result<Response<pb::ListRevisionsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        self.read_service(&caller, &request.get_ref().service)
            .await?;
        let rows = self
            .cp
            .store
            .list_revisions(&request.get_ref().service)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListRevisionsResponse {
            revisions: rows
                .into_iter()
                .map(|r| pb::Revision {
                    service: r.service,
                    number: revision(Some(r.number)),
                    id: r.id,
                    created_at_ms: r.created_at_ms,
                    created_by: r.created_by,
                    secret_versions: crate::deploy::secret_refs::ResolvedVersions::from_json(
                        &r.secret_versions_json,
                    )
                    .unwrap_or_default()
                    .0
                    .into_iter()
                    .collect(),
                    spec: r.spec_text,
                    format: r.spec_format,
                })
                .collect(),
        }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let deployment = self.deployment(&request.get_ref().id).await?;
        self.read_service(&caller, &deployment.service).await?;
        Ok(Response::new(deployment))
    }

    type WatchDeploymentStream = WatchStream;

    async fn watch_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let id = request.into_inner().id;
        let first = self.deployment(&id).await?;
        self.read_service(&caller, &first.service).await?;
        let mut changes = self.cp.deploy.subscribe();
        let cp = self.cp.clone();
        let stream = async_stream::try_stream! {
            let mut after = 0i64;
            let mut finished = first.finished;
            loop {
                let events = cp.store.deployment_events(&id, after).await.map_err(store_status)?;
                if !events.is_empty() {
                    let row = cp.store.deployment(&id).await.map_err(store_status)?
                        .ok_or_else(|| Status::not_found("the deployment was deleted"))?;
                    let allocations = cp.store.allocations_for_service(&row.service).await.map_err(store_status)?;
                    let snapshot = deployment_wire(&row, &allocations);
                    finished = snapshot.finished;
                    for event in events {
                        after = event.seq;
                        yield pb::DeploymentEvent {
                            seq: u64::try_from(event.seq).unwrap_or(0),
                            at_ms: event.at_ms,
                            message: event.message,
                            deployment: Some(snapshot.clone()),
                        };
                    }
                }
                if finished {
                    break;
                }
                // Wake on any deployment change, or every second at worst.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), changes.recv()).await;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        let call = self
            .change_service(caller, &r.service, "service.rollback", &r.service)
            .await?;
        let to = (r.to_revision > 0).then(|| i64::try_from(r.to_revision).unwrap_or(i64::MAX));
        let actor = call.principal.actor();
        call.run(&self.cp, async |_| {
            match self.cp.deploy.rollback(&r.service, to, &actor).await {
                Ok(row) => {
                    tracing::info!(
                        service = r.service,
                        deployment = row.id,
                        phase = row.phase,
                        by = actor,
                        "rollback"
                    );
                    self.with_counts(row).await
                }
                Err(error) => Err(deploy_status(error)),
            }
        })
        .await
    }

    async fn promote(
        &self,
        request: Request<pb::DeploymentCommand>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.command(request, Event::Promote).await
    }

    async fn pause(
        &self,
        request: Request<pb::DeploymentCommand>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.command(request, Event::Pause).await
    }

    async fn resume(
        &self,
        request: Request<pb::DeploymentCommand>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.command(request, Event::Resume).await
    }

    async fn cancel(
        &self,
        request: Request<pb::DeploymentCommand>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.command(request, Event::Cancel).await
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let who = caller.read(Action::ReadDeployments, Target::Global)?;
        let r = request.into_inner();
        let limit = if r.limit == 0 {
            DEFAULT_DEPLOYMENT_LIMIT
        } else {
            r.limit.min(1000)
        };
        let service = (!r.service.is_empty()).then_some(r.service.as_str());
        let rows = self
            .cp
            .store
            .list_deployments(service, limit)
            .await
            .map_err(store_status)?;
        // One read of allocations per service, however many deployments it has.
        let mut allocations: HashMap<String, Vec<AllocationRow>> = HashMap::new();
        let mut deployments = Vec::with_capacity(rows.len());
        for row in rows {
            if !self.visible(who, &row.service).await? {
                continue;
            }
            if !allocations.contains_key(&row.service) {
                let found = self
                    .cp
                    .store
                    .allocations_for_service(&row.service)
                    .await
                    .map_err(store_status)?;
                allocations.insert(row.service.clone(), found);
            }
            let of_service = allocations
                .get(&row.service)
                .map(Vec::as_slice)
                .unwrap_or_default();
            deployments.push(deployment_wire(&row, of_service));
        }
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }

    async fn scale(
        &self,
        request: Request<pb::ScaleRequest>,
    ) -> Result<Response<pb::ServiceChange>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        let call = self
            .change_service(caller, &r.service, "service.scale", &r.service)
            .await?;
        let actor = call.principal.actor();
        call.run(&self.cp, async |_| {
            match self.cp.deploy.scale(&r.service, r.replicas, &actor).await {
                Ok(change) => self.service_change(change).await,
                Err(error) => Err(deploy_status(error)),
            }
        })
        .await
    }

    async fn stop_service(
        &self,
        request: Request<pb::StopServiceRequest>,
    ) -> Result<Response<pb::ServiceChange>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        let call = self
            .change_service(caller, &r.service, "service.stop", &r.service)
            .await?;
        let actor = call.principal.actor();
        call.run(&self.cp, async |_| {
            match self.cp.deploy.stop(&r.service, &actor).await {
                Ok(change) => self.service_change(change).await,
                Err(error) => Err(deploy_status(error)),
            }
        })
        .await
    }

    type LogsStream = LogsStream;

    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<LogsStream>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        let regions = self.service_regions(&r.service).await?;
        caller.read(
            Action::ReadLogs,
            Target::Service {
                name: &r.service,
                regions: &regions,
            },
        )?;
        if self
            .cp
            .store
            .service(&r.service)
            .await
            .map_err(store_status)?
            .is_none()
        {
            return Err(Status::not_found(format!(
                "no service named {:?}; `argosy services list` shows them",
                r.service
            )));
        }
        let allocations: Vec<AllocationRow> = self
            .cp
            .store
            .allocations_for_service(&r.service)
            .await
            .map_err(store_status)?
            .into_iter()
            .filter(|a| a.desired_run && a.host_id.is_some())
            .filter(|a| r.allocation_id.is_empty() || a.id == r.allocation_id)
            .collect();
        if allocations.is_empty() {
            return Err(Status::not_found(if r.allocation_id.is_empty() {
                format!(
                    "service {} has no placed allocation to read logs from",
                    r.service
                )
            } else {
                format!(
                    "service {} has no placed allocation {}",
                    r.service, r.allocation_id
                )
            }));
        }
        let tail = if r.tail == 0 { 100 } else { r.tail };
        let mut requests = LogRequests {
            cp: self.cp.clone(),
            open: Vec::new(),
        };
        let mut streams = Vec::new();
        for a in allocations {
            let host = a.host_id.clone().unwrap_or_default();
            let (id, rx) = self.cp.logs.open();
            let sent = self.cp.fleet.send(
                &host,
                pb::ControlMessage {
                    body: Some(pb::control_message::Body::LogRequest(pb::LogRequest {
                        request_id: id,
                        allocation_id: a.id.clone(),
                        follow: r.follow,
                        tail,
                    })),
                },
            );
            if !sent {
                self.cp.logs.close(id);
                continue;
            }
            requests.open.push((id, host.clone()));
            let (allocation_id, host_id) = (a.id.clone(), host);
            streams.push(tokio_stream::StreamExt::map(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                move |chunk| (allocation_id.clone(), host_id.clone(), chunk),
            ));
        }
        if streams.is_empty() {
            return Err(Status::unavailable(format!(
                "no host running {} is connected right now; try again when it is online",
                r.service
            )));
        }
        let mut merged = futures_util::stream::select_all(streams);
        let stream = async_stream::try_stream! {
            let _requests = requests;
            while let Some((allocation_id, host_id, chunk)) = futures_util::StreamExt::next(&mut merged).await {
                if !chunk.error.is_empty() {
                    Err(Status::failed_precondition(format!("logs of {allocation_id} on {host_id}: {}", chunk.error)))?;
                }
                if !chunk.data.is_empty() {
                    yield pb::LogLine { allocation_id, host_id, stderr: chunk.stderr, data: chunk.data };
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
