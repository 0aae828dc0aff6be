//! The control plane's configuration: flags (mirrored by `ARGOSY_*`
//! environment variables), parsed once and validated into [`ServerConfig`].

use crate::store::Retention;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `argosy server` and `argosy dev`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Folder for the embedded SQLite store and local state.
    #[arg(long, env = "ARGOSY_DATA_DIR", default_value = "./argosy-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://…) for production; SQLite in --data-dir when absent.
    #[arg(long, env = "ARGOSY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// gRPC listener for agents and automation (always TLS).
    #[arg(long, env = "ARGOSY_GRPC_LISTEN", default_value = "0.0.0.0:7443")]
    pub grpc_listen: SocketAddr,
    /// HTTP listener for the dashboard, REST API, /metrics and /install.sh.
    #[arg(long, env = "ARGOSY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// host:port agents dial, written into join strings. Defaults to this
    /// machine's hostname and the gRPC port.
    #[arg(long, env = "ARGOSY_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Base URL hosts fetch /install.sh and the agent from. Defaults to the
    /// HTTP listener's address.
    #[arg(long, env = "ARGOSY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Lifetime of agent client certificates; agents renew at two thirds.
    #[arg(long, env = "ARGOSY_AGENT_CERT_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub agent_cert_ttl: Duration,
    /// A host is offline after this many missed sample intervals.
    #[arg(long, env = "ARGOSY_OFFLINE_AFTER_INTERVALS", default_value_t = 3)]
    pub offline_after_intervals: u32,
    /// How long raw samples are kept.
    #[arg(long, env = "ARGOSY_RETENTION_RAW", default_value = "48h", value_parser = humantime::parse_duration)]
    pub retention_raw: Duration,
    /// How long 1-minute rollups are kept.
    #[arg(long, env = "ARGOSY_RETENTION_MINUTE", default_value = "14d", value_parser = humantime::parse_duration)]
    pub retention_minute: Duration,
    /// How long 1-hour rollups are kept.
    #[arg(long, env = "ARGOSY_RETENTION_HOUR", default_value = "400d", value_parser = humantime::parse_duration)]
    pub retention_hour: Duration,
    /// Folder with argosy-agent binaries to serve; defaults to this binary's folder.
    #[arg(long, env = "ARGOSY_AGENT_BINARY_DIR")]
    pub agent_binary_dir: Option<PathBuf>,
    /// How long a host may stay offline before its allocations are started
    /// again on other hosts.
    #[arg(long, env = "ARGOSY_RESCHEDULE_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reschedule_grace: Duration,
    /// Serve plain HTTP on a non-loopback address (the dashboard and API
    /// tokens then cross the network unencrypted). Off by default.
    #[arg(long, env = "ARGOSY_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    /// The master key that seals secrets at rest: base64 of 32 bytes. Takes
    /// precedence over a passphrase and the key file `<data-dir>/master.key`
    /// (created on first start when no other source is given). Prefer the
    /// environment variable: flags show in `ps`.
    #[arg(long, env = "ARGOSY_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<crate::crypto::SecretText>,
    /// A file holding the unseal passphrase the master key is derived from
    /// (argon2id); one trailing newline is ignored.
    #[arg(long, env = "ARGOSY_UNSEAL_PASSPHRASE_FILE")]
    pub unseal_passphrase_file: Option<PathBuf>,
    /// The unseal passphrase itself (set ARGOSY_UNSEAL_PASSPHRASE rather
    /// than the flag, which shows in `ps`).
    #[arg(
        long,
        env = "ARGOSY_UNSEAL_PASSPHRASE",
        hide_env_values = true,
        hide = true
    )]
    pub unseal_passphrase: Option<crate::crypto::SecretText>,
    /// How many versions of each secret are kept; older ones are deleted
    /// when a new version is set.
    #[arg(long, env = "ARGOSY_SECRET_VERSIONS_KEPT", default_value_t = crate::crypto::DEFAULT_VERSIONS_KEPT)]
    pub secret_versions_kept: u32,
    /// Answer DNS (UDP) here for --dns-zone: routes' hostnames resolve to
    /// the ingresses of the regions that serve them. Off when absent.
    #[arg(long, env = "ARGOSY_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,
    /// The zone delegated to the control plane (e.g. apps.example.com).
    #[arg(long, env = "ARGOSY_DNS_ZONE")]
    pub dns_zone: Option<String>,
    /// Clients in this network are in this region, for DNS answers:
    /// CIDR=REGION, repeatable (e.g. 10.1.0.0/16=eu-west).
    #[arg(long = "dns-region", env = "ARGOSY_DNS_REGIONS", value_delimiter = ',')]
    pub dns_regions: Vec<String>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "--http-listen {0} is not a loopback address: the dashboard and API tokens would cross the network unencrypted. Put a TLS proxy in front and listen on 127.0.0.1, or pass --allow-insecure-http if you accept that"
    )]
    InsecureHttp(SocketAddr),
    #[error("--agent-cert-ttl must be between 10 seconds and 365 days (got {0:?})")]
    CertTtl(Duration),
    #[error("--offline-after-intervals must be at least 1")]
    OfflineAfter,
    #[error("--secret-versions-kept must be between 1 and 1000 (got {0})")]
    SecretVersionsKept(u32),
    #[error(
        "--reschedule-grace must be at least 1s (got {0:?}): a shorter grace moves workloads on every network blip"
    )]
    RescheduleGrace(Duration),
    #[error("--advertise-addr {0:?} must be host:port")]
    AdvertiseAddr(String),
    #[error("--public-url {0:?} must start with http:// or https://")]
    PublicUrl(String),
    #[error(
        "--dns-listen needs --dns-zone: the zone delegated to the control plane (e.g. apps.example.com)"
    )]
    DnsZoneMissing,
    #[error("--dns-zone {0:?} is not a DNS name (e.g. apps.example.com)")]
    DnsZone(String),
    #[error(transparent)]
    DnsRegion(#[from] crate::routing::dns::BadRegionRule),
    #[error(
        "retention must grow from raw to minute to hour rollups (raw {raw:?}, minute {minute:?}, hour {hour:?})"
    )]
    Retention {
        raw: Duration,
        minute: Duration,
        hour: Duration,
    },
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Validated settings derived from [`ServerArgs`].
#[derive(Debug, Clone)]
pub struct Validated {
    pub advertise_grpc: String,
    pub public_http_url: String,
    pub agent_cert_ttl_ms: i64,
    pub retention: Retention,
    /// Extra names for the server certificate (the advertised host).
    pub server_names: Vec<String>,
    /// What the DNS listener answers for, when `--dns-listen` is given.
    pub dns: Option<crate::routing::dns_server::DnsSettings>,
}

impl ServerArgs {
    /// Checks the flags; `hostname` is this machine's name for defaults.
    pub fn validate(&self, hostname: &str) -> Result<Validated, ConfigError> {
        if !self.http_listen.ip().is_loopback() && !self.allow_insecure_http {
            return Err(ConfigError::InsecureHttp(self.http_listen));
        }
        let ttl = self.agent_cert_ttl;
        if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(365 * 24 * 3600) {
            return Err(ConfigError::CertTtl(ttl));
        }
        if self.offline_after_intervals == 0 {
            return Err(ConfigError::OfflineAfter);
        }
        if !(1..=1000).contains(&self.secret_versions_kept) {
            return Err(ConfigError::SecretVersionsKept(self.secret_versions_kept));
        }
        if self.reschedule_grace < Duration::from_secs(1) {
            return Err(ConfigError::RescheduleGrace(self.reschedule_grace));
        }
        if !(self.retention_raw <= self.retention_minute
            && self.retention_minute <= self.retention_hour)
        {
            return Err(ConfigError::Retention {
                raw: self.retention_raw,
                minute: self.retention_minute,
                hour: self.retention_hour,
            });
        }
        let advertise_grpc = match &self.advertise_addr {
            Some(addr) => {
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(ConfigError::AdvertiseAddr(addr.clone()));
                }
                addr.clone()
            }
            None if self.grpc_listen.ip().is_unspecified() => {
                format!("{hostname}:{}", self.grpc_listen.port())
            }
            None => self.grpc_listen.to_string(),
        };
        let public_http_url = match &self.public_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(url) => return Err(ConfigError::PublicUrl(url.clone())),
            None => format!("http://{}", self.http_listen),
        };
        let advertised_host = advertise_grpc
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .unwrap_or_default();
        let dns = match (&self.dns_listen, &self.dns_zone) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::DnsZoneMissing),
            (Some(_), Some(zone)) => {
                let zone = crate::routing::hosts::hostname(zone)
                    .ok()
                    .filter(|z| !z.starts_with('*'))
                    .ok_or_else(|| ConfigError::DnsZone(zone.clone()))?;
                let regions = self
                    .dns_regions
                    .iter()
                    .map(|rule| rule.parse())
                    .collect::<Result<Vec<_>, _>>()?;
                Some(crate::routing::dns_server::DnsSettings { zone, regions })
            }
        };
        let mut server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !server_names.contains(&advertised_host) {
            server_names.push(advertised_host);
        }
        Ok(Validated {
            advertise_grpc,
            public_http_url,
            agent_cert_ttl_ms: ms(ttl),
            retention: Retention {
                raw_ms: ms(self.retention_raw),
                minute_ms: ms(self.retention_minute),
                hour_ms: ms(self.retention_hour),
            },
            server_names,
            dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse(flags: &[&str]) -> ServerArgs {
        let mut argv = vec!["argosy"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_follow_the_design() {
        let args = parse(&[]);
        assert_eq!(args.grpc_listen.to_string(), "0.0.0.0:7443");
        assert_eq!(args.http_listen.to_string(), "127.0.0.1:8080");
        let v = args.validate("cp1").unwrap();
        assert_eq!(v.advertise_grpc, "cp1:7443");
        assert_eq!(v.public_http_url, "http://127.0.0.1:8080");
        assert_eq!(v.agent_cert_ttl_ms, 24 * 3_600_000);
        assert_eq!(args.secret_versions_kept, 10);
        assert!(args.master_key.is_none() && args.unseal_passphrase_file.is_none());
        assert!(v.server_names.contains(&"cp1".to_owned()));
    }

    #[test]
    fn dns_needs_a_zone_and_well_formed_region_rules() {
        assert!(parse(&[]).validate("h").unwrap().dns.is_none());
        assert_eq!(
            parse(&["--dns-listen", "127.0.0.1:5353"])
                .validate("h")
                .unwrap_err(),
            ConfigError::DnsZoneMissing
        );
        assert_eq!(
            parse(&["--dns-listen", "127.0.0.1:5353", "--dns-zone", "*.x.com"])
                .validate("h")
                .unwrap_err(),
            ConfigError::DnsZone("*.x.com".to_owned())
        );
        let bad = parse(&[
            "--dns-listen",
            "127.0.0.1:5353",
            "--dns-zone",
            "apps.example.com",
            "--dns-region",
            "10.0.0.0=eu",
        ]);
        assert_eq!(
            bad.validate("h").unwrap_err().to_string(),
            "--dns-region \"10.0.0.0=eu\" is not CIDR=REGION (for example 10.1.0.0/16=eu-west, or 127.0.0.3/32=us-east)"
        );
        let good = parse(&[
            "--dns-listen",
            "127.0.0.1:5353",
            "--dns-zone",
            "Apps.Example.com.",
            "--dns-region",
            "10.1.0.0/16=eu-west,10.2.0.0/16=us-east",
        ])
        .validate("h")
        .unwrap()
        .dns
        .unwrap();
        assert_eq!(good.zone, "apps.example.com");
        assert_eq!(good.regions.len(), 2);
        assert_eq!(good.regions[1].region, "us-east");
    }

    #[test]
    fn refuses_plain_http_on_a_public_interface() {
        let args = parse(&["--http-listen", "0.0.0.0:8080"]);
        assert_eq!(
            args.validate("h").unwrap_err(),
            ConfigError::InsecureHttp("0.0.0.0:8080".parse().unwrap())
        );
        let args = parse(&["--http-listen", "0.0.0.0:8080", "--allow-insecure-http"]);
        assert!(args.validate("h").is_ok());
    }

    #[test]
    fn refuses_bad_values() {
        assert!(matches!(
            parse(&["--agent-cert-ttl", "1s"]).validate("h"),
            Err(ConfigError::CertTtl(_))
        ));
        assert_eq!(
            parse(&["--offline-after-intervals", "0"])
                .validate("h")
                .unwrap_err(),
            ConfigError::OfflineAfter
        );
        assert!(matches!(
            parse(&["--reschedule-grace", "100ms"]).validate("h"),
            Err(ConfigError::RescheduleGrace(_))
        ));
        assert!(matches!(
            parse(&["--advertise-addr", "nohost"]).validate("h"),
            Err(ConfigError::AdvertiseAddr(_))
        ));
        assert_eq!(
            parse(&["--secret-versions-kept", "0"])
                .validate("h")
                .unwrap_err(),
            ConfigError::SecretVersionsKept(0)
        );
        assert!(matches!(
            parse(&["--public-url", "ftp://x"]).validate("h"),
            Err(ConfigError::PublicUrl(_))
        ));
        assert!(matches!(
            parse(&["--retention-raw", "30d", "--retention-minute", "1d"]).validate("h"),
            Err(ConfigError::Retention { .. })
        ));
    }

    #[test]
    fn master_keys_and_passphrases_never_show_in_debug_output() {
        let args = parse(&[
            "--master-key",
            "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwMTIzNDU2",
            "--unseal-passphrase",
            "correct horse battery",
        ]);
        let shown = format!("{args:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn explicit_listen_address_is_advertised() {
        let v = parse(&["--grpc-listen", "127.0.0.1:9443"])
            .validate("h")
            .unwrap();
        assert_eq!(v.advertise_grpc, "127.0.0.1:9443");
    }
}
