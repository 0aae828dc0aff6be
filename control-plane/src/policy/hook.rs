//! The three hooks a policy can attach to, policy names, policy
//! configuration and the sandbox limits. Pure.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where in the control plane a policy is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Before a revision is accepted by `argosy apply` (also dry runs).
    DeploymentAdmit,
    /// For each candidate host when allocations are placed.
    PlacementFilter,
    /// At each canary step, before a promotion.
    RolloutAnalyze,
}

impl Hook {
    pub const ALL: [Hook; 3] = [
        Hook::DeploymentAdmit,
        Hook::PlacementFilter,
        Hook::RolloutAnalyze,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::DeploymentAdmit => "deployment.admit",
            Hook::PlacementFilter => "placement.filter",
            Hook::RolloutAnalyze => "rollout.analyze",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hook name that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook {0:?}: use deployment.admit, placement.filter or rollout.analyze")]
pub struct UnknownHook(pub String);

impl FromStr for Hook {
    type Err = UnknownHook;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hook::ALL
            .into_iter()
            .find(|h| h.as_str() == s.trim())
            .ok_or_else(|| UnknownHook(s.to_owned()))
    }
}

/// A policy's name: 1–63 lowercase letters, digits and `-`, starting with
/// a letter (it shows in every decision it takes part in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName(String);

/// A name that is not a valid policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a policy name: use 1-63 lowercase letters, digits and '-', starting with a letter"
)]
pub struct InvalidPolicyName(pub String);

impl PolicyName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PolicyName {
    type Err = InvalidPolicyName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(PolicyName(s.to_owned()))
        } else {
            Err(InvalidPolicyName(s.to_owned()))
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest configuration a policy may carry.
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error("the policy configuration is not JSON: {0}; pass a JSON object with --config")]
    NotJson(String),
    #[error("the policy configuration must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("the policy configuration is {0} bytes, more than the {MAX_CONFIG_BYTES} allowed")]
    TooLarge(usize),
}

/// Validates a configuration (empty text: `{}`) and returns it compact.
pub fn parse_config(text: &str) -> Result<serde_json::Value, InvalidConfig> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    if text.len() > MAX_CONFIG_BYTES {
        return Err(InvalidConfig::TooLarge(text.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| InvalidConfig::NotJson(e.to_string()))?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Null => Err(InvalidConfig::NotAnObject("null")),
        serde_json::Value::Bool(_) => Err(InvalidConfig::NotAnObject("a boolean")),
        serde_json::Value::Number(_) => Err(InvalidConfig::NotAnObject("a number")),
        serde_json::Value::String(_) => Err(InvalidConfig::NotAnObject("a string")),
        serde_json::Value::Array(_) => Err(InvalidConfig::NotAnObject("an array")),
    }
}

/// What one evaluation of a policy may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per call, enforced by epoch interruption (1 ms ticks).
    pub budget: Duration,
    /// Linear memory per instance.
    pub memory_bytes: u64,
    /// Wasm stack per call.
    pub stack_bytes: usize,
    /// The largest module accepted at upload.
    pub module_bytes: usize,
    /// The largest answer read back from a module.
    pub output_bytes: usize,
    /// Instances evaluated at once (the pooling allocator's slots).
    pub concurrent_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            module_bytes: 8 << 20,
            output_bytes: 1 << 20,
            concurrent_instances: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_parse_and_print() {
        for hook in Hook::ALL {
            assert_eq!(hook.as_str().parse::<Hook>(), Ok(hook));
        }
        assert_eq!(
            "deployment.admitt".parse::<Hook>().unwrap_err().to_string(),
            "unknown hook \"deployment.admitt\": use deployment.admit, placement.filter or rollout.analyze"
        );
    }

    #[test]
    fn policy_names() {
        for good in ["a", "require-limits", "no-latest-2", &"a".repeat(63)] {
            assert!(good.parse::<PolicyName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Upper",
            "with space",
            "trailing-",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<PolicyName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_are_json_objects() {
        assert_eq!(parse_config("").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_config(r#" {"max_age_hours": 24} "#).unwrap(),
            serde_json::json!({"max_age_hours": 24})
        );
        assert_eq!(
            parse_config("[1]").unwrap_err(),
            InvalidConfig::NotAnObject("an array")
        );
        assert!(matches!(
            parse_config("{").unwrap_err(),
            InvalidConfig::NotJson(_)
        ));
        let big = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_CONFIG_BYTES));
        assert!(matches!(
            parse_config(&big).unwrap_err(),
            InvalidConfig::TooLarge(_)
        ));
    }
}
