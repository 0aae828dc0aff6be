//! `AuditService`: list the audit log with filters and verify its chain.

use crate::audit::AuditRecord;
use crate::auth::Action;
use crate::grpc::{principal, store_status};
use crate::state::ControlPlane;
use crate::store::AuditFilter;
use argosy_proto::v1::{self as pb, audit_service_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuditApi {
    pub cp: Arc<ControlPlane>,
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub fn record_wire(record: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: record.seq,
        at_ms: record.at_ms,
        actor: record.entry.actor,
        source: record.entry.source,
        action: record.entry.action,
        target: record.entry.target,
        outcome: record.entry.outcome,
        prev_hash: record.prev_hash,
        hash: record.hash,
    }
}

/// The store filter a list request asks for.
fn filter(request: &pb::ListAuditRequest) -> AuditFilter {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    AuditFilter {
        since_ms: (request.since_ms > 0).then_some(request.since_ms),
        actor: text(&request.actor),
        action: text(&request.action),
        before_seq: (request.before_seq > 0).then_some(request.before_seq),
        limit: match request.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        },
    }
}

#[tonic::async_trait]
impl audit_service_server::AuditService for AuditApi {
    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        principal(&self.cp, &request, Action::ReadAudit).await?;
        let records = self
            .cp
            .store
            .list_audit(&filter(request.get_ref()))
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListAuditResponse {
            records: records.into_iter().map(record_wire).collect(),
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        principal(&self.cp, &request, Action::ReadAudit).await?;
        let verification = self.cp.audit.verify().await.map_err(store_status)?;
        let (head_seq, head_hash) = verification.head.unwrap_or_default();
        Ok(Response::new(pb::VerifyAuditResponse {
            records: verification.records,
            head_seq,
            head_hash,
            problems: verification
                .problems
                .iter()
                .map(ToString::to_string)
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_requests_map_to_bounded_filters() {
        let all = filter(&pb::ListAuditRequest::default());
        assert_eq!(
            all,
            AuditFilter {
                limit: DEFAULT_LIMIT,
                ..AuditFilter::default()
            }
        );
        let narrow = filter(&pb::ListAuditRequest {
            since_ms: 5,
            actor: "user:alice".into(),
            action: "secret.read".into(),
            before_seq: 9,
            limit: 50_000,
        });
        assert_eq!(
            narrow,
            AuditFilter {
                since_ms: Some(5),
                actor: Some("user:alice".into()),
                action: Some("secret.read".into()),
                before_seq: Some(9),
                limit: MAX_LIMIT,
            }
        );
    }
}
