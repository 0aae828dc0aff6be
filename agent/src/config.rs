//! The agent's settings: command line, `ARGOSY_*` environment variables and
//! an optional TOML file, merged and validated once at start-up into a
//! typed [`Config`] that is passed down explicitly.
//!
//! Precedence: a flag or its environment variable wins over the config
//! file, which wins over the built-in default.

use argosy_proto::join::{JoinString, JoinStringError};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the agent keeps its identity when nothing else is said.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/argosy-agent";
/// How often a metrics sample is taken when nothing else is said.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest sampling interval an operator may configure.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `argosy-agent`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "argosy-agent",
    version,
    about = "The Argosy agent: enrolls this host, reports its inventory and metrics to the control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll (first run, with --join) and report to the control plane until stopped.
    Run(Box<RunArgs>),
    /// Print the agent's version.
    Version,
}

/// Flags of `argosy-agent run`. Every flag also reads an `ARGOSY_*`
/// variable; all are optional here so that the config file can fill them.
#[derive(Debug, Default, Clone, Args)]
pub struct RunArgs {
    /// Join string from `argosy join-token create` (only needed on the first run).
    #[arg(
        long,
        env = "ARGOSY_JOIN",
        hide_env_values = true,
        value_name = "STRING"
    )]
    pub join: Option<String>,
    /// Where the agent keeps its key, certificate and identity [default: /var/lib/argosy-agent].
    #[arg(long, env = "ARGOSY_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often to take and send a metrics sample, e.g. 10s, 1m [default: 10s].
    #[arg(long, env = "ARGOSY_INTERVAL", value_name = "DURATION")]
    pub interval: Option<String>,
    /// Serve the latest sample in Prometheus format at http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[arg(long, env = "ARGOSY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Where secret files for containers go, on tmpfs or ramfs only [default: /run/argosy-agent/secrets].
    #[arg(long, env = "ARGOSY_SECRETS_DIR", value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Serve the ingress's plain HTTP here, or `off` [default: 0.0.0.0:7480].
    #[arg(long, env = "ARGOSY_INGRESS_HTTP", value_name = "ADDR")]
    pub ingress_http: Option<String>,
    /// Serve the ingress's HTTPS here, or `off` [default: 0.0.0.0:8443].
    #[arg(long, env = "ARGOSY_INGRESS_HTTPS", value_name = "ADDR")]
    pub ingress_https: Option<String>,
    /// The IP other hosts reach this one on (ingress, route ports) [default: the local address used to reach the control plane].
    #[arg(long, env = "ARGOSY_ADVERTISE_ADDRESS", value_name = "IP")]
    pub advertise_address: Option<String>,
    /// A TOML file with the same settings (join, state_dir, secrets_dir, interval, metrics_listen, ingress_http, ingress_https, advertise_address, log_format, log_level).
    #[arg(long, env = "ARGOSY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "ARGOSY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log level or tracing filter, e.g. info, debug, argosy_agent=trace [default: info].
    #[arg(long, env = "ARGOSY_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// The config file: the same keys as the flags.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub join: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub secrets_dir: Option<PathBuf>,
    pub interval: Option<String>,
    pub metrics_listen: Option<String>,
    pub ingress_http: Option<String>,
    pub ingress_https: Option<String>,
    pub advertise_address: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated settings the agent runs with.
#[derive(Clone, PartialEq)]
pub struct Config {
    pub join: Option<JoinString>,
    pub state_dir: PathBuf,
    /// Where secret files go; checked to be on tmpfs or ramfs when used.
    pub secrets_dir: PathBuf,
    pub interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// The ingress's plain HTTP listener; `None`: off.
    pub ingress_http: Option<SocketAddr>,
    /// The ingress's HTTPS listener; `None`: off.
    pub ingress_https: Option<SocketAddr>,
    /// `None`: found at start (the local address towards the control plane).
    pub advertise_address: Option<IpAddr>,
    pub log_format: LogFormat,
    pub log_level: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // JoinString's Debug already hides the token; say so explicitly anyway.
        f.debug_struct("Config")
            .field("join", &self.join.as_ref().map(|join| &join.address))
            .field("state_dir", &self.state_dir)
            .field("secrets_dir", &self.secrets_dir)
            .field(
                "interval",
                &humantime::format_duration(self.interval).to_string(),
            )
            .field("metrics_listen", &self.metrics_listen)
            .field("ingress_http", &self.ingress_http)
            .field("ingress_https", &self.ingress_https)
            .field("advertise_address", &self.advertise_address)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .finish()
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag or its environment variable.
    Flag {
        flag: &'static str,
        env: &'static str,
    },
    /// A key of the config file.
    File { key: &'static str, path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag { flag, env } => write!(f, "--{flag} (or {env})"),
            Origin::File { key, path } => write!(f, "`{key}` in {}", path.display()),
        }
    }
}

/// Why the settings were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {message}")]
    ReadFile { path: PathBuf, message: String },
    #[error("the config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{origin}: {source}")]
    Join {
        origin: Origin,
        #[source]
        source: JoinStringError,
    },
    #[error("{origin}: {value:?} is not a duration; write it like 10s, 500ms or 1m")]
    Interval { origin: Origin, value: String },
    #[error("{origin}: {value} is too short; the interval must be at least 1s")]
    IntervalTooShort { origin: Origin, value: String },
    #[error("{origin}: {value:?} is not an IP:PORT address to listen on, e.g. 127.0.0.1:9100")]
    MetricsListen { origin: Origin, value: String },
    #[error(
        "{origin}: {value:?} is not an IP:PORT address to listen on (e.g. 0.0.0.0:7480) or `off`"
    )]
    IngressListen { origin: Origin, value: String },
    #[error(
        "{origin}: {value:?} is not an IP address (e.g. 10.0.0.5); it must be an address other hosts can reach"
    )]
    AdvertiseAddress { origin: Origin, value: String },
    #[error("{origin}: unknown log format {value:?}; use text or json")]
    LogFormat { origin: Origin, value: String },
    #[error("{origin}: {value:?} is not a log level or filter (e.g. info, debug): {message}")]
    LogLevel {
        origin: Origin,
        value: String,
        message: String,
    },
}

impl Config {
    /// Reads the config file named by `args` (if any) and merges it.
    pub fn load(args: RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Some((path.clone(), parse_file(path, &text)?))
            }
            None => None,
        };
        Self::resolve(args, file)
    }

    /// Merges flags over the config file over the defaults, and validates.
    pub fn resolve(
        args: RunArgs,
        file: Option<(PathBuf, FileConfig)>,
    ) -> Result<Self, ConfigError> {
        let (path, file) = match file {
            Some((path, file)) => (path, file),
            None => (PathBuf::new(), FileConfig::default()),
        };
        let pick = |flag_value: Option<String>,
                    file_value: Option<String>,
                    flag: &'static str,
                    env: &'static str,
                    key: &'static str| {
            match (flag_value, file_value) {
                (Some(value), _) => Some((value, Origin::Flag { flag, env })),
                (None, Some(value)) => Some((
                    value,
                    Origin::File {
                        key,
                        path: path.clone(),
                    },
                )),
                (None, None) => None,
            }
        };

        let join = match pick(args.join, file.join, "join", "ARGOSY_JOIN", "join") {
            Some((value, origin)) if !value.trim().is_empty() => Some(
                value
                    .parse::<JoinString>()
                    .map_err(|source| ConfigError::Join { origin, source })?,
            ),
            _ => None,
        };

        let state_dir = args
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let secrets_dir = args
            .secrets_dir
            .or(file.secrets_dir)
            .unwrap_or_else(|| PathBuf::from(crate::secrets::DEFAULT_SECRETS_DIR));

        let interval = match pick(
            args.interval,
            file.interval,
            "interval",
            "ARGOSY_INTERVAL",
            "interval",
        ) {
            Some((value, origin)) => parse_interval(&value, origin)?,
            None => DEFAULT_INTERVAL,
        };

        let metrics_listen = match pick(
            args.metrics_listen,
            file.metrics_listen,
            "metrics-listen",
            "ARGOSY_METRICS_LISTEN",
            "metrics_listen",
        ) {
            Some((value, _)) if value.trim().is_empty() => None,
            Some((value, origin)) => Some(
                value
                    .trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ConfigError::MetricsListen { origin, value })?,
            ),
            None => None,
        };

        let ingress_http = match pick(
            args.ingress_http,
            file.ingress_http,
            "ingress-http",
            "ARGOSY_INGRESS_HTTP",
            "ingress_http",
        ) {
            Some((value, origin)) => parse_listener(value, origin)?,
            None => Some(parse_default(crate::ingress::DEFAULT_HTTP)),
        };
        let ingress_https = match pick(
            args.ingress_https,
            file.ingress_https,
            "ingress-https",
            "ARGOSY_INGRESS_HTTPS",
            "ingress_https",
        ) {
            Some((value, origin)) => parse_listener(value, origin)?,
            None => Some(parse_default(crate::ingress::DEFAULT_HTTPS)),
        };
        let advertise_address = match pick(
            args.advertise_address,
            file.advertise_address,
            "advertise-address",
            "ARGOSY_ADVERTISE_ADDRESS",
            "advertise_address",
        ) {
            Some((value, _)) if value.trim().is_empty() => None,
            Some((value, origin)) => {
                let ip = value
                    .trim()
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|ip| !ip.is_unspecified() && !ip.is_multicast());
                Some(ip.ok_or(ConfigError::AdvertiseAddress { origin, value })?)
            }
            None => None,
        };

        let log_format = match pick(
            args.log_format,
            file.log_format,
            "log-format",
            "ARGOSY_LOG_FORMAT",
            "log_format",
        ) {
            Some((value, origin)) => match value.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError::LogFormat { origin, value }),
            },
            None => LogFormat::Text,
        };

        let log_level = match pick(
            args.log_level,
            file.log_level,
            "log-level",
            "ARGOSY_LOG_LEVEL",
            "log_level",
        ) {
            Some((value, origin)) => {
                crate::logging::check_filter(&value).map_err(|message| ConfigError::LogLevel {
                    origin,
                    value: value.clone(),
                    message,
                })?;
                value
            }
            None => "info".to_owned(),
        };

        Ok(Self {
            join,
            state_dir,
            secrets_dir,
            interval,
            metrics_listen,
            ingress_http,
            ingress_https,
            advertise_address,
            log_format,
            log_level,
        })
    }
}

/// An ingress listener's address, or `off`.
fn parse_listener(value: String, origin: Origin) -> Result<Option<SocketAddr>, ConfigError> {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    trimmed
        .parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| ConfigError::IngressListen { origin, value })
}

fn parse_default(address: &str) -> SocketAddr {
    address
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Parses a config file's text.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

fn parse_interval(value: &str, origin: Origin) -> Result<Duration, ConfigError> {
    let interval = humantime::parse_duration(value.trim()).map_err(|_| ConfigError::Interval {
        origin: origin.clone(),
        value: value.to_owned(),
    })?;
    if interval < MIN_INTERVAL {
        return Err(ConfigError::IntervalTooShort {
            origin,
            value: value.trim().to_owned(),
        });
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn join(host: &str) -> String {
        format!("argosy://{host}:7443/?token=id.secret&ca={FP}")
    }

    fn file(text: &str) -> Option<(PathBuf, FileConfig)> {
        let path = PathBuf::from("/etc/argosy/agent.toml");
        let parsed = parse_file(&path, text).unwrap();
        Some((path, parsed))
    }

    fn parse_cli(args: &[&str]) -> RunArgs {
        let mut argv = vec!["argosy-agent", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(run) => *run,
            Command::Version => panic!("expected run"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let config = Config::resolve(RunArgs::default(), None).unwrap();
        assert_eq!(config.join, None);
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/argosy-agent"));
        assert_eq!(
            config.secrets_dir,
            PathBuf::from("/run/argosy-agent/secrets")
        );
        assert_eq!(config.interval, Duration::from_secs(10));
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.ingress_http, Some("0.0.0.0:7480".parse().unwrap()));
        assert_eq!(config.ingress_https, Some("0.0.0.0:8443".parse().unwrap()));
        assert_eq!(config.advertise_address, None);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.log_level, "info");
    }

    #[test]
    fn ingress_listeners_take_an_address_or_off() {
        let args = parse_cli(&[
            "--ingress-http",
            "127.0.0.1:8080",
            "--ingress-https",
            "OFF",
            "--advertise-address",
            "10.0.0.5",
        ]);
        let config = Config::resolve(args, None).unwrap();
        assert_eq!(config.ingress_http, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.ingress_https, None);
        assert_eq!(config.advertise_address, Some("10.0.0.5".parse().unwrap()));

        let from_file = Config::resolve(
            RunArgs::default(),
            file("ingress_http = \"off\"\ningress_https = \"[::]:8443\"\nadvertise_address = \"fd00::1\"\n"),
        )
        .unwrap();
        assert_eq!(from_file.ingress_http, None);
        assert_eq!(from_file.ingress_https, Some("[::]:8443".parse().unwrap()));
        assert_eq!(
            from_file.advertise_address,
            Some("fd00::1".parse().unwrap())
        );

        let args = RunArgs {
            ingress_http: Some("7480".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            Config::resolve(args, None).unwrap_err().to_string(),
            "--ingress-http (or ARGOSY_INGRESS_HTTP): \"7480\" is not an IP:PORT address to listen on (e.g. 0.0.0.0:7480) or `off`"
        );
        let err = Config::resolve(RunArgs::default(), file("ingress_https = \"no\"")).unwrap_err();
        assert!(matches!(err, ConfigError::IngressListen { .. }), "{err}");
        for bad in ["myhost", "0.0.0.0", "10.0.0.5:80", "224.0.0.1"] {
            let args = RunArgs {
                advertise_address: Some(bad.into()),
                ..RunArgs::default()
            };
            let err = Config::resolve(args, None).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("--advertise-address (or ARGOSY_ADVERTISE_ADDRESS): "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_command_line_is_parsed() {
        let args = parse_cli(&[
            "--join",
            &join("cp"),
            "--state-dir",
            "/tmp/s",
            "--secrets-dir",
            "/dev/shm/s",
            "--interval",
            "1m",
            "--metrics-listen",
            "127.0.0.1:9100",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ]);
        let config = Config::resolve(args, None).unwrap();
        assert_eq!(config.join.unwrap().address, "cp:7443");
        assert_eq!(config.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(config.secrets_dir, PathBuf::from("/dev/shm/s"));
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_level, "debug");
    }

    #[test]
    fn the_file_fills_what_flags_leave_out_and_flags_win() {
        let file = file(&format!(
            "join = \"{}\"\nstate_dir = \"/srv/argosy\"\nsecrets_dir = \"/run/s\"\ninterval = \"30s\"\n\
             metrics_listen = \"0.0.0.0:9100\"\nlog_format = \"json\"\nlog_level = \"warn\"\n",
            join("from-file")
        ));
        let only_file = Config::resolve(RunArgs::default(), file.clone()).unwrap();
        assert_eq!(only_file.join.unwrap().address, "from-file:7443");
        assert_eq!(only_file.state_dir, PathBuf::from("/srv/argosy"));
        assert_eq!(only_file.secrets_dir, PathBuf::from("/run/s"));
        assert_eq!(only_file.interval, Duration::from_secs(30));
        assert_eq!(
            only_file.metrics_listen,
            Some("0.0.0.0:9100".parse().unwrap())
        );
        assert_eq!(only_file.log_format, LogFormat::Json);
        assert_eq!(only_file.log_level, "warn");

        let args = parse_cli(&[
            "--join",
            &join("from-flag"),
            "--interval",
            "5s",
            "--log-format",
            "text",
        ]);
        let merged = Config::resolve(args, file).unwrap();
        assert_eq!(merged.join.unwrap().address, "from-flag:7443");
        assert_eq!(merged.interval, Duration::from_secs(5));
        assert_eq!(merged.log_format, LogFormat::Text);
        // Not given as flags: still from the file.
        assert_eq!(merged.state_dir, PathBuf::from("/srv/argosy"));
        assert_eq!(merged.log_level, "warn");
    }

    #[test]
    fn durations_are_humane_and_at_least_a_second() {
        for (text, expected) in [
            ("10s", 10_000),
            ("1m", 60_000),
            ("1500ms", 1_500),
            ("1s", 1_000),
            (" 2m 30s ", 150_000),
        ] {
            let args = RunArgs {
                interval: Some(text.into()),
                ..RunArgs::default()
            };
            let config = Config::resolve(args, None).unwrap();
            assert_eq!(config.interval, Duration::from_millis(expected), "{text}");
        }
        let args = RunArgs {
            interval: Some("500ms".into()),
            ..RunArgs::default()
        };
        let err = Config::resolve(args, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--interval (or ARGOSY_INTERVAL): 500ms is too short; the interval must be at least 1s"
        );
        for bad in ["10", "ten seconds", "", "-1s"] {
            let args = RunArgs {
                interval: Some(bad.into()),
                ..RunArgs::default()
            };
            assert!(
                matches!(
                    Config::resolve(args, None),
                    Err(ConfigError::Interval { .. })
                ),
                "{bad:?}"
            );
        }
        let err = Config::resolve(RunArgs::default(), file("interval = \"soon\"")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`interval` in /etc/argosy/agent.toml: \"soon\" is not a duration; write it like 10s, 500ms or 1m"
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused() {
        let path = PathBuf::from("/etc/argosy/agent.toml");
        let err = parse_file(&path, "intervall = \"10s\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "the config file /etc/argosy/agent.toml is not valid: unknown field `intervall`"
            ),
            "{text}"
        );
        assert!(matches!(
            parse_file(&path, "interval = 10\n"),
            Err(ConfigError::ParseFile { .. })
        ));
        assert!(matches!(
            parse_file(&path, "interval = \n"),
            Err(ConfigError::ParseFile { .. })
        ));
        assert_eq!(parse_file(&path, "").unwrap(), FileConfig::default());
    }

    #[test]
    fn bad_values_name_their_origin_and_never_echo_the_token() {
        let args = RunArgs {
            join: Some("argosy://cp:7443/?token=id.topsecret".into()),
            ..RunArgs::default()
        };
        let err = Config::resolve(args, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("--join (or ARGOSY_JOIN): the join string has no ca="),
            "{text}"
        );
        assert!(!text.contains("topsecret"));

        let args = RunArgs {
            metrics_listen: Some("localhost".into()),
            ..RunArgs::default()
        };
        assert!(matches!(
            Config::resolve(args, None),
            Err(ConfigError::MetricsListen { .. })
        ));
        let args = RunArgs {
            log_format: Some("yaml".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            Config::resolve(args, None).unwrap_err().to_string(),
            "--log-format (or ARGOSY_LOG_FORMAT): unknown log format \"yaml\"; use text or json"
        );
        let err = Config::resolve(RunArgs::default(), file("log_level = \"[[[\"")).unwrap_err();
        assert!(matches!(err, ConfigError::LogLevel { .. }), "{err}");
    }

    #[test]
    fn an_empty_join_means_none() {
        let args = RunArgs {
            join: Some("  ".into()),
            ..RunArgs::default()
        };
        assert_eq!(Config::resolve(args, None).unwrap().join, None);
    }

    #[test]
    fn the_config_file_is_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "interval = \"20s\"\n").unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        assert_eq!(
            Config::load(args).unwrap().interval,
            Duration::from_secs(20)
        );
        let args = RunArgs {
            config: Some(dir.path().join("missing.toml")),
            ..RunArgs::default()
        };
        assert!(matches!(
            Config::load(args),
            Err(ConfigError::ReadFile { .. })
        ));
    }

    #[test]
    fn debug_output_hides_the_join_token() {
        let args = RunArgs {
            join: Some(join("cp").replace("id.secret", "id.topsecret")),
            ..RunArgs::default()
        };
        let config = Config::resolve(args, None).unwrap();
        let text = format!("{config:?}");
        assert!(text.contains("cp:7443"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
