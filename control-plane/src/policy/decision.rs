//! What a policy may answer, read strictly, and how the answers of every
//! enabled policy of a hook combine into one decision. Pure.
//!
//! Fail closed: a policy that cannot answer (it timed out, ran out of
//! memory, trapped, answered something malformed, or is not a policy at
//! all) counts as a deny for admission, as "not eligible" for placement and
//! as "roll back" for canary analysis — each with a reason naming the
//! policy and the cause.

use serde::Deserialize;
use std::fmt;

/// The most reasons or warnings one answer may carry, and their length.
pub const MAX_MESSAGES: usize = 32;
pub const MAX_MESSAGE_CHARS: usize = 500;

/// Why a policy produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureCause {
    #[error("it ran longer than its {budget_ms} ms CPU budget")]
    Timeout { budget_ms: u64 },
    #[error("it tried to use more than its {} MiB memory cap", .cap_bytes >> 20)]
    MemoryCap { cap_bytes: u64 },
    #[error("it overflowed its stack")]
    StackOverflow,
    #[error("it trapped: {0}")]
    Trap(String),
    #[error("its answer is malformed: {0}")]
    MalformedOutput(String),
    #[error("it does not export the policy interface: {0}")]
    WrongInterface(String),
    #[error("the policy runtime is unavailable: {0}")]
    Runtime(String),
}

/// A policy that gave no usable answer, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy} failed: {cause} (fail closed)")]
pub struct PolicyFailure {
    pub policy: String,
    pub cause: FailureCause,
}

/// A `deployment.admit` answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmitAnswer {
    pub allow: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Fields to fill in where the spec document has none, in the spec's
    /// own syntax (`{"resources": {"memory": "256MiB"}}`).
    #[serde(default)]
    pub defaults: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A `placement.filter` answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementAnswer {
    pub eligible: bool,
    #[serde(default)]
    pub reason: Option<String>,
    /// Higher is preferred among eligible hosts; scores of several
    /// policies add up.
    #[serde(default)]
    pub score: Option<f64>,
}

/// What canary analysis says to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisAction {
    Promote,
    Wait,
    Rollback,
}

impl AnalysisAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisAction::Promote => "promote",
            AnalysisAction::Wait => "wait",
            AnalysisAction::Rollback => "rollback",
        }
    }
}

/// A `rollout.analyze` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeAnswer {
    pub action: AnalysisAction,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Something every answer type checks about itself.
pub trait Answer: serde::de::DeserializeOwned {
    /// What is wrong with an answer that parsed, if anything.
    fn problem(&self) -> Option<String>;
}

fn messages_problem(what: &str, messages: &[String]) -> Option<String> {
    if messages.len() > MAX_MESSAGES {
        return Some(format!(
            "{} {what}, more than the {MAX_MESSAGES} allowed",
            messages.len()
        ));
    }
    messages.iter().find_map(|m| message_problem(what, m))
}

fn message_problem(what: &str, message: &str) -> Option<String> {
    if message.trim().is_empty() {
        Some(format!("one of its {what} is empty"))
    } else if message.chars().count() > MAX_MESSAGE_CHARS {
        Some(format!(
            "one of its {what} is longer than {MAX_MESSAGE_CHARS} characters"
        ))
    } else {
        None
    }
}

impl Answer for AdmitAnswer {
    fn problem(&self) -> Option<String> {
        messages_problem("reasons", &self.reasons)
            .or_else(|| messages_problem("warnings", &self.warnings))
    }
}

impl Answer for PlacementAnswer {
    fn problem(&self) -> Option<String> {
        if self.score.is_some_and(|s| !s.is_finite()) {
            return Some("its score is not a finite number".to_owned());
        }
        self.reason
            .as_deref()
            .and_then(|r| message_problem("reasons", r))
    }
}

impl Answer for AnalyzeAnswer {
    fn problem(&self) -> Option<String> {
        self.reason
            .as_deref()
            .and_then(|r| message_problem("reasons", r))
    }
}

/// Reads an answer: UTF-8 JSON of exactly the hook's shape.
pub fn parse_answer<T: Answer>(bytes: &[u8]) -> Result<T, FailureCause> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| FailureCause::MalformedOutput("it is not UTF-8".to_owned()))?;
    let answer: T = serde_json::from_str(text)
        .map_err(|e| FailureCause::MalformedOutput(format!("{e} in {}", excerpt(text))))?;
    match answer.problem() {
        Some(problem) => Err(FailureCause::MalformedOutput(problem)),
        None => Ok(answer),
    }
}

/// The start of a malformed answer, quoted for the error message.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 80;
    let mut shown: String = text.chars().take(SHOWN).collect();
    if text.chars().count() > SHOWN {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// One policy's outcome for a hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    pub policy: String,
    pub result: Result<T, FailureCause>,
}

/// What admission decided over every enabled policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdmissionDecision {
    /// Every reason to refuse, each naming its policy; empty: admitted.
    pub denials: Vec<String>,
    /// Each naming its policy.
    pub warnings: Vec<String>,
    /// Defaults to fill in, by policy, in policy name order.
    pub defaults: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
}

impl AdmissionDecision {
    pub fn admitted(&self) -> bool {
        self.denials.is_empty()
    }
}

/// Combines admission answers: any deny or failure refuses, with every
/// reason; warnings and defaults are kept from every policy that answered.
pub fn combine_admission(outcomes: Vec<Outcome<AdmitAnswer>>) -> AdmissionDecision {
    let mut decision = AdmissionDecision::default();
    for Outcome { policy, result } in outcomes {
        match result {
            Ok(answer) => {
                if !answer.allow {
                    if answer.reasons.is_empty() {
                        decision
                            .denials
                            .push(format!("policy {policy}: denied without giving a reason"));
                    }
                    decision.denials.extend(
                        answer
                            .reasons
                            .iter()
                            .map(|r| format!("policy {policy}: {}", r.trim())),
                    );
                }
                decision.warnings.extend(
                    answer
                        .warnings
                        .iter()
                        .map(|w| format!("policy {policy}: {}", w.trim())),
                );
                if let Some(defaults) = answer.defaults.filter(|d| !d.is_empty()) {
                    decision.defaults.push((policy, defaults));
                }
            }
            Err(cause) => decision
                .denials
                .push(PolicyFailure { policy, cause }.to_string()),
        }
    }
    decision
}

/// Whether a host may take the allocation, over every placement policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostVerdict {
    /// Why it may not, each naming its policy; empty: eligible.
    pub exclusions: Vec<String>,
    pub score: f64,
}

impl HostVerdict {
    pub fn eligible(&self) -> bool {
        self.exclusions.is_empty()
    }
}

/// Combines placement answers for one host: any "not eligible" or failure
/// excludes it; scores add up.
pub fn combine_placement(outcomes: Vec<Outcome<PlacementAnswer>>) -> HostVerdict {
    let mut verdict = HostVerdict::default();
    for Outcome { policy, result } in outcomes {
        match result {
            Ok(answer) if answer.eligible => verdict.score += answer.score.unwrap_or(0.0),
            Ok(answer) => verdict.exclusions.push(format!(
                "policy {policy}: {}",
                answer
                    .reason
                    .as_deref()
                    .map_or("not eligible (no reason given)", str::trim)
            )),
            Err(cause) => verdict
                .exclusions
                .push(PolicyFailure { policy, cause }.to_string()),
        }
    }
    verdict
}

/// What canary analysis decided, over every analysis policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnalysisVerdict {
    pub action: AnalysisAction,
    pub reason: String,
}

impl fmt::Display for AnalysisVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.action.as_str(), self.reason)
    }
}

/// Combines analysis answers: any roll back (or failure) wins, then any
/// wait; promote only when every policy says so (or there is none).
pub fn combine_analysis(outcomes: Vec<Outcome<AnalyzeAnswer>>) -> AnalysisVerdict {
    if outcomes.is_empty() {
        return AnalysisVerdict {
            action: AnalysisAction::Promote,
            reason: "no rollout.analyze policy is enabled".to_owned(),
        };
    }
    let mut by_action: [Vec<String>; 3] = Default::default();
    for Outcome { policy, result } in outcomes {
        let (action, text) = match result {
            Ok(answer) => (
                answer.action,
                format!(
                    "policy {policy}: {}",
                    answer
                        .reason
                        .as_deref()
                        .map_or("(no reason given)", str::trim)
                ),
            ),
            Err(cause) => (
                AnalysisAction::Rollback,
                PolicyFailure { policy, cause }.to_string(),
            ),
        };
        let slot = match action {
            AnalysisAction::Rollback => 0,
            AnalysisAction::Wait => 1,
            AnalysisAction::Promote => 2,
        };
        by_action[slot].push(text);
    }
    let [rollback, wait, promote] = by_action;
    let (action, reasons) = if !rollback.is_empty() {
        (AnalysisAction::Rollback, rollback)
    } else if !wait.is_empty() {
        (AnalysisAction::Wait, wait)
    } else {
        (AnalysisAction::Promote, promote)
    };
    AnalysisVerdict {
        action,
        reason: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok<T>(policy: &str, answer: T) -> Outcome<T> {
        Outcome {
            policy: policy.to_owned(),
            result: Ok(answer),
        }
    }

    fn failed<T>(policy: &str, cause: FailureCause) -> Outcome<T> {
        Outcome {
            policy: policy.to_owned(),
            result: Err(cause),
        }
    }

    fn admit(text: &str) -> AdmitAnswer {
        parse_answer(text.as_bytes()).unwrap()
    }

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(
            admit(r#"{"allow": true}"#),
            AdmitAnswer {
                allow: true,
                reasons: vec![],
                warnings: vec![],
                defaults: None
            }
        );
        let cases: &[(&[u8], &str)] = &[
            (b"\xff", "its answer is malformed: it is not UTF-8"),
            (
                b"",
                "its answer is malformed: EOF while parsing a value at line 1 column 0 in \"\"",
            ),
            (
                br#"{"allow": "yes"}"#,
                "its answer is malformed: invalid type: string \"yes\", expected a boolean at line 1 column 15 in \"{\\\"allow\\\": \\\"yes\\\"}\"",
            ),
            (
                br#"{"allow": true, "allowed": true}"#,
                "its answer is malformed: unknown field `allowed`, expected one of `allow`, `reasons`, `warnings`, `defaults` at line 1 column 25 in \"{\\\"allow\\\": true, \\\"allowed\\\": true}\"",
            ),
            (
                br#"{"allow": false, "reasons": [" "]}"#,
                "its answer is malformed: one of its reasons is empty",
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse_answer::<AdmitAnswer>(bytes).unwrap_err();
            assert_eq!(err.to_string(), *expected);
        }
        let many =
            serde_json::to_string(&json!({"allow": false, "reasons": vec!["x"; 33]})).unwrap();
        assert_eq!(
            parse_answer::<AdmitAnswer>(many.as_bytes())
                .unwrap_err()
                .to_string(),
            "its answer is malformed: 33 reasons, more than the 32 allowed"
        );
        let long = format!("{}{}", "a".repeat(90), "z");
        let err = parse_answer::<AdmitAnswer>(long.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("…\""), "{err}");
        assert!(parse_answer::<PlacementAnswer>(br#"{"eligible": true, "score": 1e400}"#).is_err());
        assert_eq!(
            parse_answer::<AnalyzeAnswer>(br#"{"action": "rollback", "reason": "5 restarts"}"#)
                .unwrap()
                .action,
            AnalysisAction::Rollback
        );
        assert!(parse_answer::<AnalyzeAnswer>(br#"{"action": "abort"}"#).is_err());
    }

    #[test]
    fn admission_needs_every_policy_to_allow() {
        let decision = combine_admission(vec![
            ok(
                "limits",
                admit(
                    r#"{"allow": false, "reasons": ["set resources.memory", "set resources.cpu"]}"#,
                ),
            ),
            ok(
                "tags",
                admit(r#"{"allow": true, "warnings": ["image is old"]}"#),
            ),
            failed("window", FailureCause::Timeout { budget_ms: 10 }),
            ok("quiet", admit(r#"{"allow": false}"#)),
        ]);
        assert!(!decision.admitted());
        assert_eq!(
            decision.denials,
            [
                "policy limits: set resources.memory",
                "policy limits: set resources.cpu",
                "policy window failed: it ran longer than its 10 ms CPU budget (fail closed)",
                "policy quiet: denied without giving a reason",
            ]
        );
        assert_eq!(decision.warnings, ["policy tags: image is old"]);
    }

    #[test]
    fn admission_keeps_defaults_in_policy_order() {
        let decision = combine_admission(vec![
            ok(
                "a",
                admit(r#"{"allow": true, "defaults": {"resources": {"memory": "128MiB"}}}"#),
            ),
            ok("b", admit(r#"{"allow": true, "defaults": {}}"#)),
        ]);
        assert!(decision.admitted());
        assert_eq!(decision.defaults.len(), 1);
        assert_eq!(decision.defaults[0].0, "a");
        assert!(combine_admission(vec![]).admitted());
    }

    #[test]
    fn placement_excludes_on_any_no_and_adds_scores() {
        let answer = |text: &str| parse_answer::<PlacementAnswer>(text.as_bytes()).unwrap();
        let verdict = combine_placement(vec![
            ok("a", answer(r#"{"eligible": true, "score": 2.5}"#)),
            ok("b", answer(r#"{"eligible": true, "score": 1}"#)),
        ]);
        assert!(verdict.eligible());
        assert!((verdict.score - 3.5).abs() < f64::EPSILON);
        let verdict = combine_placement(vec![
            ok(
                "a",
                answer(r#"{"eligible": false, "reason": "host is in maintenance"}"#),
            ),
            ok("b", answer(r#"{"eligible": false}"#)),
            failed(
                "c",
                FailureCause::MemoryCap {
                    cap_bytes: 16 << 20,
                },
            ),
        ]);
        assert_eq!(
            verdict.exclusions,
            [
                "policy a: host is in maintenance",
                "policy b: not eligible (no reason given)",
                "policy c failed: it tried to use more than its 16 MiB memory cap (fail closed)",
            ]
        );
    }

    #[test]
    fn analysis_rolls_back_on_any_rollback_or_failure_then_waits() {
        let answer = |text: &str| parse_answer::<AnalyzeAnswer>(text.as_bytes()).unwrap();
        let promote = || answer(r#"{"action": "promote", "reason": "healthy"}"#);
        let wait = || answer(r#"{"action": "wait", "reason": "too early"}"#);
        let cases = [
            (
                vec![],
                AnalysisAction::Promote,
                "no rollout.analyze policy is enabled",
            ),
            (
                vec![ok("a", promote())],
                AnalysisAction::Promote,
                "policy a: healthy",
            ),
            (
                vec![ok("a", promote()), ok("b", wait())],
                AnalysisAction::Wait,
                "policy b: too early",
            ),
            (
                vec![ok("a", wait()), failed("b", FailureCause::StackOverflow)],
                AnalysisAction::Rollback,
                "policy b failed: it overflowed its stack (fail closed)",
            ),
            (
                vec![
                    ok("a", answer(r#"{"action": "rollback"}"#)),
                    ok("b", answer(r#"{"action": "rollback", "reason": "errors"}"#)),
                ],
                AnalysisAction::Rollback,
                "policy a: (no reason given); policy b: errors",
            ),
        ];
        for (outcomes, action, reason) in cases {
            let verdict = combine_analysis(outcomes);
            assert_eq!((verdict.action, verdict.reason.as_str()), (action, reason));
        }
    }
}
