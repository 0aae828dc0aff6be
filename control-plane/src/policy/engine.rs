//! The policies of a running control plane: which are enabled for a hook
//! (read from the store on every decision, so a change applies at once),
//! their compiled modules (cached by sha256 in the [`PolicyHost`]), and
//! evaluation off the async runtime (`spawn_blocking`), so a module that
//! loops until its budget runs out never stalls the API.

use super::decision::{
    self, AdmissionDecision, AdmitAnswer, AnalysisVerdict, AnalyzeAnswer, Answer, FailureCause,
    HostVerdict, Outcome, PlacementAnswer,
};
use super::hook::{Hook, Limits};
use super::input::{AdmitInput, AnalyzeInput, PlacementInput, envelope};
use super::runtime::{CompiledPolicy, Inspected, ModuleError, PolicyHost};
use crate::store::{PolicyRow, Store, StoreError};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One evaluation of one policy.
#[derive(Debug, Clone)]
pub struct Evaluation<T> {
    pub result: Result<T, FailureCause>,
    /// Instantiation, the call and reading the answer.
    pub elapsed: Duration,
}

/// What `argosy policy test` shows: the decision in words, the answer as
/// the module gave it, and the time it took.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    /// `allow`/`deny`, `eligible`/`not eligible`, `promote`/`wait`/`rollback`.
    pub decision: String,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// Defaults an admission policy supplied (JSON), empty otherwise.
    pub defaults_json: String,
    pub elapsed: Duration,
}

/// The control plane's policies.
pub struct Policies {
    store: Store,
    limits: Limits,
    host: OnceLock<Result<Arc<PolicyHost>, String>>,
}

impl Policies {
    pub fn new(store: Store, limits: Limits) -> Policies {
        Policies {
            store,
            limits,
            host: OnceLock::new(),
        }
    }

    /// The Wasm runtime, started on first use; if it cannot start every
    /// decision fails closed saying why.
    pub fn host(&self) -> Result<Arc<PolicyHost>, FailureCause> {
        self.host
            .get_or_init(|| {
                PolicyHost::new(self.limits)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(FailureCause::Runtime)
    }

    /// The upload checks ([`PolicyHost::inspect`]), off the async runtime.
    pub async fn inspect(&self, wasm: Vec<u8>) -> Result<Inspected, ModuleError> {
        let host = self
            .host()
            .map_err(|e| ModuleError::Runtime(e.to_string()))?;
        tokio::task::spawn_blocking(move || host.inspect(&wasm))
            .await
            .map_err(|e| ModuleError::Runtime(format!("the module check was interrupted: {e}")))?
    }

    /// The compiled module of a policy: from the cache, or from the store.
    async fn compiled(&self, row: &PolicyRow) -> Result<Arc<CompiledPolicy>, FailureCause> {
        let host = self.host()?;
        if let Some(compiled) = host.cached(&row.sha256) {
            return Ok(compiled);
        }
        let wasm = self
            .store
            .policy_module(&row.sha256)
            .await
            .map_err(|e| FailureCause::Runtime(e.to_string()))?
            .ok_or_else(|| {
                FailureCause::Runtime(format!(
                    "its module {} is missing from the store",
                    row.sha256
                ))
            })?;
        let sha256 = row.sha256.clone();
        tokio::task::spawn_blocking(move || host.load(&sha256, &wasm))
            .await
            .map_err(|e| FailureCause::Runtime(format!("compiling was interrupted: {e}")))?
    }

    /// Evaluates `policies` on each input, every (policy, input) pair, in
    /// one blocking task. `result[i][j]` is policy `j` on input `i`.
    async fn evaluate_many<T, I>(
        &self,
        hook: Hook,
        policies: &[PolicyRow],
        inputs: &[I],
    ) -> Vec<Vec<Evaluation<T>>>
    where
        T: Answer + Send + 'static,
        I: Serialize,
    {
        let mut modules = Vec::with_capacity(policies.len());
        for row in policies {
            modules.push(self.compiled(row).await);
        }
        let requests: Vec<Vec<Vec<u8>>> = inputs
            .iter()
            .map(|input| {
                let input_json = serde_json::to_string(input).unwrap_or_else(|_| "null".to_owned());
                policies
                    .iter()
                    .map(|p| envelope(hook, &p.name, &p.config_json, &input_json))
                    .collect()
            })
            .collect();
        let host = self.host();
        let work = move || {
            requests
                .iter()
                .map(|per_policy| {
                    per_policy
                        .iter()
                        .zip(&modules)
                        .map(|(request, module)| match (&host, module) {
                            (Err(cause), _) | (_, Err(cause)) => Evaluation {
                                result: Err(cause.clone()),
                                elapsed: Duration::ZERO,
                            },
                            (Ok(host), Ok(module)) => {
                                let called = host.call(module, request);
                                Evaluation {
                                    result: called
                                        .result
                                        .and_then(|bytes| decision::parse_answer::<T>(&bytes)),
                                    elapsed: called.elapsed,
                                }
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(results) => results,
            Err(error) => {
                let cause =
                    FailureCause::Runtime(format!("the evaluation was interrupted: {error}"));
                inputs
                    .iter()
                    .map(|_| {
                        policies
                            .iter()
                            .map(|_| Evaluation {
                                result: Err(cause.clone()),
                                elapsed: Duration::ZERO,
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    fn outcomes<T>(policies: &[PolicyRow], evaluations: Vec<Evaluation<T>>) -> Vec<Outcome<T>> {
        policies
            .iter()
            .zip(evaluations)
            .map(|(p, e)| Outcome {
                policy: p.name.clone(),
                result: e.result,
            })
            .collect()
    }

    /// `deployment.admit` over every enabled admission policy.
    pub async fn admit(&self, input: &AdmitInput) -> Result<AdmissionDecision, StoreError> {
        let policies = self
            .store
            .enabled_policies(Hook::DeploymentAdmit.as_str())
            .await?;
        if policies.is_empty() {
            return Ok(AdmissionDecision::default());
        }
        let evaluations = self
            .evaluate_many::<AdmitAnswer, _>(
                Hook::DeploymentAdmit,
                &policies,
                std::slice::from_ref(input),
            )
            .await
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(decision::combine_admission(Self::outcomes(
            &policies,
            evaluations,
        )))
    }

    /// `placement.filter` for each candidate host (one verdict per input,
    /// in order). Without placement policies every host is eligible.
    pub async fn filter_hosts(
        &self,
        inputs: &[PlacementInput],
    ) -> Result<Vec<HostVerdict>, StoreError> {
        let policies = self
            .store
            .enabled_policies(Hook::PlacementFilter.as_str())
            .await?;
        if policies.is_empty() {
            return Ok(inputs.iter().map(|_| HostVerdict::default()).collect());
        }
        Ok(self
            .evaluate_many::<PlacementAnswer, _>(Hook::PlacementFilter, &policies, inputs)
            .await
            .into_iter()
            .map(|evaluations| decision::combine_placement(Self::outcomes(&policies, evaluations)))
            .collect())
    }

    async fn any_enabled(&self, hook: Hook) -> Result<bool, StoreError> {
        Ok(!self.store.enabled_policies(hook.as_str()).await?.is_empty())
    }

    /// Whether any `deployment.admit` policy is enabled.
    pub async fn admits_deployments(&self) -> Result<bool, StoreError> {
        self.any_enabled(Hook::DeploymentAdmit).await
    }

    /// Whether any `placement.filter` policy is enabled.
    pub async fn filters_placement(&self) -> Result<bool, StoreError> {
        self.any_enabled(Hook::PlacementFilter).await
    }

    /// Whether any `rollout.analyze` policy is enabled.
    pub async fn analyzes_rollouts(&self) -> Result<bool, StoreError> {
        self.any_enabled(Hook::RolloutAnalyze).await
    }

    /// `rollout.analyze` over every enabled analysis policy.
    pub async fn analyze(&self, input: &AnalyzeInput) -> Result<AnalysisVerdict, StoreError> {
        let policies = self
            .store
            .enabled_policies(Hook::RolloutAnalyze.as_str())
            .await?;
        let evaluations = if policies.is_empty() {
            Vec::new()
        } else {
            self.evaluate_many::<AnalyzeAnswer, _>(
                Hook::RolloutAnalyze,
                &policies,
                std::slice::from_ref(input),
            )
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
        };
        Ok(decision::combine_analysis(Self::outcomes(
            &policies,
            evaluations,
        )))
    }

    /// Evaluates one policy on an input given as JSON, with no side effect.
    pub async fn test(
        &self,
        row: &PolicyRow,
        hook: Hook,
        input: &serde_json::Value,
    ) -> TestOutcome {
        let policies = std::slice::from_ref(row);
        let inputs = std::slice::from_ref(input);
        match hook {
            Hook::DeploymentAdmit => {
                let evaluation = self.single::<AdmitAnswer>(hook, policies, inputs).await;
                let elapsed = evaluation.elapsed;
                let decision =
                    decision::combine_admission(Self::outcomes(policies, vec![evaluation]));
                TestOutcome {
                    decision: if decision.admitted() { "allow" } else { "deny" }.to_owned(),
                    reasons: decision.denials,
                    warnings: decision.warnings,
                    defaults_json: decision
                        .defaults
                        .first()
                        .map(|(_, d)| serde_json::Value::Object(d.clone()).to_string())
                        .unwrap_or_default(),
                    elapsed,
                }
            }
            Hook::PlacementFilter => {
                let evaluation = self.single::<PlacementAnswer>(hook, policies, inputs).await;
                let elapsed = evaluation.elapsed;
                let score = evaluation
                    .result
                    .as_ref()
                    .ok()
                    .and_then(|a| a.score)
                    .map(|s| format!("score {s}"));
                let verdict =
                    decision::combine_placement(Self::outcomes(policies, vec![evaluation]));
                TestOutcome {
                    decision: if verdict.eligible() {
                        "eligible"
                    } else {
                        "not eligible"
                    }
                    .to_owned(),
                    reasons: verdict.exclusions.into_iter().chain(score).collect(),
                    warnings: Vec::new(),
                    defaults_json: String::new(),
                    elapsed,
                }
            }
            Hook::RolloutAnalyze => {
                let evaluation = self.single::<AnalyzeAnswer>(hook, policies, inputs).await;
                let elapsed = evaluation.elapsed;
                let verdict =
                    decision::combine_analysis(Self::outcomes(policies, vec![evaluation]));
                TestOutcome {
                    decision: verdict.action.as_str().to_owned(),
                    reasons: vec![verdict.reason],
                    warnings: Vec::new(),
                    defaults_json: String::new(),
                    elapsed,
                }
            }
        }
    }

    async fn single<T: Answer + Send + 'static>(
        &self,
        hook: Hook,
        policies: &[PolicyRow],
        inputs: &[serde_json::Value],
    ) -> Evaluation<T> {
        self.evaluate_many::<T, _>(hook, policies, inputs)
            .await
            .into_iter()
            .flatten()
            .next()
            .unwrap_or(Evaluation {
                result: Err(FailureCause::Runtime("no evaluation took place".to_owned())),
                elapsed: Duration::ZERO,
            })
    }
}
