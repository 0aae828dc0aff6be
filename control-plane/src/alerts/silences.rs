//! Silences: label matchers and a time window during which matching alerts
//! send no notifications (they still fire and are kept in the history).
//! Pure: parsing, validation, matching and expiry.

use super::rules::Labels;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a matcher compares a label's value. A label the alert does not
/// carry has the empty value (as in Prometheus Alertmanager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

/// One `name=value` or `name!=value` condition on an alert's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    pub fn matches(&self, labels: &Labels) -> bool {
        let have = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => have == self.value,
            MatchOp::NotEqual => have != self.value,
        }
    }

    /// Whether an alert without the label would match (such matchers alone
    /// would silence nearly everything).
    fn matches_missing_label(&self) -> bool {
        self.matches(&Labels::new())
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("matcher {0:?} is not name=value or name!=value (e.g. alertname=HostCpuHigh)")]
    Matcher(String),
    #[error("matcher {0:?} has an invalid label name: use letters, digits and '_'")]
    LabelName(String),
    #[error(
        "a silence needs at least one matcher that requires a label value (name=value), or it would silence every alert"
    )]
    TooBroad,
    #[error("the silence must last between 1 second and 90 days (got {0})")]
    Duration(String),
    #[error("a silence needs a comment saying why (--comment)")]
    NoComment,
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl std::str::FromStr for Matcher {
    type Err = SilenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, op, value) = if let Some((name, value)) = text.split_once("!=") {
            (name, MatchOp::NotEqual, value)
        } else if let Some((name, value)) = text.split_once('=') {
            (name, MatchOp::Equal, value)
        } else {
            return Err(SilenceError::Matcher(text.to_owned()));
        };
        let name = name.trim();
        if !is_label_name(name) {
            return Err(SilenceError::LabelName(text.to_owned()));
        }
        let value = value.trim().trim_matches('"');
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
        })
    }
}

/// The longest silence: 90 days.
pub const MAX_SILENCE_MS: i64 = 90 * 86_400_000;

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    /// Set to the time it was lifted when someone ends it early.
    pub ends_at_ms: i64,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.matchers.is_empty() && self.matchers.iter().all(|m| m.matches(labels))
    }

    pub fn matchers_text(&self) -> String {
        self.matchers
            .iter()
            .map(Matcher::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks a new silence's matchers, duration and comment.
pub fn validate(matchers: &[Matcher], duration_ms: i64, comment: &str) -> Result<(), SilenceError> {
    if !matchers.iter().any(|m| !m.matches_missing_label()) {
        return Err(SilenceError::TooBroad);
    }
    if !(1_000..=MAX_SILENCE_MS).contains(&duration_ms) {
        return Err(SilenceError::Duration(super::rules::duration_text(
            duration_ms,
        )));
    }
    if comment.trim().is_empty() {
        return Err(SilenceError::NoComment);
    }
    Ok(())
}

/// The first active silence matching `labels` at `now_ms`, if any.
pub fn silencing<'a>(silences: &'a [Silence], labels: &Labels, now_ms: i64) -> Option<&'a Silence> {
    silences
        .iter()
        .find(|s| s.is_active(now_ms) && s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matcher(text: &str) -> Matcher {
        text.parse().unwrap()
    }

    fn silence(matchers: &[&str], starts: i64, ends: i64) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: matchers.iter().map(|m| matcher(m)).collect(),
            starts_at_ms: starts,
            ends_at_ms: ends,
            comment: "maintenance".into(),
            created_by: "user:alice".into(),
        }
    }

    #[test]
    fn matchers_parse() {
        assert_eq!(
            matcher("alertname=HostCpuHigh"),
            Matcher {
                name: "alertname".into(),
                op: MatchOp::Equal,
                value: "HostCpuHigh".into()
            }
        );
        assert_eq!(matcher("region != \"eu-west\"").op, MatchOp::NotEqual);
        assert_eq!(matcher("region != \"eu-west\"").value, "eu-west");
        assert_eq!(matcher("team=").value, "");
        assert!(matches!(
            "alertname".parse::<Matcher>(),
            Err(SilenceError::Matcher(_))
        ));
        assert!(matches!(
            "bad-name=x".parse::<Matcher>(),
            Err(SilenceError::LabelName(_))
        ));
        assert_eq!(matcher("a=b=c").value, "b=c");
    }

    #[test]
    fn every_matcher_must_match() {
        let s = silence(&["alertname=HostCpuHigh", "region=eu-west"], 0, 100);
        assert!(s.matches(&labels(&[
            ("alertname", "HostCpuHigh"),
            ("region", "eu-west"),
            ("host", "h1")
        ])));
        assert!(!s.matches(&labels(&[
            ("alertname", "HostCpuHigh"),
            ("region", "us-east")
        ])));
        assert!(!s.matches(&labels(&[("alertname", "HostCpuHigh")])));
    }

    #[test]
    fn not_equal_matches_a_missing_label() {
        let s = silence(&["alertname=HostOffline", "region!=eu-west"], 0, 100);
        assert!(s.matches(&labels(&[("alertname", "HostOffline")])));
        assert!(s.matches(&labels(&[
            ("alertname", "HostOffline"),
            ("region", "us-east")
        ])));
        assert!(!s.matches(&labels(&[
            ("alertname", "HostOffline"),
            ("region", "eu-west")
        ])));
    }

    #[test]
    fn silences_are_active_in_their_window_only() {
        let s = silence(&["alertname=A"], 1_000, 2_000);
        assert!(!s.is_active(999));
        assert!(s.is_active(1_000));
        assert!(s.is_active(1_999));
        assert!(!s.is_active(2_000), "expired at its end");
        let all = [s];
        let a = labels(&[("alertname", "A")]);
        assert!(silencing(&all, &a, 1_500).is_some());
        assert!(silencing(&all, &a, 2_500).is_none());
        assert!(silencing(&all, &labels(&[("alertname", "B")]), 1_500).is_none());
    }

    #[test]
    fn silences_that_match_everything_are_refused() {
        assert_eq!(validate(&[], 60_000, "x"), Err(SilenceError::TooBroad));
        assert_eq!(
            validate(&[matcher("region!=eu-west")], 60_000, "x"),
            Err(SilenceError::TooBroad)
        );
        assert_eq!(
            validate(&[matcher("team=")], 60_000, "x"),
            Err(SilenceError::TooBroad)
        );
        assert_eq!(validate(&[matcher("alertname=A")], 60_000, "why"), Ok(()));
        assert!(matches!(
            validate(&[matcher("alertname=A")], 0, "why"),
            Err(SilenceError::Duration(_))
        ));
        assert!(matches!(
            validate(&[matcher("alertname=A")], MAX_SILENCE_MS + 1, "why"),
            Err(SilenceError::Duration(_))
        ));
        assert_eq!(
            validate(&[matcher("alertname=A")], 60_000, "  "),
            Err(SilenceError::NoComment)
        );
    }

    #[test]
    fn matchers_print_as_written() {
        let s = silence(&["alertname=A", "region!=eu"], 0, 1);
        assert_eq!(s.matchers_text(), "alertname=A,region!=eu");
    }
}
