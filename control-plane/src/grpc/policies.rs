//! `PolicyService`: Wasm policies — list, show, add (a new policy or the
//! next version of one), enable, disable, remove, and test on a given
//! input. Reads need `ReadPolicies` (viewers), tests `TestPolicies`
//! (operators), changes `ManagePolicies` (admins) and are audited before
//! they happen, naming the module's sha256. Modules are checked at upload
//! by `policy::runtime` (`Policies::inspect`); the decisions are in
//! `crate::policy`.

use crate::auth::{Action, Target};
use crate::grpc::{begin, caller, principal, store_status};
use crate::policy::hook::{self, Hook, PolicyName};
use crate::policy::runtime::{ModuleError, sha256_hex};
use crate::state::ControlPlane;
use crate::store::{NewPolicyVersion, PolicyRow, PolicyVersionRow, StoreError};
use argosy_proto::v1::{self as pb, policy_service_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct PolicyApi {
    pub cp: Arc<ControlPlane>,
}

fn size(bytes: i64) -> u64 {
    u64::try_from(bytes).unwrap_or(0)
}

fn policy_wire(row: PolicyRow, versions: Vec<PolicyVersionRow>) -> pb::Policy {
    pb::Policy {
        name: row.name,
        hook: row.hook,
        version: size(row.version),
        sha256: row.sha256,
        size_bytes: size(row.size_bytes),
        config_json: row.config_json,
        enabled: row.enabled,
        created_at_ms: row.created_at_ms,
        created_by: row.created_by,
        updated_at_ms: row.updated_at_ms,
        updated_by: row.updated_by,
        versions: versions
            .into_iter()
            .map(|v| pb::PolicyVersion {
                version: size(v.version),
                sha256: v.sha256,
                size_bytes: size(v.size_bytes),
                config_json: v.config_json,
                created_at_ms: v.created_at_ms,
                created_by: v.created_by,
            })
            .collect(),
    }
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!(
        "no policy named {name:?}; `argosy policy list` shows them"
    ))
}

fn module_status(error: ModuleError) -> Status {
    match error {
        ModuleError::Runtime(_) => Status::unavailable(error.to_string()),
        other => Status::invalid_argument(format!("the module cannot be a policy: {other}")),
    }
}

impl PolicyApi {
    async fn stored(&self, name: &str) -> Result<PolicyRow, Status> {
        self.cp
            .store
            .policy(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name))
    }

    async fn add_now(
        &self,
        request: pb::AddPolicyRequest,
        sha256: &str,
        actor: &str,
    ) -> Result<pb::Policy, Status> {
        let name: PolicyName = request
            .name
            .trim()
            .parse()
            .map_err(|e: hook::InvalidPolicyName| Status::invalid_argument(e.to_string()))?;
        let hook: Hook = request
            .hook
            .parse()
            .map_err(|e: hook::UnknownHook| Status::invalid_argument(e.to_string()))?;
        let config = hook::parse_config(&request.config_json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if request.replace {
            let existing = self.stored(name.as_str()).await?;
            if existing.hook != hook.as_str() {
                return Err(Status::failed_precondition(format!(
                    "policy {name} decides {}, not {hook}; remove it first or choose another name",
                    existing.hook
                )));
            }
        }
        let inspected = self
            .cp
            .deploy
            .policies()
            .inspect(request.wasm.clone())
            .await
            .map_err(module_status)?;
        debug_assert_eq!(inspected.sha256, sha256);
        let row = self
            .cp
            .store
            .put_policy(
                NewPolicyVersion {
                    name: name.as_str(),
                    hook: hook.as_str(),
                    sha256: &inspected.sha256,
                    wasm: &request.wasm,
                    config_json: &config.to_string(),
                    actor,
                    now_ms: self.cp.now_ms(),
                },
                request.replace,
            )
            .await
            .map_err(|error| match error {
                StoreError::AlreadyExists { .. } => Status::already_exists(format!(
                    "a policy named {name} exists; pass --replace to upload a new version of it"
                )),
                StoreError::NotFound { .. } => not_found(name.as_str()),
                other => store_status(other),
            })?;
        tracing::info!(policy = %name, hook = %hook, version = row.version, sha256 = %row.sha256, by = actor, "policy stored");
        Ok(policy_wire(row, Vec::new()))
    }

    async fn set_enabled(
        &self,
        request: Request<String>,
        enabled: bool,
    ) -> Result<Response<pb::Policy>, Status> {
        let event = if enabled {
            "policy.enable"
        } else {
            "policy.disable"
        };
        let name = request.get_ref().clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManagePolicies,
            Target::Global,
            event,
            &name,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            self.cp
                .store
                .set_policy_enabled(&name, enabled, &principal.actor(), self.cp.now_ms())
                .await
                .map_err(store_status)
                .and_then(|row| row.ok_or_else(|| not_found(&name)))
                .map(|row| policy_wire(row, Vec::new()))
        })
        .await
    }
}

/// The name of a request, keeping its metadata (for `begin`).
fn named<T>(request: Request<T>, name: impl FnOnce(&T) -> String) -> Request<String> {
    let (metadata, extensions, message) = request.into_parts();
    let name = name(&message).trim().to_owned();
    Request::from_parts(metadata, extensions, name)
}

#[tonic::async_trait]
impl policy_service_server::PolicyService for PolicyApi {
    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        principal(&self.cp, &request, Action::ReadPolicies).await?;
        let policies = self
            .cp
            .store
            .policies()
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|row| policy_wire(row, Vec::new()))
            .collect();
        Ok(Response::new(pb::ListPoliciesResponse { policies }))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        principal(&self.cp, &request, Action::ReadPolicies).await?;
        let name = request.into_inner().name;
        let row = self.stored(name.trim()).await?;
        let versions = self
            .cp
            .store
            .policy_versions(&row.name)
            .await
            .map_err(store_status)?;
        Ok(Response::new(policy_wire(row, versions)))
    }

    async fn add_policy(
        &self,
        request: Request<pb::AddPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let r = request.get_ref();
        let sha256 = sha256_hex(&r.wasm);
        let event = if r.replace {
            "policy.replace"
        } else {
            "policy.add"
        };
        let subject = format!("{} {} sha256:{sha256}", r.name.trim(), r.hook.trim());
        let call = begin(
            &self.cp,
            &request,
            Action::ManagePolicies,
            Target::Global,
            event,
            &subject,
        )
        .await?;
        let actor = call.principal.actor();
        call.run(&self.cp, async |_| {
            self.add_now(request.into_inner(), &sha256, &actor).await
        })
        .await
    }

    async fn enable_policy(
        &self,
        request: Request<pb::EnablePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        self.set_enabled(named(request, |r| r.name.clone()), true)
            .await
    }

    async fn disable_policy(
        &self,
        request: Request<pb::DisablePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        self.set_enabled(named(request, |r| r.name.clone()), false)
            .await
    }

    async fn remove_policy(
        &self,
        request: Request<pb::RemovePolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let name = request.get_ref().name.trim().to_owned();
        let call = begin(
            &self.cp,
            &request,
            Action::ManagePolicies,
            Target::Global,
            "policy.remove",
            &name,
        )
        .await?;
        call.run(&self.cp, async |_| {
            self.cp
                .store
                .remove_policy(&name)
                .await
                .map_err(store_status)
                .and_then(|row| row.ok_or_else(|| not_found(&name)))
                .map(|row| policy_wire(row, Vec::new()))
        })
        .await
    }

    async fn test_policy(
        &self,
        request: Request<pb::TestPolicyRequest>,
    ) -> Result<Response<pb::TestPolicyResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        caller.read(Action::TestPolicies, Target::Global)?;
        let r = request.into_inner();
        let row = self.stored(r.name.trim()).await?;
        let hook: Hook = row
            .hook
            .parse()
            .map_err(|e: hook::UnknownHook| Status::internal(e.to_string()))?;
        let input: serde_json::Value = serde_json::from_str(&r.input_json).map_err(|e| {
            Status::invalid_argument(format!(
                "the input is not JSON: {e}; pass the {hook} input object (docs/policies.md)"
            ))
        })?;
        if !input.is_object() {
            return Err(Status::invalid_argument(format!(
                "the input must be a JSON object: the {hook} input (docs/policies.md)"
            )));
        }
        let outcome = self.cp.deploy.policies().test(&row, hook, &input).await;
        Ok(Response::new(pb::TestPolicyResponse {
            decision: outcome.decision,
            reasons: outcome.reasons,
            warnings: outcome.warnings,
            defaults_json: outcome.defaults_json,
            elapsed_us: u64::try_from(outcome.elapsed.as_micros()).unwrap_or(u64::MAX),
            policy: row.name,
            hook: row.hook,
            version: size(row.version),
        }))
    }
}
