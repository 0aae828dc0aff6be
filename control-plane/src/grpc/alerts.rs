//! `AlertService`: alerts and their history, acknowledgement, rules
//! (built-in and custom, from flags or a file), silences and notification
//! channels. Reads need `ReadAlerts` (viewers; results filtered by the
//! caller's scope), changes need `ManageAlerts` (operators) and are
//! audited. The decisions are in `crate::alerts`; this adapter validates,
//! stores and converts.

use crate::alerts::engine::{self, parse_channel, parse_rule, parse_silence, rule_row};
use crate::alerts::routing::{self, ChannelKind};
use crate::alerts::rules::{
    Rule, RuleDefinition, RuleError, RulesFormat, Severity, Tuning, parse_rules_file,
};
use crate::alerts::silences::{self, Matcher};
use crate::auth::{Action, Principal, Target};
use crate::grpc::{begin, principal, store_status};
use crate::state::ControlPlane;
use crate::store::{AlertRow, AlertRuleRow, ChannelRow, SilenceRow, StoreError};
use argosy_proto::v1::{self as pb, alert_service_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AlertApi {
    pub cp: Arc<ControlPlane>,
}

/// Alerts listed when the request sets no limit, and at most.
const DEFAULT_ALERT_LIMIT: u32 = 100;
const MAX_ALERT_LIMIT: u32 = 1_000;
/// Expired silences `ListSilences` shows with `include_expired`.
const EXPIRED_SILENCES_SHOWN_MS: i64 = 86_400_000;

fn store_error(error: StoreError) -> Status {
    match error {
        StoreError::NotFound { .. } => Status::not_found(error.to_string()),
        StoreError::AlreadyExists { .. } => Status::already_exists(error.to_string()),
        other => store_status(other),
    }
}

fn rule_error(error: RuleError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// Whether the caller's scope covers an alert (by its region and service
/// labels; alerts without them are visible to all).
fn in_scope(principal: &Principal, labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels
        .get("region")
        .is_none_or(|r| principal.scope.allows_region(r))
        && labels
            .get("service")
            .is_none_or(|s| principal.scope.allows_name(s))
}

fn alert_wire(row: AlertRow) -> pb::Alert {
    pb::Alert {
        id: row.id,
        fingerprint: row.fingerprint,
        rule: row.rule,
        severity: row.severity,
        labels: row.labels.into_iter().collect(),
        summary: row.summary,
        condition: row.condition,
        value: row.value,
        state: row.state,
        started_at_ms: row.started_at_ms,
        firing_since_ms: row.firing_since_ms.unwrap_or(0),
        resolved_at_ms: row.resolved_at_ms.unwrap_or(0),
        acknowledged_at_ms: row.acked_at_ms.unwrap_or(0),
        acknowledged_by: row.acked_by.unwrap_or_default(),
        acknowledge_comment: row.ack_comment.unwrap_or_default(),
        history: Vec::new(),
    }
}

fn seconds(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}

fn rule_wire(rule: &Rule, row: &AlertRuleRow) -> pb::AlertRule {
    let event = rule.signal.is_event();
    pb::AlertRule {
        name: rule.name.clone(),
        metric: rule.signal.name().to_owned(),
        op: if event {
            String::new()
        } else {
            rule.op.symbol().to_owned()
        },
        threshold: rule.threshold,
        for_seconds: seconds(rule.for_ms),
        keep_firing_for_seconds: seconds(rule.keep_firing_for_ms),
        severity: rule.severity.as_str().to_owned(),
        region: rule.selector.region.clone().unwrap_or_default(),
        labels: rule.selector.labels.clone().into_iter().collect(),
        host: rule.selector.host.clone().unwrap_or_default(),
        service: rule.selector.service.clone().unwrap_or_default(),
        enabled: rule.enabled,
        builtin: rule.builtin,
        event,
        condition: rule.condition(),
        updated_at_ms: row.updated_at_ms,
        updated_by: row.updated_by.clone(),
    }
}

fn silence_wire(row: &SilenceRow, now_ms: i64) -> Result<pb::Silence, Status> {
    let silence = parse_silence(row).map_err(store_status)?;
    Ok(pb::Silence {
        id: row.id.clone(),
        matchers: silence.matchers.iter().map(Matcher::to_string).collect(),
        starts_at_ms: row.starts_at_ms,
        ends_at_ms: row.ends_at_ms,
        comment: row.comment.clone(),
        created_by: row.created_by.clone(),
        active: silence.is_active(now_ms),
        expired_by: row.expired_by.clone().unwrap_or_default(),
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn channel_wire(row: ChannelRow) -> pb::Channel {
    pb::Channel {
        url: routing::redacted_url(&row.url),
        name: row.name,
        kind: row.kind,
        min_severity: row.min_severity,
        created_at_ms: row.created_at_ms,
        created_by: row.created_by,
        attempts: count(row.attempts),
        failures: count(row.failures),
        delivered: count(row.delivered),
        last_success_ms: row.last_success_ms.unwrap_or(0),
        last_error: row.last_error.unwrap_or_default(),
        last_error_ms: row.last_error_ms.unwrap_or(0),
        pending: count(row.pending),
        retrying: count(row.retrying),
        given_up: count(row.given_up),
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The rule a request describes, as people would write it.
fn definition(r: &pb::AddRuleRequest) -> RuleDefinition {
    RuleDefinition {
        name: r.name.trim().to_owned(),
        metric: r.metric.trim().to_owned(),
        op: non_empty(&r.op),
        threshold: r.threshold,
        for_: non_empty(&r.for_duration),
        keep_firing_for: non_empty(&r.keep_firing_for),
        severity: non_empty(&r.severity),
        region: non_empty(&r.region),
        labels: r.labels.clone().into_iter().collect(),
        host: non_empty(&r.host),
        service: non_empty(&r.service),
        enabled: None,
    }
}

impl AlertApi {
    fn now(&self) -> i64 {
        self.cp.now_ms()
    }

    async fn stored_rule(&self, name: &str) -> Result<(Rule, AlertRuleRow), Status> {
        let row = self
            .cp
            .store
            .alert_rule(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no alert rule named {name:?}; `argosy alert rule list` shows them"
                ))
            })?;
        let rule = parse_rule(&row).map_err(store_status)?;
        Ok((rule, row))
    }

    async fn save(&self, rule: &Rule, actor: &str) -> Result<pb::AlertRule, Status> {
        let row = rule_row(rule, self.now(), actor);
        self.cp
            .store
            .save_alert_rule(&row)
            .await
            .map_err(store_status)?;
        let (rule, row) = self.stored_rule(&rule.name).await?;
        Ok(rule_wire(&rule, &row))
    }

    async fn add_rule_as(
        &self,
        request: pb::AddRuleRequest,
        who: &Principal,
    ) -> Result<pb::AlertRule, Status> {
        let rule = definition(&request).validate(false).map_err(rule_error)?;
        let row = rule_row(&rule, self.now(), &who.actor());
        self.cp
            .store
            .insert_alert_rule(&row)
            .await
            .map_err(|error| match error {
                StoreError::AlreadyExists { .. } => Status::already_exists(format!(
                    "an alert rule named {:?} exists; choose another name, tune it with `argosy alert rule set`, or replace it with `argosy alert rule apply -f`",
                    rule.name
                )),
                other => store_status(other),
            })?;
        Ok(rule_wire(&rule, &row))
    }

    async fn apply_rules_as(
        &self,
        request: pb::ApplyRulesRequest,
        who: &Principal,
    ) -> Result<pb::ApplyRulesResponse, Status> {
        let format = match request.format.as_str() {
            "" | "yaml" | "yml" => RulesFormat::Yaml,
            "toml" => RulesFormat::Toml,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown rules file format {other:?}: use yaml or toml"
                )));
            }
        };
        let definitions = parse_rules_file(&request.text, format).map_err(rule_error)?;
        let mut response = pb::ApplyRulesResponse::default();
        for definition in definitions {
            let existing = self
                .cp
                .store
                .alert_rule(&definition.name)
                .await
                .map_err(store_status)?;
            let builtin = existing.as_ref().is_some_and(|r| r.builtin);
            let rule = definition.validate(builtin).map_err(rule_error)?;
            let wire = self.save(&rule, &who.actor()).await?;
            if existing.is_some() {
                response.updated.push(wire);
            } else {
                response.created.push(wire);
            }
        }
        Ok(response)
    }

    async fn update_rule_as(
        &self,
        request: pb::UpdateRuleRequest,
        who: &Principal,
    ) -> Result<pb::AlertRule, Status> {
        let (rule, _) = self.stored_rule(&request.name).await?;
        let tuning = Tuning {
            threshold: request.threshold,
            for_: request.for_duration,
            keep_firing_for: request.keep_firing_for,
            severity: request.severity,
            enabled: request.enabled,
        };
        let tuned = tuning.apply(&rule).map_err(rule_error)?;
        self.save(&tuned, &who.actor()).await
    }

    async fn remove_rule_now(&self, name: &str) -> Result<pb::AlertRule, Status> {
        let (rule, row) = self.stored_rule(name).await?;
        if rule.builtin {
            return Err(Status::failed_precondition(format!(
                "{name} is a built-in rule: it cannot be removed; disable it with `argosy alert rule disable {name}`"
            )));
        }
        self.cp
            .store
            .delete_alert_rule(name)
            .await
            .map_err(store_status)?;
        Ok(rule_wire(&rule, &row))
    }

    async fn create_silence_as(
        &self,
        request: pb::CreateSilenceRequest,
        who: &Principal,
    ) -> Result<pb::Silence, Status> {
        let matchers = request
            .matchers
            .iter()
            .map(|m| m.parse::<Matcher>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let duration = humantime::parse_duration(request.duration.trim()).map_err(|_| {
            Status::invalid_argument(format!(
                "the silence duration {:?} is not a duration like 30m or 2h",
                request.duration
            ))
        })?;
        let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        silences::validate(&matchers, duration_ms, &request.comment)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = self.now();
        let row = SilenceRow {
            id: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            matchers_json: serde_json::to_string(&matchers)
                .map_err(|e| Status::internal(e.to_string()))?,
            starts_at_ms: now,
            ends_at_ms: now.saturating_add(duration_ms),
            comment: request.comment.trim().to_owned(),
            created_by: who.actor(),
            created_at_ms: now,
            expired_by: None,
        };
        self.cp
            .store
            .insert_silence(&row)
            .await
            .map_err(store_error)?;
        silence_wire(&row, now)
    }

    async fn add_channel_as(
        &self,
        request: pb::AddChannelRequest,
        who: &Principal,
    ) -> Result<pb::Channel, Status> {
        let invalid = |e: routing::ChannelError| Status::invalid_argument(e.to_string());
        let kind: ChannelKind = request.kind.trim().parse().map_err(invalid)?;
        let url = routing::validate(request.name.trim(), kind, &request.url).map_err(invalid)?;
        let min_severity: Severity = match non_empty(&request.min_severity) {
            Some(text) => text
                .parse()
                .map_err(|e: crate::alerts::rules::UnknownSeverity| {
                    Status::invalid_argument(e.to_string())
                })?,
            None => Severity::Warning,
        };
        let row = ChannelRow {
            name: request.name.trim().to_owned(),
            kind: kind.as_str().to_owned(),
            url,
            min_severity: min_severity.as_str().to_owned(),
            created_at_ms: self.now(),
            created_by: who.actor(),
            attempts: 0,
            failures: 0,
            delivered: 0,
            last_success_ms: None,
            last_error: None,
            last_error_ms: None,
            last_refresh_ms: None,
            pending: 0,
            retrying: 0,
            given_up: 0,
        };
        self.cp
            .store
            .insert_channel(&row)
            .await
            .map_err(|error| match error {
                StoreError::AlreadyExists { .. } => Status::already_exists(format!(
                    "a channel named {:?} exists; remove it first or choose another name",
                    row.name
                )),
                other => store_status(other),
            })?;
        Ok(channel_wire(row))
    }

    async fn channel_row(&self, name: &str) -> Result<ChannelRow, Status> {
        self.cp
            .store
            .channels()
            .await
            .map_err(store_status)?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no channel named {name:?}; `argosy alert channel list` shows them"
                ))
            })
    }
}

#[tonic::async_trait]
impl alert_service_server::AlertService for AlertApi {
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let who = principal(&self.cp, &request, Action::ReadAlerts).await?;
        let r = request.into_inner();
        let state = match r.state.trim() {
            "" | "all" => None,
            s @ ("pending" | "firing" | "resolved") => Some(s.to_owned()),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown alert state {other:?}: use pending, firing or resolved"
                )));
            }
        };
        let limit = match r.limit {
            0 => DEFAULT_ALERT_LIMIT,
            n => n.min(MAX_ALERT_LIMIT),
        };
        let alerts = self
            .cp
            .store
            .list_alerts(state.as_deref(), limit)
            .await
            .map_err(store_status)?
            .into_iter()
            .filter(|a| in_scope(&who, &a.labels))
            .map(alert_wire)
            .collect();
        Ok(Response::new(pb::ListAlertsResponse { alerts }))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = principal(&self.cp, &request, Action::ReadAlerts).await?;
        let id = request.into_inner().id;
        let not_found = || Status::not_found(format!("no alert with id {id:?}"));
        let row = self
            .cp
            .store
            .alert(&id)
            .await
            .map_err(store_status)?
            .filter(|a| in_scope(&who, &a.labels))
            .ok_or_else(not_found)?;
        let history = self
            .cp
            .store
            .alert_events(&id)
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|e| pb::AlertEvent {
                at_ms: e.at_ms,
                message: e.message,
            })
            .collect();
        Ok(Response::new(pb::Alert {
            history,
            ..alert_wire(row)
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let id = request.get_ref().id.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.ack",
            &id,
        )
        .await?;
        let comment = request.into_inner().comment;
        call.run(&self.cp, async |principal| {
            self.cp
                .store
                .acknowledge_alert(&id, &principal.actor(), comment.trim(), self.now())
                .await
                .map(alert_wire)
                .map_err(|error| match error {
                    StoreError::NotFound { .. } => {
                        Status::not_found(format!("no alert with id {id:?}"))
                    }
                    other => store_status(other),
                })
        })
        .await
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        principal(&self.cp, &request, Action::ReadAlerts).await?;
        let mut rules = Vec::new();
        for row in self.cp.store.alert_rules().await.map_err(store_status)? {
            let rule = parse_rule(&row).map_err(store_status)?;
            rules.push(rule_wire(&rule, &row));
        }
        Ok(Response::new(pb::ListRulesResponse { rules }))
    }

    async fn add_rule(
        &self,
        request: Request<pb::AddRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.rule.add",
            &name,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.add_rule_as(request.into_inner(), principal).await
        })
        .await
    }

    async fn apply_rules(
        &self,
        request: Request<pb::ApplyRulesRequest>,
    ) -> Result<Response<pb::ApplyRulesResponse>, Status> {
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.rule.apply",
            "rules file",
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.apply_rules_as(request.into_inner(), principal).await
        })
        .await
    }

    async fn update_rule(
        &self,
        request: Request<pb::UpdateRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let name = request.get_ref().name.clone();
        let event = match request.get_ref().enabled {
            Some(true) if is_only_toggle(request.get_ref()) => "alert.rule.enable",
            Some(false) if is_only_toggle(request.get_ref()) => "alert.rule.disable",
            _ => "alert.rule.update",
        };
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            event,
            &name,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.update_rule_as(request.into_inner(), principal).await
        })
        .await
    }

    async fn remove_rule(
        &self,
        request: Request<pb::RemoveRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.rule.remove",
            &name,
        )
        .await?;
        call.run(&self.cp, async |_| self.remove_rule_now(&name).await)
            .await
    }

    async fn create_silence(
        &self,
        request: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let subject = request.get_ref().matchers.join(",");
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.silence",
            &subject,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.create_silence_as(request.into_inner(), principal)
                .await
        })
        .await
    }

    async fn list_silences(
        &self,
        request: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        principal(&self.cp, &request, Action::ReadAlerts).await?;
        let now = self.now();
        let since = if request.get_ref().include_expired {
            now - EXPIRED_SILENCES_SHOWN_MS
        } else {
            now
        };
        let silences = self
            .cp
            .store
            .silences(since)
            .await
            .map_err(store_status)?
            .iter()
            .map(|row| silence_wire(row, now))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListSilencesResponse { silences }))
    }

    async fn expire_silence(
        &self,
        request: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let id = request.get_ref().id.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.unsilence",
            &id,
        )
        .await?;
        let now = self.now();
        call.run(&self.cp, async |principal| {
            match self
                .cp
                .store
                .expire_silence(&id, &principal.actor(), now)
                .await
            {
                Ok(row) => silence_wire(&row, now),
                Err(StoreError::NotFound { .. }) => Err(Status::not_found(format!(
                    "no silence with id {id:?}; `argosy alert silences` shows them"
                ))),
                Err(other) => Err(store_status(other)),
            }
        })
        .await
    }

    async fn add_channel(
        &self,
        request: Request<pb::AddChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.channel.add",
            &name,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.add_channel_as(request.into_inner(), principal).await
        })
        .await
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        principal(&self.cp, &request, Action::ReadAlerts).await?;
        let channels = self
            .cp
            .store
            .channels()
            .await
            .map_err(store_status)?
            .into_iter()
            .map(channel_wire)
            .collect();
        Ok(Response::new(pb::ListChannelsResponse { channels }))
    }

    async fn remove_channel(
        &self,
        request: Request<pb::RemoveChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.channel.remove",
            &name,
        )
        .await?;
        call.run(&self.cp, async |_| {
            match self.cp.store.delete_channel(&name).await {
                Ok(Some(row)) => Ok(channel_wire(row)),
                Ok(None) => Err(Status::not_found(format!(
                    "no channel named {name:?}; `argosy alert channel list` shows them"
                ))),
                Err(error) => Err(store_status(error)),
            }
        })
        .await
    }

    async fn test_channel(
        &self,
        request: Request<pb::TestChannelRequest>,
    ) -> Result<Response<pb::TestChannelResponse>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageAlerts,
            Target::Global,
            "alert.channel.test",
            &name,
        )
        .await?;
        call.run(&self.cp, async |_| match self.channel_row(&name).await {
            Ok(row) => match parse_channel(&row) {
                Ok(channel) => Ok(match engine::test_channel(&self.cp, &channel).await {
                    Ok(()) => pb::TestChannelResponse {
                        delivered: true,
                        error: String::new(),
                    },
                    Err(error) => pb::TestChannelResponse {
                        delivered: false,
                        error: error.to_string(),
                    },
                }),
                Err(error) => Err(store_status(error)),
            },
            Err(status) => Err(status),
        })
        .await
    }
}

/// Whether an update only switches the rule on or off.
fn is_only_toggle(r: &pb::UpdateRuleRequest) -> bool {
    r.threshold.is_none()
        && r.for_duration.is_none()
        && r.keep_firing_for.is_none()
        && r.severity.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PrincipalKind, Role, Scope};

    fn scoped(regions: &[&str], prefixes: &[&str]) -> Principal {
        Principal {
            kind: PrincipalKind::Token,
            token_id: "t".into(),
            name: "team".into(),
            role: Role::Viewer,
            scope: Scope {
                regions: regions.iter().map(|s| s.to_string()).collect(),
                service_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn scoped_callers_see_the_alerts_of_their_regions_and_services() {
        let eu = scoped(&["eu-west"], &[]);
        assert!(in_scope(
            &eu,
            &labels(&[("region", "eu-west"), ("host", "h")])
        ));
        assert!(!in_scope(&eu, &labels(&[("region", "us-east")])));
        assert!(
            in_scope(&eu, &labels(&[("service", "crm")])),
            "no region: visible"
        );
        let crm = scoped(&[], &["crm"]);
        assert!(in_scope(
            &crm,
            &labels(&[("service", "crm-web"), ("region", "us-east")])
        ));
        assert!(!in_scope(&crm, &labels(&[("service", "billing")])));
        assert!(in_scope(
            &scoped(&[], &[]),
            &labels(&[("region", "x"), ("service", "y")])
        ));
    }

    #[test]
    fn add_rule_requests_become_definitions() {
        let request = pb::AddRuleRequest {
            name: " WebCpu ".into(),
            metric: "cpu".into(),
            op: ">".into(),
            threshold: Some(70.0),
            for_duration: "1m".into(),
            keep_firing_for: String::new(),
            severity: String::new(),
            region: "eu-west".into(),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            host: String::new(),
            service: String::new(),
        };
        let rule = definition(&request).validate(false).unwrap();
        assert_eq!(rule.name, "WebCpu");
        assert_eq!(rule.for_ms, 60_000);
        assert_eq!(rule.severity, Severity::Warning);
        assert_eq!(rule.selector.to_string(), "region=eu-west,role=web");
    }
}
