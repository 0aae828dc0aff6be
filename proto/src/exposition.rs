//! A small writer for the Prometheus text exposition format (version 0.0.4),
//! shared by the agent's and the control plane's `/metrics` endpoints.
//!
//! ```
//! use argosy_proto::exposition::{Exposition, Kind};
//!
//! let mut w = Exposition::new();
//! w.family("argosy_agent_cpu_percent", "CPU busy time, percent of all cores.", Kind::Gauge);
//! w.sample(&[], 12.5);
//! w.family("argosy_agent_reconnects_total", "Sessions started after the first.", Kind::Counter);
//! w.sample(&[("reason", "disconnect")], 3.0);
//! let text = w.finish();
//! assert!(text.contains("argosy_agent_reconnects_total{reason=\"disconnect\"} 3\n"));
//! ```
//!
//! Metric and label names are chosen by the program, not by its input, so a
//! malformed name, a counter not ending in `_total`, a family written twice
//! or a sample without a family are programming errors and panic. Label
//! values and help texts can be anything and are escaped.

use std::collections::HashSet;
use std::fmt::Write as _;

/// The `Content-Type` of a response carrying [`Exposition::finish`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up (and resets on restart). Its name must end
    /// in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets plus `_sum` and `_count`, written with
    /// [`Exposition::histogram`].
    Histogram,
    /// A value of unknown type.
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        }
    }
}

/// Builds one exposition document, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    current: Option<(String, Kind)>,
    written: HashSet<String>,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the metric family `name`: writes its `# HELP` and `# TYPE`
    /// lines. The samples that follow, up to the next family, belong to it.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid metric name, a counter's name does not end
    /// in `_total`, or the family was already written.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        assert!(is_metric_name(name), "invalid metric name {name:?}");
        if kind == Kind::Counter {
            assert!(
                name.ends_with("_total") && name.len() > "_total".len(),
                "counter {name:?} must end in _total"
            );
        }
        assert!(
            self.written.insert(name.to_owned()),
            "metric family {name:?} written twice"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help_into(&mut self.out, help);
        self.out.push('\n');
        self.out.push_str("# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        self.current = Some((name.to_owned(), kind));
        self
    }

    /// Writes one sample of the current counter, gauge or untyped family.
    ///
    /// # Panics
    ///
    /// If no family was started, the current family is a histogram, or a
    /// label name is invalid or repeated.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let (name, kind) = self
            .current
            .take()
            .expect("Exposition::sample called before Exposition::family");
        assert!(
            kind != Kind::Histogram,
            "histogram {name:?} takes Exposition::histogram, not Exposition::sample"
        );
        self.line(&name, "", labels, None, value);
        self.current = Some((name, kind));
        self
    }

    /// Writes one histogram of the current histogram family: `buckets` are
    /// `(upper bound, cumulative count)` in increasing bound order, without
    /// the `+Inf` bucket, which is written from `count`.
    ///
    /// # Panics
    ///
    /// If the current family is not a histogram, a label is named `le`, or
    /// as for [`Exposition::sample`].
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> &mut Self {
        let (name, kind) = self
            .current
            .take()
            .expect("Exposition::histogram called before Exposition::family");
        assert!(
            kind == Kind::Histogram,
            "{name:?} is not a histogram family"
        );
        assert!(
            labels.iter().all(|(label, _)| *label != "le"),
            "the label le is reserved for histogram buckets"
        );
        let mut bound = String::new();
        for (le, cumulative) in buckets {
            bound.clear();
            write_value(&mut bound, *le);
            self.line(&name, "_bucket", labels, Some(&bound), *cumulative as f64);
        }
        self.line(&name, "_bucket", labels, Some("+Inf"), count as f64);
        self.line(&name, "_sum", labels, None, sum);
        self.line(&name, "_count", labels, None, count as f64);
        self.current = Some((name, kind));
        self
    }

    /// The finished document.
    pub fn finish(self) -> String {
        self.out
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: f64,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                assert!(is_label_name(label), "invalid label name {label:?}");
                assert!(
                    labels[..index].iter().all(|(other, _)| other != label),
                    "label {label:?} given twice"
                );
                if index > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value_into(&mut self.out, value);
                self.out.push('"');
            }
            if let Some(le) = le {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str("le=\"");
                self.out.push_str(le);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
    }
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and does not start with
/// the reserved `__`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A label value escaped for the text format: `\` as `\\`, `"` as `\"`,
/// a line feed as `\n`.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_label_value_into(&mut out, value);
    out
}

fn escape_label_value_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help_into(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust prints finite floats without an exponent and integers without
        // a fraction, both of which the format accepts.
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_and_labels() {
        let mut w = Exposition::new();
        w.family("up", "Whether it runs.", Kind::Gauge)
            .sample(&[], 1.0);
        w.family("requests_total", "Requests served.", Kind::Counter)
            .sample(&[("method", "GET"), ("code", "200")], 1027.0)
            .sample(&[("method", "POST"), ("code", "500")], 3.0);
        w.family("temperature", "Untyped reading.", Kind::Untyped)
            .sample(&[("room", "a")], -1.5);
        assert_eq!(
            w.finish(),
            "# HELP up Whether it runs.\n\
             # TYPE up gauge\n\
             up 1\n\
             # HELP requests_total Requests served.\n\
             # TYPE requests_total counter\n\
             requests_total{method=\"GET\",code=\"200\"} 1027\n\
             requests_total{method=\"POST\",code=\"500\"} 3\n\
             # HELP temperature Untyped reading.\n\
             # TYPE temperature untyped\n\
             temperature{room=\"a\"} -1.5\n"
        );
    }

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain /mnt/data é"), "plain /mnt/data é");

        let mut w = Exposition::new();
        w.family("m", "back\\slash \"quotes\" stay\nnew line", Kind::Gauge)
            .sample(&[("mount", "C:\\ \"x\"\n")], 2.0);
        assert_eq!(
            w.finish(),
            "# HELP m back\\\\slash \"quotes\" stay\\nnew line\n\
             # TYPE m gauge\n\
             m{mount=\"C:\\\\ \\\"x\\\"\\n\"} 2\n"
        );
    }

    #[test]
    fn formats_special_and_large_values() {
        let mut w = Exposition::new();
        w.family("v", "Values.", Kind::Gauge);
        for (index, value) in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            0.25,
            18_446_744_073_709_551_615_u64 as f64,
            1e-7,
        ]
        .into_iter()
        .enumerate()
        {
            w.sample(&[("i", &index.to_string())], value);
        }
        let text = w.finish();
        let values: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            values,
            [
                "NaN",
                "+Inf",
                "-Inf",
                "0",
                "0.25",
                "18446744073709552000",
                "0.0000001"
            ]
        );
    }

    #[test]
    fn writes_histograms() {
        let mut w = Exposition::new();
        w.family("rpc_seconds", "RPC latency.", Kind::Histogram)
            .histogram(&[("rpc", "Enroll")], &[(0.1, 2), (1.0, 5)], 3.5, 6);
        w.family("empty_seconds", "No labels.", Kind::Histogram)
            .histogram(&[], &[], 0.0, 0);
        assert_eq!(
            w.finish(),
            "# HELP rpc_seconds RPC latency.\n\
             # TYPE rpc_seconds histogram\n\
             rpc_seconds_bucket{rpc=\"Enroll\",le=\"0.1\"} 2\n\
             rpc_seconds_bucket{rpc=\"Enroll\",le=\"1\"} 5\n\
             rpc_seconds_bucket{rpc=\"Enroll\",le=\"+Inf\"} 6\n\
             rpc_seconds_sum{rpc=\"Enroll\"} 3.5\n\
             rpc_seconds_count{rpc=\"Enroll\"} 6\n\
             # HELP empty_seconds No labels.\n\
             # TYPE empty_seconds histogram\n\
             empty_seconds_bucket{le=\"+Inf\"} 0\n\
             empty_seconds_sum 0\n\
             empty_seconds_count 0\n"
        );
    }

    #[test]
    fn a_family_without_samples_keeps_its_header() {
        let mut w = Exposition::new();
        w.family("nothing_yet", "No sample.", Kind::Gauge);
        assert_eq!(
            w.finish(),
            "# HELP nothing_yet No sample.\n# TYPE nothing_yet gauge\n"
        );
    }

    #[test]
    fn validates_names() {
        for good in ["a", "_a", "a:b", "argosy_agent_cpu_percent", "A9"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        for good in ["a", "_a", "mount", "le"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "__name__", "a:b", "9", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "must end in _total")]
    fn counters_must_end_in_total() {
        Exposition::new().family("requests", "x", Kind::Counter);
    }

    #[test]
    #[should_panic(expected = "written twice")]
    fn a_family_is_written_once() {
        let mut w = Exposition::new();
        w.family("a", "x", Kind::Gauge);
        w.family("a", "x", Kind::Gauge);
    }

    #[test]
    #[should_panic(expected = "before Exposition::family")]
    fn a_sample_needs_a_family() {
        Exposition::new().sample(&[], 1.0);
    }

    #[test]
    #[should_panic(expected = "invalid label name")]
    fn label_names_are_checked() {
        Exposition::new()
            .family("a", "x", Kind::Gauge)
            .sample(&[("bad-name", "v")], 1.0);
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn labels_are_not_repeated() {
        Exposition::new()
            .family("a", "x", Kind::Gauge)
            .sample(&[("l", "1"), ("l", "2")], 1.0);
    }

    #[test]
    #[should_panic(expected = "not a histogram")]
    fn histogram_needs_a_histogram_family() {
        Exposition::new()
            .family("a", "x", Kind::Gauge)
            .histogram(&[], &[], 0.0, 0);
    }

    #[test]
    #[should_panic(expected = "takes Exposition::histogram")]
    fn histogram_families_take_no_plain_samples() {
        Exposition::new()
            .family("a", "x", Kind::Histogram)
            .sample(&[], 1.0);
    }
}
