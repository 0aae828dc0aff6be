//! How the CLI reaches the API: address, CA trust and token from flags,
//! `ARGOSY_*` variables or the file `argosy login` writes; a TLS channel with
//! the bearer token attached to every call.

use super::output::Output;
use anyhow::{Context, bail};
use argosy_proto::join::CaFingerprint;
use argosy_proto::tls::{self, ServerTrust};
use argosy_proto::v1::api_token_service_client::ApiTokenServiceClient;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

/// Flags every API command takes.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientArgs {
    /// Control plane gRPC address (host:port).
    #[arg(long, env = "ARGOSY_ADDR")]
    pub(super) addr: Option<String>,
    /// API token.
    #[arg(long, env = "ARGOSY_TOKEN", hide_env_values = true)]
    pub(super) token: Option<String>,
    /// SHA-256 fingerprint of the control plane's CA (printed at its start).
    #[arg(long, env = "ARGOSY_CA_FINGERPRINT")]
    pub(super) ca_fingerprint: Option<String>,
    /// The control plane's CA certificate (PEM), instead of a fingerprint.
    #[arg(long, env = "ARGOSY_CA_FILE")]
    pub(super) ca_file: Option<PathBuf>,
    /// CLI config file (default: ~/.config/argosy/cli.toml).
    #[arg(long, env = "ARGOSY_CLI_CONFIG")]
    pub(super) cli_config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub(super) output: Output,
}

/// What `argosy login` saves.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CliConfig {
    pub(super) addr: Option<String>,
    pub(super) token: Option<String>,
    pub(super) ca_fingerprint: Option<String>,
}

fn config_path(explicit: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("argosy").join("cli.toml"))
}

fn read_config(path: &Option<PathBuf>) -> anyhow::Result<CliConfig> {
    let Some(path) = config_path(path) else {
        return Ok(CliConfig::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("{} is not a valid CLI config", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Adds the bearer token to every request.
#[derive(Clone)]
pub(super) struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the API, ready to make clients from.
pub(super) struct Connection {
    pub(super) channel: Channel,
    pub(super) bearer: Bearer,
    pub(super) output: Output,
}

impl Connection {
    pub(super) fn client<C>(&self, make: impl FnOnce(Channel, Bearer) -> C) -> C {
        make(self.channel.clone(), self.bearer.clone())
    }
}

fn trust(fingerprint: Option<&str>, ca_file: Option<&PathBuf>) -> anyhow::Result<ServerTrust> {
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let cert = tls::certificates_from_pem(&pem, "the CA file")?.remove(0);
        return Ok(ServerTrust::Ca(cert));
    }
    match fingerprint {
        Some(fp) => Ok(ServerTrust::Pinned(fp.parse::<CaFingerprint>()?)),
        None => bail!(
            "no way to verify the control plane: pass --ca-fingerprint (printed when the control plane starts) or --ca-file, or run `argosy login` once"
        ),
    }
}

/// Connects using flags, environment and the saved config, in that order.
pub(super) fn connect(args: &ClientArgs) -> anyhow::Result<Connection> {
    let saved = read_config(&args.cli_config)?;
    let addr = args.addr.clone().or(saved.addr).context(
        "no control-plane address: pass --addr host:7443, set ARGOSY_ADDR, or run `argosy login`",
    )?;
    let fingerprint = args.ca_fingerprint.clone().or(saved.ca_fingerprint);
    let trust = trust(fingerprint.as_deref(), args.ca_file.as_ref())?;
    let token = args.token.clone().or(saved.token);
    let bearer = match token {
        Some(token) => Some(
            AsciiMetadataValue::try_from(format!("Bearer {}", token.trim()))
                .context("the API token contains characters that cannot be sent")?,
        ),
        None => None,
    };
    let channel = tls::channel(&addr, tls::client_config(trust, None)?)?;
    Ok(Connection {
        channel,
        bearer: Bearer(bearer),
        output: args.output,
    })
}

/// Turns a gRPC status into a one-line error for people.
pub(super) fn status_error(status: tonic::Status) -> anyhow::Error {
    use std::error::Error as _;
    let mut message = status.message().to_owned();
    let transport = matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    );
    if let Some(source) = status.source().filter(|_| message.is_empty() || transport) {
        message = format!("{message} ({})", tls::error_chain(source));
    }
    anyhow::anyhow!("{message} [{:?}]", status.code())
}

#[derive(Debug, Args)]
pub(super) struct LoginArgs {
    /// Log in as this user with a password (prompted for) and save the
    /// session token, instead of saving an API token.
    #[arg(long)]
    pub(super) user: Option<String>,
    #[command(flatten)]
    pub(super) password: super::users::PasswordInput,
    /// How long the session lasts (at most 7d).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub(super) ttl: std::time::Duration,
    #[command(flatten)]
    pub(super) client: ClientArgs,
}

/// `argosy login`: checks the token, then saves address, CA and token;
/// with `--user`, logs in with a password and saves the session token.
pub(super) async fn login(args: LoginArgs) -> anyhow::Result<()> {
    if let Some(user) = &args.user {
        return super::users::login(user, &args.password, args.ttl, &args.client).await;
    }
    let args = args.client;
    let connection = connect(&args)?;
    let mut client = connection.client(ApiTokenServiceClient::with_interceptor);
    let me = client
        .who_am_i(argosy_proto::v1::WhoAmIRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let path = save_config(&args, args.token.clone())?;
    println!(
        "logged in as {:?} (role {}); saved to {}",
        me.name,
        crate::dto::role_name(me.role),
        path.display()
    );
    Ok(())
}

/// Saves address, CA fingerprint and `token` (each falling back to what is
/// saved) to the CLI config, readable by its owner only; returns its path.
pub(super) fn save_config(args: &ClientArgs, token: Option<String>) -> anyhow::Result<PathBuf> {
    let path = config_path(&args.cli_config)
        .context("cannot find a home folder for the CLI config; pass --cli-config")?;
    let saved = read_config(&args.cli_config)?;
    let config = CliConfig {
        addr: args.addr.clone().or(saved.addr),
        token: token.or(saved.token),
        ca_fingerprint: args.ca_fingerprint.clone().or(saved.ca_fingerprint),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_private(&path, &toml::to_string(&config)?)?;
    Ok(path)
}

/// Removes the saved token from the CLI config (address and CA stay);
/// returns the config's path if it held one.
pub(super) fn forget_saved_token(args: &ClientArgs) -> anyhow::Result<Option<PathBuf>> {
    let mut saved = read_config(&args.cli_config)?;
    let Some(path) = config_path(&args.cli_config).filter(|_| saved.token.is_some()) else {
        return Ok(None);
    };
    saved.token = None;
    write_private(&path, &toml::to_string(&saved)?)?;
    Ok(Some(path))
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
