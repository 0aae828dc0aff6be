//! `AgentService`: enrollment with a join token, certificate renewal, and the
//! long-lived session stream of every connected agent.

use crate::clock::format_ms;
use crate::fleet::SessionHandle;
use crate::grpc::store_status;
use crate::ingest::sample_row;
use crate::pki::{PeerHost, peer_host};
use crate::secrets;
use crate::state::{ControlPlane, Telemetry};
use crate::store::{HostRow, Redemption};
use argosy_proto::v1::{
    self as pb, AgentMessage, ControlMessage, EnrollRequest, EnrollResponse,
    RenewCertificateRequest, RenewCertificateResponse, agent_message, agent_service_server,
    control_message,
};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// The gRPC adapter for agents.
pub struct AgentApi {
    pub cp: Arc<ControlPlane>,
}

impl AgentApi {
    /// The verified client certificate's host, refusing unknown or revoked hosts.
    async fn peer<T>(&self, request: &Request<T>) -> Result<PeerHost, Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "this call needs the agent's client certificate (mutual TLS); enroll the host first with `argosy-agent run --join …`",
            )
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate was presented"))?;
        let peer = peer_host(leaf).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let host = self
            .cp
            .store
            .host(&peer.host_id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "host {} is not known to this control plane; re-enroll it with a new join token",
                    peer.host_id
                ))
            })?;
        if let Some(at) = host.revoked_at_ms {
            return Err(Status::permission_denied(format!(
                "host {} was revoked at {}; re-enroll it with a new join token",
                peer.host_id,
                format_ms(at)
            )));
        }
        Ok(peer)
    }

    async fn enroll_inner(&self, request: EnrollRequest) -> Result<EnrollResponse, Status> {
        let cp = &self.cp;
        let (token_id, secret) = secrets::parse_join_token(&request.join_token).ok_or_else(|| {
            Status::invalid_argument("the join token is malformed; copy the whole join string from `argosy join-token create`")
        })?;
        let unknown = || {
            Status::unauthenticated(
                "the join token is not valid (unknown token or wrong secret); create a new one with `argosy join-token create`",
            )
        };
        let token = cp
            .store
            .join_token(token_id)
            .await
            .map_err(store_status)?
            .ok_or_else(unknown)?;
        if !secrets::secret_matches(secret, &token.secret_hash) {
            return Err(unknown());
        }
        let now = cp.now_ms();
        let token = match cp
            .store
            .redeem_join_token(token_id, now)
            .await
            .map_err(store_status)?
        {
            Redemption::Redeemed(token) => token,
            Redemption::Unknown => return Err(unknown()),
            Redemption::Expired { expired_at_ms } => {
                return Err(Status::unauthenticated(format!(
                    "join token {token_id} expired at {}; create a new one with `argosy join-token create`",
                    format_ms(expired_at_ms)
                )));
            }
            Redemption::Revoked => {
                return Err(Status::unauthenticated(format!(
                    "join token {token_id} was revoked; create a new one with `argosy join-token create`"
                )));
            }
            Redemption::UsedUp { max_uses } => {
                return Err(Status::unauthenticated(format!(
                    "join token {token_id} has already been used {max_uses} time(s), its limit; create a new one with `argosy join-token create`"
                )));
            }
        };
        let host_id = format!("h-{}", secrets::random_id(12));
        let issued = cp
            .ca
            .sign_host_csr(
                &request.csr_pem,
                &host_id,
                now,
                cp.settings.agent_cert_ttl_ms,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let inventory = request.inventory.unwrap_or_default();
        let row = HostRow {
            id: host_id.clone(),
            hostname: inventory.hostname.clone(),
            region: token.region.clone(),
            labels: token.labels.clone(),
            enrolled_at_ms: now,
            last_seen_ms: None,
            inventory: inventory.encode_to_vec(),
            interval_seconds: 10,
            cert_serial: issued.serial_hex.clone(),
            cert_not_after_ms: issued.not_after_ms,
            revoked_at_ms: None,
            join_token_id: token.id.clone(),
        };
        cp.store.insert_host(&row).await.map_err(store_status)?;
        cp.fleet.enrolled(row, now);
        tracing::info!(
            host_id,
            hostname = inventory.hostname,
            region = token.region,
            join_token = token.id,
            "host enrolled"
        );
        Ok(EnrollResponse {
            host_id,
            certificate_pem: issued.certificate_pem,
            ca_certificate_pem: cp.ca.certificate_pem().to_owned(),
            not_after_ms: issued.not_after_ms,
            region: token.region,
            labels: token.labels.into_iter().collect(),
        })
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl agent_service_server::AgentService for AgentApi {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let result = self.enroll_inner(request.into_inner()).await;
        match &result {
            Ok(_) => Telemetry::inc(&self.cp.telemetry.enrollments),
            Err(status) => {
                Telemetry::inc(&self.cp.telemetry.enrollment_failures);
                tracing::warn!(reason = status.message(), "enrollment refused");
            }
        }
        result.map(Response::new)
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let peer = self.peer(&request).await?;
        let cp = &self.cp;
        let now = cp.now_ms();
        let issued = cp
            .ca
            .sign_host_csr(
                &request.get_ref().csr_pem,
                &peer.host_id,
                now,
                cp.settings.agent_cert_ttl_ms,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        cp.store
            .set_host_certificate(&peer.host_id, &issued.serial_hex, issued.not_after_ms)
            .await
            .map_err(store_status)?;
        cp.fleet
            .certificate_renewed(&peer.host_id, &issued.serial_hex, issued.not_after_ms);
        Telemetry::inc(&cp.telemetry.certificates_renewed);
        tracing::info!(
            host_id = peer.host_id,
            not_after = format_ms(issued.not_after_ms),
            "certificate renewed"
        );
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: issued.certificate_pem,
            not_after_ms: issued.not_after_ms,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = self.peer(&request).await?;
        let source = crate::grpc::source_of(&request);
        let inbound = request.into_inner();
        let (outbound, rx) = mpsc::channel(64);
        let cp = self.cp.clone();
        let session = SessionHandle {
            id: cp.next_session_id(),
            outbound: outbound.clone(),
            closed: Arc::new(Notify::new()),
        };
        Telemetry::inc(&cp.telemetry.sessions_opened);
        let span = tracing::info_span!("session", host_id = peer.host_id, session = session.id);
        tokio::spawn(run_session(cp, peer.host_id, source, session, inbound).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn control(body: control_message::Body) -> Result<ControlMessage, Status> {
    Ok(ControlMessage { body: Some(body) })
}

/// Serves one agent session until either side ends it.
async fn run_session(
    cp: Arc<ControlPlane>,
    host_id: String,
    source: String,
    session: SessionHandle,
    mut inbound: Streaming<AgentMessage>,
) {
    let mut registered = false;
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = session.closed.notified() => break,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(host_id, error = %status, "session stream ended");
                break;
            }
        };
        let now = cp.now_ms();
        match message.body {
            Some(agent_message::Body::Hello(hello)) => {
                let inventory = hello.inventory.unwrap_or_default();
                let interval = hello.interval_seconds.max(1);
                if let Err(error) = cp
                    .store
                    .record_host_connected(
                        &host_id,
                        now,
                        &inventory.encode_to_vec(),
                        &inventory.hostname,
                        interval,
                    )
                    .await
                {
                    tracing::error!(host_id, %error, "could not record the host's connection");
                    let _ = session.outbound.send(Err(store_status(error))).await;
                    break;
                }
                if let Some(previous) =
                    cp.fleet
                        .connected(&host_id, session.clone(), inventory, interval, now)
                {
                    previous.close(
                        "a newer connection from the same host replaced this one",
                        Status::aborted("replaced by a newer connection from the same host"),
                    );
                }
                registered = true;
                tracing::info!(host_id, interval, "agent connected");
                let welcome = control_message::Body::Welcome(pb::Welcome {
                    host_id: host_id.clone(),
                    server_time_ms: now,
                });
                if session.outbound.send(control(welcome)).await.is_err() {
                    break;
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
                match cp.deploy.desired_state(&host_id).await {
                    Ok(desired) => {
                        let body = control_message::Body::Desired(desired);
                        if session.outbound.send(control(body)).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(host_id, %error, "could not compute the host's desired state")
                    }
                }
                let region = cp.fleet.get(&host_id).map(|h| h.region).unwrap_or_default();
                if let Some(table) = cp.routing.table_for(&region) {
                    let body = control_message::Body::Routing(table);
                    if session.outbound.send(control(body)).await.is_err() {
                        break;
                    }
                }
                if let Err(error) = cp.backups.host_connected(&host_id).await {
                    tracing::warn!(host_id, %error, "could not resend the host's backup jobs");
                }
            }
            Some(agent_message::Body::JobUpdate(update)) if registered => {
                match cp.backups.job_update(&host_id, update, &cp.secrets).await {
                    Ok(outcome) => {
                        cp.pre_deploy_backups_done(outcome.into_iter().collect())
                            .await
                    }
                    Err(error) => {
                        // Not acknowledged: the agent sends it again.
                        tracing::warn!(host_id, %error, "could not take in a backup job update");
                        continue;
                    }
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::JobUpdate(_)) => {
                let _ = session
                    .outbound
                    .send(Err(Status::failed_precondition(
                        "send Hello before job updates",
                    )))
                    .await;
                break;
            }
            Some(agent_message::Body::Metrics(batch)) => {
                if !registered {
                    let _ = session
                        .outbound
                        .send(Err(Status::failed_precondition(
                            "send Hello before metrics",
                        )))
                        .await;
                    break;
                }
                cp.fleet.heard_from(&host_id, now);
                let mut rows = Vec::with_capacity(batch.samples.len());
                let mut kept = Vec::with_capacity(batch.samples.len());
                for sample in batch.samples {
                    match sample_row(&host_id, &sample, now) {
                        Ok(row) => {
                            rows.push(row);
                            kept.push(sample);
                        }
                        Err(error) => {
                            Telemetry::inc(&cp.telemetry.samples_rejected);
                            tracing::warn!(host_id, %error, "sample refused");
                        }
                    }
                }
                let count = rows.len() as u64;
                if !rows.is_empty()
                    && let Err(error) = cp.writer.write(rows).await
                {
                    Telemetry::inc(&cp.telemetry.store_write_failures);
                    // Not acknowledged: the agent keeps the samples and resends them.
                    let _ = session
                            .outbound
                            .send(Err(Status::unavailable(format!(
                                "samples were not stored ({error}); the agent keeps them and resends on reconnect"
                            ))))
                            .await;
                    break;
                }
                Telemetry::add(&cp.telemetry.samples_stored, count);
                if let Some(latest) = kept.into_iter().max_by_key(|s| s.timestamp_ms) {
                    cp.fleet.sampled(&host_id, latest, now);
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::LogChunk(chunk)) => {
                let id = chunk.request_id;
                if !cp.logs.deliver(chunk).await {
                    let cancel = control_message::Body::LogCancel(pb::LogCancel { request_id: id });
                    let _ = session.outbound.try_send(control(cancel));
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::SecretRequest(request)) if registered => {
                let response =
                    crate::grpc::secret_delivery::answer(&cp, &host_id, &source, request).await;
                let body = control_message::Body::SecretResponse(response);
                if session.outbound.send(control(body)).await.is_err() {
                    break;
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::SecretRequest(_)) => {
                let _ = session
                    .outbound
                    .send(Err(Status::failed_precondition(
                        "send Hello before asking for secrets",
                    )))
                    .await;
                break;
            }
            Some(agent_message::Body::Allocations(report)) => {
                cp.fleet.heard_from(&host_id, now);
                if !report.host_error.is_empty() {
                    tracing::warn!(
                        host_id,
                        error = report.host_error,
                        "the host cannot run containers"
                    );
                }
                cp.fleet.runtime_reported(&host_id, &report.host_error, now);
                if let Err(error) = cp.deploy.report(&host_id, report).await {
                    // Not acknowledged: the agent reports again on the next change or reconnect.
                    tracing::warn!(host_id, %error, "could not take in the allocation report");
                    continue;
                }
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::Latency(report)) => {
                cp.routing.record_round_trips(&host_id, &report, now);
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            Some(agent_message::Body::Traffic(report)) => {
                cp.deploy.traffic().record(&host_id, report, now);
                let ack = control_message::Body::Ack(pb::Ack { seq: message.seq });
                if session.outbound.send(control(ack)).await.is_err() {
                    break;
                }
            }
            None => {}
        }
    }
    if registered {
        let now = cp.now_ms();
        cp.fleet.disconnected(&host_id, session.id, now);
        if let Err(error) = cp.store.record_host_seen(&host_id, now).await {
            tracing::warn!(host_id, %error, "could not record the host's last-seen time");
        }
        tracing::info!(host_id, "agent disconnected");
    }
}
