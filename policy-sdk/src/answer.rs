//! What a policy answers, per hook.

use serde::Serialize;

/// A `deployment.admit` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Admit {
    pub allow: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Fields to fill in where the spec says nothing, in spec syntax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Admit {
    pub fn allow() -> Admit {
        Admit {
            allow: true,
            ..Admit::default()
        }
    }

    pub fn deny(reason: impl Into<String>) -> Admit {
        Admit {
            allow: false,
            reasons: vec![reason.into()],
            ..Admit::default()
        }
    }

    /// Adds a reason; an answer with reasons denies.
    pub fn reason(mut self, reason: impl Into<String>) -> Admit {
        self.allow = false;
        self.reasons.push(reason.into());
        self
    }

    pub fn warn(mut self, warning: impl Into<String>) -> Admit {
        self.warnings.push(warning.into());
        self
    }

    /// Fills `value` in at the dotted `path` (`resources.memory`) where the
    /// spec has nothing.
    pub fn default_value(mut self, path: &str, value: impl Into<serde_json::Value>) -> Admit {
        let mut map = self.defaults.take().unwrap_or_default();
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or(path);
        let mut cursor = &mut map;
        for part in parts {
            let entry = cursor
                .entry(part.to_owned())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if !entry.is_object() {
                *entry = serde_json::Value::Object(serde_json::Map::new());
            }
            match entry {
                serde_json::Value::Object(inner) => cursor = inner,
                _ => return self,
            }
        }
        cursor.insert(last.to_owned(), value.into());
        self.defaults = Some(map);
        self
    }
}

/// A `placement.filter` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub eligible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl Placement {
    pub fn eligible() -> Placement {
        Placement {
            eligible: true,
            reason: None,
            score: None,
        }
    }

    pub fn scored(score: f64) -> Placement {
        Placement {
            score: Some(score),
            ..Placement::eligible()
        }
    }

    pub fn not_eligible(reason: impl Into<String>) -> Placement {
        Placement {
            eligible: false,
            reason: Some(reason.into()),
            score: None,
        }
    }
}

/// A `rollout.analyze` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// `promote`, `wait` or `rollback`.
    pub action: &'static str,
    pub reason: String,
}

impl Analysis {
    pub fn promote(reason: impl Into<String>) -> Analysis {
        Analysis {
            action: "promote",
            reason: reason.into(),
        }
    }

    pub fn wait(reason: impl Into<String>) -> Analysis {
        Analysis {
            action: "wait",
            reason: reason.into(),
        }
    }

    pub fn rollback(reason: impl Into<String>) -> Analysis {
        Analysis {
            action: "rollback",
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_serialize_to_the_abi() {
        assert_eq!(
            serde_json::to_value(Admit::allow()).unwrap(),
            json!({"allow": true})
        );
        assert_eq!(
            serde_json::to_value(Admit::allow().warn("old").reason("no limits")).unwrap(),
            json!({"allow": false, "reasons": ["no limits"], "warnings": ["old"]})
        );
        assert_eq!(
            serde_json::to_value(
                Admit::allow()
                    .default_value("resources.memory", "256MiB")
                    .default_value("resources.cpu", 0.5)
                    .default_value("replicas", 2)
            )
            .unwrap(),
            json!({"allow": true, "defaults": {"resources": {"memory": "256MiB", "cpu": 0.5}, "replicas": 2}})
        );
        assert_eq!(
            serde_json::to_value(Placement::not_eligible("draining")).unwrap(),
            json!({"eligible": false, "reason": "draining"})
        );
        assert_eq!(
            serde_json::to_value(Analysis::rollback("3 restarts")).unwrap(),
            json!({"action": "rollback", "reason": "3 restarts"})
        );
    }

    #[test]
    fn requests_read_partial_inputs() {
        let request: crate::Request<crate::input::AdmitInput> = serde_json::from_value(json!({
            "abi": 1, "hook": "deployment.admit", "policy": "p", "config": {"max_age_hours": 6},
            "input": {"spec": {"name": "web", "resources": {"memory_bytes": null}}, "future_field": 1}
        }))
        .unwrap();
        assert_eq!(request.input.spec.name, "web");
        assert_eq!(request.input.spec.resources.memory_bytes, None);
        assert_eq!(request.config("max_age_hours", 24u64), 6);
        assert_eq!(request.config("missing", 24u64), 24);
    }
}
