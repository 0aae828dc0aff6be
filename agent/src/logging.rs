//! One-time setup of the agent's logs: `tracing` to stderr, as text or as
//! JSON lines, filtered by the configured level.

use crate::config::LogFormat;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a filter such as `info` or `argosy_agent=debug,warn`: every
/// comma-separated part is a level or `target=level`.
pub fn check_filter(filter: &str) -> Result<(), String> {
    for part in filter.split(',').map(str::trim) {
        let (target, level) = match part.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, part),
        };
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} is not a level ({}) or target=level",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Installs the global subscriber. `level` was validated by the config
/// (`info`, or `argosy_agent=debug,info` style targets). `Targets` rather
/// than `EnvFilter` keeps the regex engine out of the agent's binary.
pub fn init(format: LogFormat, level: &str) {
    let filter = level
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for good in ["info", "WARN", "argosy_agent=debug,warn", "h2=off, info"] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "[[[", "loud", "=debug", "a=b", "info,"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
