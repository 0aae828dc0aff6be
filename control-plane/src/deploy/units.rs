//! Pure parsers for the values people write in service specs: sizes, CPU
//! amounts, durations, and compose-style port and volume specs. No I/O;
//! every error is a user-facing sentence that quotes the input and says
//! what to write instead (the caller prefixes the field path).
//!
//! # Size units
//!
//! Unit letters are case-insensitive (`64mib` = `64MiB`, `512m` = `512M`).
//! The `i` decides the base, as in Kubernetes and the IEC standard:
//!
//! | written | factor |
//! | --- | --- |
//! | nothing, `B` | 1 (plain bytes, whole numbers only) |
//! | `K`, `KB` / `Ki`, `KiB` | 1000 / 1024 |
//! | `M`, `MB` / `Mi`, `MiB` | 1000² / 1024² |
//! | `G`, `GB` / `Gi`, `GiB` | 1000³ / 1024³ |
//! | `T`, `TB` / `Ti`, `TiB` | 1000⁴ / 1024⁴ |
//! | `P`, `PB` / `Pi`, `PiB` | 1000⁵ / 1024⁵ |
//!
//! Note for Docker users: `docker run -m 512m` means 512 MiB; here `512m`
//! is 512 MB (about 4.6 % less). Write `512MiB` (or `512Mi`) for Docker's
//! meaning. Fractions are allowed with a unit (`1.5GiB`) and rounded down
//! to whole bytes.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::model::{PortMapping, Protocol, SecretRef, SecretVersion, VolumeMount, VolumeSource};

/// Unit suffixes (lower-cased) and their factors. See the module docs.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1000),
    ("kb", 1000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1000 * 1000),
    ("mb", 1000 * 1000),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1000 * 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1000 * 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
    ("p", 1000 * 1000 * 1000 * 1000 * 1000),
    ("pb", 1000 * 1000 * 1000 * 1000 * 1000),
    ("pi", 1 << 50),
    ("pib", 1 << 50),
];

/// More fractional digits than this is not a size anyone means.
const MAX_FRACTION_DIGITS: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{0:?} is not a size, write e.g. 64MiB")]
    Invalid(String),
    #[error("{0:?} is not a size: sizes cannot be negative, write e.g. 64MiB")]
    Negative(String),
    #[error("{0:?} is not a whole number of bytes, add a unit, e.g. 1.5GiB")]
    FractionalBytes(String),
    #[error("{0:?} is too large, sizes stop at 16EiB")]
    TooLarge(String),
}

/// A decimal number as written: integer part and fraction, exactly.
struct Decimal {
    int: u128,
    frac: u128,
    frac_digits: u32,
}

enum NumberError {
    Invalid,
    TooLarge,
}

/// `digits[.digits]`, nothing else (no sign, no exponent).
fn parse_decimal(text: &str) -> Result<Decimal, NumberError> {
    let (int_text, frac_text) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_text) {
        return Err(NumberError::Invalid);
    }
    let int = int_text
        .parse::<u128>()
        .map_err(|_| NumberError::TooLarge)?;
    let (frac, frac_digits) = match frac_text {
        None => (0, 0),
        Some(f) if all_digits(f) && f.len() <= MAX_FRACTION_DIGITS => (
            f.parse::<u128>().map_err(|_| NumberError::Invalid)?,
            f.len() as u32,
        ),
        Some(_) => return Err(NumberError::Invalid),
    };
    Ok(Decimal {
        int,
        frac,
        frac_digits,
    })
}

/// Splits `"1.5 GiB"` into `("1.5", "GiB")`.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// Parses a size in bytes: `64MiB`, `1GiB`, `512M`, `1.5G`, `100KB`,
/// `1048576`. Zero is accepted (`0`); callers decide where it is meaningless.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let text = input.trim();
    if text.starts_with('-') {
        return Err(SizeError::Negative(input.to_owned()));
    }
    let (number, unit) = split_number(text);
    let unit = unit.to_ascii_lowercase();
    let Some(&(_, factor)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(SizeError::Invalid(input.to_owned()));
    };
    let n = match parse_decimal(number) {
        Ok(n) => n,
        Err(NumberError::Invalid) => return Err(SizeError::Invalid(input.to_owned())),
        Err(NumberError::TooLarge) => return Err(SizeError::TooLarge(input.to_owned())),
    };
    if factor == 1 && n.frac != 0 {
        return Err(SizeError::FractionalBytes(input.to_owned()));
    }
    let too_large = || SizeError::TooLarge(input.to_owned());
    let whole = n
        .int
        .checked_mul(u128::from(factor))
        .ok_or_else(too_large)?;
    // frac < 10^18 and factor < 2^51, so this product fits in u128.
    let part = n.frac * u128::from(factor) / 10u128.pow(n.frac_digits);
    let total = whole.checked_add(part).ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

/// Renders bytes the shortest exact way: `6MiB`, `1500MB`, `1000B`… The
/// result parses back to the same number.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    const NAMES: &[(&str, u64)] = &[
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("PB", 1_000_000_000_000_000),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ];
    NAMES
        .iter()
        .find(|(_, f)| bytes.is_multiple_of(*f))
        .map(|(name, f)| format!("{}{name}", bytes / f))
        .unwrap_or_else(|| format!("{bytes}B"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    #[error("{0:?} is not a CPU amount, write cores (0.5, 2) or millicores (250m)")]
    Invalid(String),
    #[error("{0:?} is not a CPU amount: it cannot be negative, write e.g. 0.5 or 250m")]
    Negative(String),
    #[error("{0:?} is no CPU at all, write more than 0, e.g. 0.5 or 250m")]
    Zero(String),
    #[error("{0:?} is finer than a thousandth of a core, write e.g. 0.25 or 250m")]
    TooPrecise(String),
    #[error("{0:?} is too large a CPU amount, write at most 4294967 cores")]
    TooLarge(String),
}

/// Parses a CPU amount into thousandths of a core: `0.5` → 500, `2` →
/// 2000, `250m` → 250. Zero is refused: as a limit it would mean "never
/// run"; leave the field out for no limit.
pub fn parse_cpu(input: &str) -> Result<u32, CpuError> {
    let text = input.trim();
    if text.starts_with('-') {
        return Err(CpuError::Negative(input.to_owned()));
    }
    let (number, unit) = match text.strip_suffix('m') {
        Some(n) => (n.trim_end(), 1),
        None => (text, 1000),
    };
    let n = match parse_decimal(number) {
        Ok(n) => n,
        Err(NumberError::Invalid) => return Err(CpuError::Invalid(input.to_owned())),
        Err(NumberError::TooLarge) => return Err(CpuError::TooLarge(input.to_owned())),
    };
    let scale = 10u128.pow(n.frac_digits);
    let frac_millis = n.frac * unit;
    if frac_millis % scale != 0 {
        return Err(CpuError::TooPrecise(input.to_owned()));
    }
    let millis = n
        .int
        .checked_mul(unit)
        .and_then(|m| m.checked_add(frac_millis / scale))
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(|| CpuError::TooLarge(input.to_owned()))?;
    if millis == 0 {
        return Err(CpuError::Zero(input.to_owned()));
    }
    Ok(millis)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration, write e.g. 10s, 1m30s or 500ms")]
    Invalid(String),
}

/// Parses a duration with the `humantime` syntax: `10s`, `1m30s`, `500ms`,
/// `1h 30m`. A bare number has no unit and is refused (`10` → write `10s`);
/// only `0` may stand alone. Zero is accepted; callers decide.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    humantime::parse_duration(text).map_err(|_| DurationError::Invalid(input.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error(
        "{0:?} is not a port mapping, write e.g. \"8080:80\", \"127.0.0.1:8080:80\" or \"53:53/udp\""
    )]
    Invalid(String),
    #[error("{spec:?}: port {port} is out of range, use 1 to 65535")]
    OutOfRange { spec: String, port: String },
    #[error("{spec:?}: {protocol:?} is not a protocol, write tcp or udp")]
    UnknownProtocol { spec: String, protocol: String },
    #[error("{spec:?}: {ip:?} is not an IP address, write e.g. 127.0.0.1 or [::1]")]
    Ip { spec: String, ip: String },
    #[error(
        "{0:?} leaves the host port empty, and Argosy does not pick random host ports: write one, e.g. \"127.0.0.1:8080:80\""
    )]
    RandomHostPort(String),
    #[error("{spec:?}: the range {range} runs backwards, write low-high")]
    BackwardsRange { spec: String, range: String },
    #[error("{0:?}: the host range and the container range have different lengths")]
    RangeMismatch(String),
}

/// A port number from a number written as such (long form `container: 80`).
pub fn port_number(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// `tcp` or `udp`, case-insensitive.
pub fn parse_protocol(text: &str) -> Option<Protocol> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

/// An IPv4 or IPv6 address, the latter optionally in brackets.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    inner.parse().ok()
}

/// `80` or `8000-8010`, each port 1–65535.
fn parse_port_range(spec: &str, text: &str) -> Result<(u16, u16), PortError> {
    let one = |t: &str| -> Result<u16, PortError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PortError::Invalid(spec.to_owned()));
        }
        t.parse::<u32>()
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| PortError::OutOfRange {
                spec: spec.to_owned(),
                port: t.to_owned(),
            })
    };
    match text.split_once('-') {
        None => one(text).map(|p| (p, p)),
        Some((lo, hi)) => {
            let (lo, hi) = (one(lo)?, one(hi)?);
            if lo > hi {
                return Err(PortError::BackwardsRange {
                    spec: spec.to_owned(),
                    range: text.to_owned(),
                });
            }
            Ok((lo, hi))
        }
    }
}

/// Parses a compose-style port spec, `[[IP:]HOST:]CONTAINER[/PROTOCOL]`:
///
/// - `"80"`: container port 80, not published on the host;
/// - `"8080:80"`: host port 8080 on all addresses to container port 80;
/// - `"127.0.0.1:8080:80"`, `"[::1]:8080:80"`: only on that address;
/// - `"53:53/udp"`: UDP (default TCP);
/// - `"8000-8002:9000-9002"`: ranges of the same length, one mapping each.
///
/// Random host ports (`"127.0.0.1::80"`) are refused: a fleet manager must
/// know which host ports a service occupies to place it.
pub fn parse_port_spec(input: &str) -> Result<Vec<PortMapping>, PortError> {
    let spec = input.trim();
    let invalid = || PortError::Invalid(input.to_owned());
    let (mapping, protocol) = match spec.rsplit_once('/') {
        Some((m, p)) => {
            let protocol = parse_protocol(p).ok_or_else(|| PortError::UnknownProtocol {
                spec: input.to_owned(),
                protocol: p.to_owned(),
            })?;
            (m, protocol)
        }
        None => (spec, Protocol::Tcp),
    };
    // The host IP, bracketed for IPv6 (which has colons of its own).
    let (host_ip, rest) = if let Some(after) = mapping.strip_prefix('[') {
        let (ip, rest) = after.split_once(']').ok_or_else(invalid)?;
        let rest = rest.strip_prefix(':').ok_or_else(invalid)?;
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = mapping.split(':').collect();
        match parts.len() {
            1 | 2 => (None, mapping),
            3 => (Some(parts[0]), &mapping[parts[0].len() + 1..]),
            _ => return Err(invalid()),
        }
    };
    let host_ip = match host_ip {
        None => None,
        Some(ip) => Some(parse_ip(ip).ok_or_else(|| PortError::Ip {
            spec: input.to_owned(),
            ip: ip.to_owned(),
        })?),
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None if host_ip.is_some() => return Err(invalid()),
        None => (None, rest),
    };
    if host == Some("") {
        return Err(PortError::RandomHostPort(input.to_owned()));
    }
    let (c_lo, c_hi) = parse_port_range(input, container)?;
    let host = host.map(|h| parse_port_range(input, h)).transpose()?;
    if let Some((h_lo, h_hi)) = host
        && h_hi - h_lo != c_hi - c_lo
    {
        return Err(PortError::RangeMismatch(input.to_owned()));
    }
    Ok((c_lo..=c_hi)
        .enumerate()
        .map(|(i, container_port)| PortMapping {
            container_port,
            host_port: host.map(|(h_lo, _)| h_lo + i as u16),
            host_ip,
            protocol,
        })
        .collect())
}

/// The short form of one mapping, which [`parse_port_spec`] reads back
/// (a host IP without a host port has no short form and is left out).
pub fn format_port_mapping(mapping: &PortMapping) -> String {
    let mut out = String::new();
    if let Some(host) = mapping.host_port {
        match mapping.host_ip {
            Some(IpAddr::V6(ip)) => out.push_str(&format!("[{ip}]:")),
            Some(ip) => out.push_str(&format!("{ip}:")),
            None => {}
        }
        out.push_str(&format!("{host}:"));
    }
    out.push_str(&mapping.container_port.to_string());
    if mapping.protocol == Protocol::Udp {
        out.push_str("/udp");
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{0:?} is not a volume, write e.g. \"data:/var/lib/data\" or \"/srv/www:/usr/share/www:ro\""
    )]
    Invalid(String),
    #[error("{0:?} has no source, name the volume, e.g. \"data:{0}\"")]
    Anonymous(String),
    #[error("bind source {0:?} is not absolute, write the full host path, e.g. /srv/data")]
    RelativeSource(String),
    #[error("source {0:?} contains '..', write the path without it")]
    SourceDotDot(String),
    #[error("target {0:?} contains '..', write the path without it")]
    TargetDotDot(String),
    #[error(
        "{0:?} is not a valid volume name, use 2 to 255 letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    Name(String),
    #[error("target {0:?} is not absolute, write e.g. /data")]
    RelativeTarget(String),
    #[error(
        "target \"/\" would hide the whole container filesystem, mount a directory, e.g. /data"
    )]
    RootTarget,
    #[error("mode {0:?} is unknown, write ro or rw")]
    Mode(String),
}

/// Which part of a volume an error is about (the long form names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumePart {
    Whole,
    Source,
    Target,
    Mode,
}

impl VolumeError {
    pub fn part(&self) -> VolumePart {
        match self {
            VolumeError::Invalid(_) | VolumeError::Anonymous(_) => VolumePart::Whole,
            VolumeError::RelativeSource(_)
            | VolumeError::SourceDotDot(_)
            | VolumeError::Name(_) => VolumePart::Source,
            VolumeError::RelativeTarget(_)
            | VolumeError::TargetDotDot(_)
            | VolumeError::RootTarget => VolumePart::Target,
            VolumeError::Mode(_) => VolumePart::Mode,
        }
    }
}

/// Docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, capped at 255.
pub fn is_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() >= 2
        && name.len() <= 255
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn has_dot_dot(path: &str) -> bool {
    Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
}

/// Checks and builds a mount from its parts. A source starting with `/` is
/// a bind mount of that host path; anything else is a named volume. Paths
/// with `..` are refused on both sides, so that a policy that checks path
/// prefixes (`/srv/...`) cannot be walked around.
pub fn volume_mount(
    source: &str,
    target: &str,
    read_only: bool,
) -> Result<VolumeMount, VolumeError> {
    let source = if source.starts_with('/') {
        if has_dot_dot(source) {
            return Err(VolumeError::SourceDotDot(source.to_owned()));
        }
        VolumeSource::Bind(PathBuf::from(source))
    } else if source.contains('/') || source.starts_with('.') || source.starts_with('~') {
        return Err(VolumeError::RelativeSource(source.to_owned()));
    } else if is_volume_name(source) {
        VolumeSource::Named(source.to_owned())
    } else {
        return Err(VolumeError::Name(source.to_owned()));
    };
    if !target.starts_with('/') {
        return Err(VolumeError::RelativeTarget(target.to_owned()));
    }
    if has_dot_dot(target) {
        return Err(VolumeError::TargetDotDot(target.to_owned()));
    }
    if Path::new(target) == Path::new("/") {
        return Err(VolumeError::RootTarget);
    }
    Ok(VolumeMount {
        source,
        target: target.to_owned(),
        read_only,
    })
}

/// Parses a compose-style volume spec, `SOURCE:TARGET[:ro|rw]`:
/// `"data:/var/lib/postgresql/data"` (named volume),
/// `"/srv/www:/usr/share/www:ro"` (read-only bind mount). Anonymous
/// volumes (`"/data"` alone) are refused: give the volume a name so that
/// it survives the container.
pub fn parse_volume_spec(input: &str) -> Result<VolumeMount, VolumeError> {
    let spec = input.trim();
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] if target.starts_with('/') => {
            return Err(VolumeError::Anonymous(spec.to_owned()));
        }
        [source, target] => (*source, *target, "rw"),
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(VolumeError::Invalid(input.to_owned())),
    };
    if source.is_empty() || target.is_empty() {
        return Err(VolumeError::Invalid(input.to_owned()));
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => return Err(VolumeError::Mode(other.to_owned())),
    };
    volume_mount(source, target, read_only)
}

/// The short form of a mount, which [`parse_volume_spec`] reads back.
pub fn format_volume_mount(mount: &VolumeMount) -> String {
    let source = match &mount.source {
        VolumeSource::Named(name) => name.clone(),
        VolumeSource::Bind(path) => path.display().to_string(),
    };
    let mode = if mount.read_only { ":ro" } else { "" };
    format!("{source}:{}{mode}", mount.target)
}

/// The one rule for region names and label keys and values, at enrollment
/// and in specs: 1–63 letters, digits, `-`, `_`, `.`, `/`.
pub fn is_label_part(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// The secret store's rule for names (`crypto::vault::validate_name`):
/// 1–128 lowercase letters, digits, `-`, `_`, `.` and `/`, with no leading
/// or trailing `/`, no empty or `.` segment and no `..`.
pub fn is_secret_name(name: &str) -> bool {
    crate::crypto::vault::validate_name(name).is_ok()
}

/// Why a secret reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// The secret store's own explanation.
    #[error("{0}")]
    Name(String),
    #[error(
        "{text:?} does not pin a version, write a version number from 1 after '@', \
         e.g. {name}@3, or leave '@' out to follow the latest version"
    )]
    Version { text: String, name: String },
}

/// Parses a secret reference: `crm/db-password` follows the latest version,
/// `crm/api-key@3` pins version 3.
pub fn parse_secret_ref(text: &str) -> Result<SecretRef, SecretRefError> {
    let (name, version) = match text.rsplit_once('@') {
        None => (text, SecretVersion::Latest),
        Some((name, pin)) => {
            let pinned = pin
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 1 && pin.bytes().all(|b| b.is_ascii_digit()));
            match pinned {
                Some(version) => (name, SecretVersion::Pinned(version)),
                None => {
                    return Err(SecretRefError::Version {
                        text: text.to_owned(),
                        name: name.to_owned(),
                    });
                }
            }
        }
    };
    if let Err(error) = crate::crypto::vault::validate_name(name) {
        return Err(SecretRefError::Name(error.to_string()));
    }
    Ok(SecretRef {
        name: name.to_owned(),
        version,
    })
}

/// The file a secret is mounted as when the spec does not say: the last
/// segment of its name (`crm/db-password` → `db-password`).
pub fn default_secret_file(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Whether `file` can be a file directly under `/run/secrets`: a plain
/// name of 1–255 bytes, not `.` or `..`, with no `/` or NUL.
pub fn is_secret_file_name(file: &str) -> bool {
    (1..=255).contains(&file.len()) && file != "." && file != ".." && !file.contains(['/', '\0'])
}

/// Why a file mode was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a file mode, write 3 or 4 octal digits up to 0777 in quotes, e.g. \"0400\"")]
pub struct ModeError(pub String);

/// Parses a file mode written in octal: `"0400"`, `"400"`, `"0o440"`. Only
/// permission bits (up to `0777`): no setuid, setgid or sticky bit.
pub fn parse_file_mode(text: &str) -> Result<u32, ModeError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let ok = (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if ok && mode <= 0o777 => Ok(mode),
        _ => Err(ModeError(text.to_owned())),
    }
}

/// `0400`, the way modes are written.
pub fn format_file_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn secret_names_follow_the_secret_store() {
        for good in [
            "db",
            "crm/db-password",
            "a/b/c",
            "x.y_z-1",
            "v1.2",
            &"a".repeat(128),
        ] {
            assert!(is_secret_name(good), "{good:?} should be a name");
        }
        for bad in [
            "",
            "/crm",
            "crm/",
            "crm//db",
            "crm/../db",
            "a..b",
            "CRM/db",
            "crm db",
            "crm@db",
            "crm:db",
            "crm/./db",
            ".",
            &"a".repeat(129),
        ] {
            assert!(!is_secret_name(bad), "{bad:?} should not be a name");
        }
    }

    #[test]
    fn secret_references_follow_or_pin() {
        let latest = |name: &str| SecretRef {
            name: name.into(),
            version: SecretVersion::Latest,
        };
        let pinned = |name: &str, v| SecretRef {
            name: name.into(),
            version: SecretVersion::Pinned(v),
        };
        table(
            &[
                ("crm/db-password", Ok(latest("crm/db-password"))),
                ("crm/api-key@3", Ok(pinned("crm/api-key", 3))),
                ("k@4294967295", Ok(pinned("k", u32::MAX))),
                (
                    "crm/api-key@0",
                    Err(SecretRefError::Version {
                        text: "crm/api-key@0".into(),
                        name: "crm/api-key".into(),
                    }),
                ),
                (
                    "k@+3",
                    Err(SecretRefError::Version {
                        text: "k@+3".into(),
                        name: "k".into(),
                    }),
                ),
                (
                    "k@latest",
                    Err(SecretRefError::Version {
                        text: "k@latest".into(),
                        name: "k".into(),
                    }),
                ),
                (
                    "k@",
                    Err(SecretRefError::Version {
                        text: "k@".into(),
                        name: "k".into(),
                    }),
                ),
                (
                    "Crm/Key@2",
                    Err(SecretRefError::Name(
                        "secret name \"Crm/Key\" is not valid: it holds a character other than \
                         a-z, 0-9, '-', '_', '.' and '/'; use 1–128 lowercase letters, digits, \
                         '-', '_', '.' and '/' (as in crm/db-password)"
                            .into(),
                    )),
                ),
                (
                    "@2",
                    Err(SecretRefError::Name(
                        "secret name \"\" is not valid: it is empty; use 1–128 lowercase \
                         letters, digits, '-', '_', '.' and '/' (as in crm/db-password)"
                            .into(),
                    )),
                ),
            ],
            |text| parse_secret_ref(text),
        );
        assert_eq!(pinned("crm/api-key", 3).to_string(), "crm/api-key@3");
        assert_eq!(latest("crm/db-password").to_string(), "crm/db-password");
    }

    #[test]
    fn secret_files_and_modes() {
        assert_eq!(default_secret_file("crm/db-password"), "db-password");
        assert_eq!(default_secret_file("token"), "token");
        for good in ["db-password", "a.txt", ".env", "x y"] {
            assert!(is_secret_file_name(good), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "/a", "a\0b", &"f".repeat(256)] {
            assert!(!is_secret_file_name(bad), "{bad:?}");
        }
        table(
            &[
                ("0400", Ok(0o400)),
                ("400", Ok(0o400)),
                ("0o440", Ok(0o440)),
                ("0777", Ok(0o777)),
                ("0000", Ok(0)),
                ("4755", Err(ModeError("4755".into()))),
                ("0800", Err(ModeError("0800".into()))),
                ("40", Err(ModeError("40".into()))),
                ("00400", Err(ModeError("00400".into()))),
                ("r--", Err(ModeError("r--".into()))),
                ("", Err(ModeError(String::new()))),
            ],
            |text| parse_file_mode(text),
        );
        assert_eq!(format_file_mode(0o400), "0400");
        assert_eq!(format_file_mode(0o40), "0040");
    }

    const KI: u64 = 1 << 10;
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;

    /// Runs every row and reports all mismatches at once.
    fn table<I, O, R>(rows: &[(I, O)], f: impl Fn(&I) -> R)
    where
        I: std::fmt::Debug,
        O: std::fmt::Debug,
        R: PartialEq<O> + std::fmt::Debug,
    {
        let failures: Vec<String> = rows
            .iter()
            .filter_map(|(input, want)| {
                let got = f(input);
                (got != *want).then(|| format!("{input:?}: want {want:?}, got {got:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn sizes() {
        use SizeError::*;
        let s = |t: &str| t.to_owned();
        table(
            &[
                // plain bytes
                ("0", Ok(0)),
                ("1048576", Ok(MI)),
                ("1048576B", Ok(MI)),
                ("1 b", Ok(1)),
                // binary
                ("64MiB", Ok(64 * MI)),
                ("64mib", Ok(64 * MI)),
                ("64MIB", Ok(64 * MI)),
                ("64Mi", Ok(64 * MI)),
                ("1GiB", Ok(GI)),
                ("1gi", Ok(GI)),
                ("100KiB", Ok(100 * KI)),
                ("2TiB", Ok(2 << 40)),
                ("1PiB", Ok(1 << 50)),
                ("1.5GiB", Ok(3 * GI / 2)),
                ("0.5KiB", Ok(512)),
                ("0.3KiB", Ok(307)), // 307.2 rounded down
                // decimal
                ("512M", Ok(512_000_000)),
                ("512m", Ok(512_000_000)),
                ("512MB", Ok(512_000_000)),
                ("1.5G", Ok(1_500_000_000)),
                ("100KB", Ok(100_000)),
                ("100k", Ok(100_000)),
                ("3T", Ok(3_000_000_000_000)),
                ("1PB", Ok(1_000_000_000_000_000)),
                // spacing
                (" 64 MiB ", Ok(64 * MI)),
                ("1.0", Ok(1)),
                // limits
                ("18446744073709551615", Ok(u64::MAX)),
                (
                    "18446744073709551616",
                    Err(TooLarge(s("18446744073709551616"))),
                ),
                ("16384PiB", Err(TooLarge(s("16384PiB")))),
                ("16383.99PiB", Ok(18_446_732_814_710_483_189)),
                (
                    "99999999999999999999999999999999999999999",
                    Err(TooLarge(s("99999999999999999999999999999999999999999"))),
                ),
                // refused
                ("64XB", Err(Invalid(s("64XB")))),
                ("64 MiBs", Err(Invalid(s("64 MiBs")))),
                ("MiB", Err(Invalid(s("MiB")))),
                ("", Err(Invalid(s("")))),
                ("1..5G", Err(Invalid(s("1..5G")))),
                (".5G", Err(Invalid(s(".5G")))),
                ("5.G", Err(Invalid(s("5.G")))),
                ("1e9", Err(Invalid(s("1e9")))),
                ("+64MiB", Err(Invalid(s("+64MiB")))),
                ("0x40", Err(Invalid(s("0x40")))),
                (
                    "1.0000000000000000001G",
                    Err(Invalid(s("1.0000000000000000001G"))),
                ),
                ("-64MiB", Err(Negative(s("-64MiB")))),
                ("-1", Err(Negative(s("-1")))),
                ("1.5", Err(FractionalBytes(s("1.5")))),
                ("1.5B", Err(FractionalBytes(s("1.5B")))),
            ],
            |i| parse_size(i),
        );
    }

    /// Every spelling, in both cases, against its factor written out.
    #[test]
    fn every_size_unit() {
        let rows: &[(&str, u64)] = &[
            ("", 1),
            ("B", 1),
            ("K", 1_000),
            ("KB", 1_000),
            ("Ki", 1_024),
            ("KiB", 1_024),
            ("M", 1_000_000),
            ("MB", 1_000_000),
            ("Mi", 1_048_576),
            ("MiB", 1_048_576),
            ("G", 1_000_000_000),
            ("GB", 1_000_000_000),
            ("Gi", 1_073_741_824),
            ("GiB", 1_073_741_824),
            ("T", 1_000_000_000_000),
            ("TB", 1_000_000_000_000),
            ("Ti", 1_099_511_627_776),
            ("TiB", 1_099_511_627_776),
            ("P", 1_000_000_000_000_000),
            ("PB", 1_000_000_000_000_000),
            ("Pi", 1_125_899_906_842_624),
            ("PiB", 1_125_899_906_842_624),
        ];
        assert_eq!(rows.len(), SIZE_UNITS.len());
        for (unit, factor) in rows {
            for spelling in [unit.to_string(), unit.to_lowercase(), unit.to_uppercase()] {
                assert_eq!(
                    parse_size(&format!("3{spelling}")),
                    Ok(3 * factor),
                    "3{spelling}"
                );
            }
        }
    }

    #[test]
    fn size_errors_read_like_the_issue() {
        assert_eq!(
            parse_size("64XB").unwrap_err().to_string(),
            r#""64XB" is not a size, write e.g. 64MiB"#
        );
        assert_eq!(
            parse_size("-1G").unwrap_err().to_string(),
            r#""-1G" is not a size: sizes cannot be negative, write e.g. 64MiB"#
        );
    }

    #[test]
    fn format_size_round_trips() {
        table(
            &[
                (0, "0"),
                (1, "1B"),
                (1000, "1KB"),
                (1024, "1KiB"),
                (6 * MI, "6MiB"),
                (1_500_000_000, "1500MB"),
                (3 * GI / 2, "1536MiB"),
                (1023, "1023B"),
                (u64::MAX, "18446744073709551615B"),
            ],
            |b| format_size(*b),
        );
        for bytes in [
            0,
            1,
            7,
            1000,
            1024,
            6 * MI,
            999_999,
            GI + 1,
            1 << 50,
            5_000_000_000_000_000,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
    }

    #[test]
    fn cpus() {
        use CpuError::*;
        let s = |t: &str| t.to_owned();
        table(
            &[
                ("0.5", Ok(500)),
                ("2", Ok(2000)),
                ("250m", Ok(250)),
                ("250 m", Ok(250)),
                ("1m", Ok(1)),
                ("0.001", Ok(1)),
                ("1.250", Ok(1250)),
                ("0.0010", Ok(1)),
                (" 4 ", Ok(4000)),
                ("4294967", Ok(4_294_967_000)),
                ("4294967295m", Ok(u32::MAX)),
                ("4294968", Err(TooLarge(s("4294968")))),
                ("4294967296m", Err(TooLarge(s("4294967296m")))),
                ("0", Err(Zero(s("0")))),
                ("0.0", Err(Zero(s("0.0")))),
                ("0m", Err(Zero(s("0m")))),
                ("0.0005", Err(TooPrecise(s("0.0005")))),
                ("1.5m", Err(TooPrecise(s("1.5m")))),
                ("-1", Err(Negative(s("-1")))),
                ("250M", Err(Invalid(s("250M")))),
                ("1core", Err(Invalid(s("1core")))),
                ("", Err(Invalid(s("")))),
                ("m", Err(Invalid(s("m")))),
                ("1e3", Err(Invalid(s("1e3")))),
            ],
            |i| parse_cpu(i),
        );
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let invalid = |t: &str| Err(DurationError::Invalid(t.to_owned()));
        table(
            &[
                ("10s", Ok(ms(10_000))),
                ("1m30s", Ok(ms(90_000))),
                ("1m 30s", Ok(ms(90_000))),
                ("500ms", Ok(ms(500))),
                ("2h", Ok(ms(7_200_000))),
                ("0s", Ok(ms(0))),
                ("0", Ok(ms(0))),
                (" 5s ", Ok(ms(5000))),
                ("10", invalid("10")),
                ("", invalid("")),
                ("-1s", invalid("-1s")),
                ("ten seconds", invalid("ten seconds")),
                ("10parsecs", invalid("10parsecs")),
            ],
            |i| parse_duration(i),
        );
    }

    fn port(
        container: u16,
        host: Option<u16>,
        ip: Option<IpAddr>,
        protocol: Protocol,
    ) -> PortMapping {
        PortMapping {
            container_port: container,
            host_port: host,
            host_ip: ip,
            protocol,
        }
    }

    #[test]
    fn port_specs() {
        use PortError::*;
        use Protocol::{Tcp, Udp};
        let s = |t: &str| t.to_owned();
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let v6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        table(
            &[
                ("8080", Ok(vec![port(8080, None, None, Tcp)])),
                ("8080:80", Ok(vec![port(80, Some(8080), None, Tcp)])),
                ("127.0.0.1:8080:80", Ok(vec![port(80, Some(8080), lo, Tcp)])),
                ("[::1]:8080:80", Ok(vec![port(80, Some(8080), v6, Tcp)])),
                ("53:53/udp", Ok(vec![port(53, Some(53), None, Udp)])),
                ("53:53/UDP", Ok(vec![port(53, Some(53), None, Udp)])),
                ("80/tcp", Ok(vec![port(80, None, None, Tcp)])),
                ("127.0.0.1:53:53/udp", Ok(vec![port(53, Some(53), lo, Udp)])),
                ("65535:1", Ok(vec![port(1, Some(65535), None, Tcp)])),
                (
                    "8000-8001:9000-9001",
                    Ok(vec![
                        port(9000, Some(8000), None, Tcp),
                        port(9001, Some(8001), None, Tcp),
                    ]),
                ),
                (
                    "9000-9001",
                    Ok(vec![
                        port(9000, None, None, Tcp),
                        port(9001, None, None, Tcp),
                    ]),
                ),
                (
                    "0",
                    Err(OutOfRange {
                        spec: s("0"),
                        port: s("0"),
                    }),
                ),
                (
                    "8080:0",
                    Err(OutOfRange {
                        spec: s("8080:0"),
                        port: s("0"),
                    }),
                ),
                (
                    "65536:80",
                    Err(OutOfRange {
                        spec: s("65536:80"),
                        port: s("65536"),
                    }),
                ),
                (
                    "99999999999:80",
                    Err(OutOfRange {
                        spec: s("99999999999:80"),
                        port: s("99999999999"),
                    }),
                ),
                (
                    "53:53/sctp",
                    Err(UnknownProtocol {
                        spec: s("53:53/sctp"),
                        protocol: s("sctp"),
                    }),
                ),
                (
                    "localhost:8080:80",
                    Err(Ip {
                        spec: s("localhost:8080:80"),
                        ip: s("localhost"),
                    }),
                ),
                ("[::1:8080:80", Err(Invalid(s("[::1:8080:80")))),
                ("[::1]8080:80", Err(Invalid(s("[::1]8080:80")))),
                ("::1:8080:80", Err(Invalid(s("::1:8080:80")))),
                ("127.0.0.1::80", Err(RandomHostPort(s("127.0.0.1::80")))),
                (":80", Err(RandomHostPort(s(":80")))),
                ("[::1]:80", Err(Invalid(s("[::1]:80")))),
                ("http", Err(Invalid(s("http")))),
                ("", Err(Invalid(s("")))),
                ("80:", Err(Invalid(s("80:")))),
                ("-80", Err(Invalid(s("-80")))),
                ("8080:+80", Err(Invalid(s("8080:+80")))),
                ("1:2:3:4", Err(Invalid(s("1:2:3:4")))),
                (
                    "9001-9000",
                    Err(BackwardsRange {
                        spec: s("9001-9000"),
                        range: s("9001-9000"),
                    }),
                ),
                (
                    "8000-8002:9000-9001",
                    Err(RangeMismatch(s("8000-8002:9000-9001"))),
                ),
                ("8000-8002:80", Err(RangeMismatch(s("8000-8002:80")))),
            ],
            |i| parse_port_spec(i),
        );
    }

    #[test]
    fn port_helpers() {
        table(
            &[
                (0, None),
                (1, Some(1)),
                (65535, Some(65535)),
                (65536, None),
                (-1, None),
            ],
            |n| port_number(*n),
        );
        table(
            &[
                ("tcp", Some(Protocol::Tcp)),
                ("Udp", Some(Protocol::Udp)),
                ("icmp", None),
            ],
            |p| parse_protocol(p),
        );
        table(
            &[
                ("10.0.0.1", Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))),
                ("::1", Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
                ("[::1]", Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
                ("[10.0.0.1", None),
                ("host", None),
            ],
            |i| parse_ip(i),
        );
    }

    #[test]
    fn port_mappings_round_trip() {
        let ips = [
            None,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Some("fd00::1".parse().unwrap()),
        ];
        let mut checked = 0;
        for container in [1, 80, 8080, 65535] {
            for host in [None, Some(1), Some(8080), Some(65535)] {
                for ip in ips {
                    if host.is_none() && ip.is_some() {
                        continue;
                    }
                    for protocol in [Protocol::Tcp, Protocol::Udp] {
                        let mapping = port(container, host, ip, protocol);
                        let text = format_port_mapping(&mapping);
                        assert_eq!(parse_port_spec(&text), Ok(vec![mapping]), "{text}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * (2 + 3 * 5 * 2));
        assert_eq!(
            format_port_mapping(&port(53, Some(53), None, Protocol::Udp)),
            "53:53/udp"
        );
        assert_eq!(
            format_port_mapping(&port(
                80,
                Some(8080),
                Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Protocol::Tcp
            )),
            "[::1]:8080:80"
        );
    }

    #[test]
    fn volume_mounts_round_trip() {
        for mount in [
            named("data", "/var/lib/data", false),
            named("pg.v1", "/d", true),
            bind("/srv/www", "/usr/share/www", true),
            bind("/", "/host", false),
        ] {
            let text = format_volume_mount(&mount);
            assert_eq!(parse_volume_spec(&text), Ok(mount), "{text}");
        }
        assert_eq!(
            format_volume_mount(&bind("/srv/www", "/www", true)),
            "/srv/www:/www:ro"
        );
    }

    fn named(name: &str, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            source: VolumeSource::Named(name.into()),
            target: target.into(),
            read_only,
        }
    }

    fn bind(path: &str, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            source: VolumeSource::Bind(path.into()),
            target: target.into(),
            read_only,
        }
    }

    #[test]
    fn volume_specs() {
        use VolumeError::*;
        let s = |t: &str| t.to_owned();
        table(
            &[
                (
                    "data:/var/lib/postgresql/data",
                    Ok(named("data", "/var/lib/postgresql/data", false)),
                ),
                (
                    "/srv/www:/usr/share/www:ro",
                    Ok(bind("/srv/www", "/usr/share/www", true)),
                ),
                (
                    "/srv/www:/usr/share/www:rw",
                    Ok(bind("/srv/www", "/usr/share/www", false)),
                ),
                (
                    "pg-data.v1_x:/data",
                    Ok(named("pg-data.v1_x", "/data", false)),
                ),
                ("/:/host:ro", Ok(bind("/", "/host", true))),
                ("/data", Err(Anonymous(s("/data")))),
                ("data", Err(Invalid(s("data")))),
                ("a:b:c:d", Err(Invalid(s("a:b:c:d")))),
                (":/data", Err(Invalid(s(":/data")))),
                ("data:", Err(Invalid(s("data:")))),
                ("./data:/data", Err(RelativeSource(s("./data")))),
                ("../data:/data", Err(RelativeSource(s("../data")))),
                ("~/data:/data", Err(RelativeSource(s("~/data")))),
                ("srv/data:/data", Err(RelativeSource(s("srv/data")))),
                ("/srv/../etc:/data", Err(SourceDotDot(s("/srv/../etc")))),
                ("data:/var/../etc", Err(TargetDotDot(s("/var/../etc")))),
                ("d:/data", Err(Name(s("d")))),
                ("-data:/data", Err(Name(s("-data")))),
                ("my data:/data", Err(Name(s("my data")))),
                ("data:data", Err(RelativeTarget(s("data")))),
                ("data:/", Err(RootTarget)),
                ("data://", Err(RootTarget)),
                ("data:/data:z", Err(Mode(s("z")))),
                ("data:/data:ro,z", Err(Mode(s("ro,z")))),
            ],
            |i| parse_volume_spec(i),
        );
    }

    #[test]
    fn volume_error_parts() {
        table(
            &[
                ("data", VolumePart::Whole),
                ("/data", VolumePart::Whole),
                ("./d:/data", VolumePart::Source),
                ("x:/data", VolumePart::Source),
                ("/a/..:/data", VolumePart::Source),
                ("data:rel", VolumePart::Target),
                ("data:/a/..", VolumePart::Target),
                ("data:/", VolumePart::Target),
                ("data:/d:rx", VolumePart::Mode),
            ],
            |i| parse_volume_spec(i).unwrap_err().part(),
        );
    }

    #[test]
    fn volume_names() {
        let long = "a".repeat(255);
        let too_long = "a".repeat(256);
        table(
            &[
                ("ab", true),
                ("a", false),
                ("0data", true),
                ("_data", false),
                ("da ta", false),
                ("dätä", false),
                (long.as_str(), true),
                (too_long.as_str(), false),
            ],
            |n| is_volume_name(n),
        );
    }
}
