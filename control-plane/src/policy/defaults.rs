//! Defaults an admission policy supplies (`"defaults": {"resources":
//! {"memory": "256MiB"}}`), filled into the spec document where it says
//! nothing, never over what the author wrote. Pure.
//!
//! The stored revision must be what runs, so when defaults fill anything
//! the revision's text is the completed document, rendered again: TOML as
//! TOML, YAML as JSON (every JSON document is a YAML 1.2 document, and
//! serde-saphyr reads it as such). Comments of the original are lost in
//! that case only; `argosy revisions` shows the text that was stored.

use crate::deploy::spec::Format;
use serde_json::{Map, Value};

/// A spec document that could not be read or written as a plain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the spec document cannot be read as data: {0}")]
    Read(String),
    #[error("the spec with the policies' defaults cannot be written as {format}: {error}")]
    Write { format: &'static str, error: String },
}

/// The spec text as a JSON value (maps, lists, strings, numbers).
pub fn parse_document(text: &str, format: Format) -> Result<Value, DocumentError> {
    match format {
        Format::Yaml => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| DocumentError::Read(first_line(&e.to_string()))),
        Format::Toml => {
            toml::from_str::<Value>(text).map_err(|e| DocumentError::Read(first_line(e.message())))
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Fills `defaults` into `document` where it has no value (absent or
/// null), recursing into maps present on both sides. Returns the dotted
/// paths it filled, in order.
pub fn fill(document: &mut Value, defaults: &Map<String, Value>) -> Vec<String> {
    let mut filled = Vec::new();
    if let Value::Object(map) = document {
        fill_map(map, defaults, "", &mut filled);
    }
    filled
}

fn fill_map(
    target: &mut Map<String, Value>,
    defaults: &Map<String, Value>,
    prefix: &str,
    filled: &mut Vec<String>,
) {
    for (key, default) in defaults {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (target.get_mut(key), default) {
            // A missing map is filled leaf by leaf, so the paths say what
            // was filled (`resources.memory`, not `resources`).
            (None | Some(Value::Null), Value::Object(inner_defaults)) => {
                let mut inner = Map::new();
                fill_map(&mut inner, inner_defaults, &path, filled);
                if !inner.is_empty() {
                    target.insert(key.clone(), Value::Object(inner));
                }
            }
            (None | Some(Value::Null), _) => {
                if !default.is_null() {
                    target.insert(key.clone(), default.clone());
                    filled.push(path);
                }
            }
            (Some(Value::Object(inner)), Value::Object(inner_defaults)) => {
                fill_map(inner, inner_defaults, &path, filled);
            }
            (Some(_), _) => {}
        }
    }
}

/// The completed document as spec text in its format.
pub fn render(document: &Value, format: Format) -> Result<String, DocumentError> {
    match format {
        Format::Yaml => {
            let mut text =
                serde_json::to_string_pretty(document).map_err(|e| DocumentError::Write {
                    format: "YAML",
                    error: e.to_string(),
                })?;
            text.push('\n');
            Ok(text)
        }
        Format::Toml => toml::to_string(document).map_err(|e| DocumentError::Write {
            format: "TOML",
            error: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::parse;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test defaults are objects"),
        }
    }

    #[test]
    fn fills_only_what_is_missing() {
        let mut doc = json!({
            "name": "web",
            "resources": {"cpu": 0.5, "memory": null},
            "env": {"A": "1"}
        });
        let filled = fill(
            &mut doc,
            &object(json!({
                "name": "other",
                "resources": {"cpu": 2, "memory": "256MiB", "pids": 100},
                "env": "not a map",
                "replicas": 2,
                "restart": null,
                "health_check": {"http": {"path": "/healthz"}},
                "labels": {}
            })),
        );
        // In the order of the defaults' keys (sorted).
        assert_eq!(
            filled,
            [
                "health_check.http.path",
                "replicas",
                "resources.memory",
                "resources.pids"
            ]
        );
        assert_eq!(
            doc,
            json!({
                "name": "web",
                "resources": {"cpu": 0.5, "memory": "256MiB", "pids": 100},
                "env": {"A": "1"},
                "replicas": 2,
                "health_check": {"http": {"path": "/healthz"}}
            })
        );
    }

    #[test]
    fn completed_documents_parse_back_as_specs_in_both_formats() {
        let yaml = "# a comment\nname: web\nimage: nginx:1.25\nports: [\"8080:80\"]\nresources:\n  cpu: 0.5\n";
        let toml = "name = \"web\"\nimage = \"nginx:1.25\"\nports = [\"8080:80\"]\n[resources]\ncpu = 0.5\n";
        for (text, format) in [(yaml, Format::Yaml), (toml, Format::Toml)] {
            let mut doc = parse_document(text, format).unwrap();
            let filled = fill(
                &mut doc,
                &object(json!({"resources": {"memory": "256MiB"}})),
            );
            assert_eq!(filled, ["resources.memory"]);
            let rendered = render(&doc, format).unwrap();
            let spec = parse(&rendered, format).unwrap();
            assert_eq!(spec.resources.memory_bytes, 256 << 20, "{rendered}");
            assert_eq!(spec.resources.cpu_millis, 500);
            assert_eq!(spec.ports.len(), 1);
            // Rendering is deterministic: the same defaults give the same text.
            assert_eq!(render(&doc, format).unwrap(), rendered);
        }
    }

    #[test]
    fn unreadable_documents_say_so() {
        assert!(matches!(
            parse_document("a: [", Format::Yaml),
            Err(DocumentError::Read(_))
        ));
        assert!(matches!(
            render(&json!({"a": null}), Format::Toml),
            Err(DocumentError::Write { format: "TOML", .. })
        ));
    }
}
