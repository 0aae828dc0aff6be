//! How the CLI prints: human tables by default, JSON with `-o json`.

use crate::clock::format_ms;
use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    #[default]
    Table,
    Json,
}

pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    // comfy-table pads with a leading space; trim each line for tidy output.
    table
        .to_string()
        .lines()
        .map(|line| line.trim_end().strip_prefix(' ').unwrap_or(line).to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

pub(super) fn when(ms: i64) -> String {
    if ms <= 0 {
        "-".to_owned()
    } else {
        format_ms(ms)
    }
}

/// A time relative to `now_ms`, like `12s ago` or `in 3h`.
pub(super) fn ago(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "never".to_owned();
    }
    let delta = (now_ms - ms) / 1000;
    let (abs, future) = if delta < 0 {
        (-delta, true)
    } else {
        (delta, false)
    };
    let text = if abs < 60 {
        format!("{abs}s")
    } else if abs < 3600 {
        format!("{}m", abs / 60)
    } else if abs < 86_400 {
        format!("{}h", abs / 3600)
    } else {
        format!("{}d", abs / 86_400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(ago(0, 10_000), "never");
        assert_eq!(ago(5_000, 10_000), "5s ago");
        assert_eq!(ago(1_000_000 - 120_000, 1_000_000), "2m ago");
        assert_eq!(ago(1_000_000 + 7_200_000, 1_000_000), "in 2h");
        assert_eq!(ago(1, 3 * 86_400_000), "2d ago");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
    }

    #[test]
    fn tables_have_headers() {
        let text = table(&["id", "name"], vec![vec!["1".into(), "a".into()]]);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("ID"));
        assert!(lines.next().unwrap().starts_with('1'));
    }
}
