//! The join string: everything a new host needs to enroll, in one line.
//!
//! `argosy://HOST:PORT/?token=ID.SECRET&ca=sha256:HEX` carries the control
//! plane's gRPC address, the join token and the SHA-256 fingerprint of the
//! control plane's CA certificate (DER). The agent pins that CA on first
//! contact, as `kubeadm join --discovery-token-ca-cert-hash` does, so a
//! man in the middle cannot enroll it.

use std::fmt;
use std::str::FromStr;

/// A parsed, validated join string.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinString {
    /// `host:port` of the control plane's gRPC listener.
    pub address: String,
    /// `ID.SECRET` of the join token.
    pub token: String,
    /// SHA-256 of the CA certificate's DER encoding.
    pub ca_fingerprint: CaFingerprint,
}

/// SHA-256 of a CA certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaFingerprint(pub [u8; 32]);

impl CaFingerprint {
    /// Fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(der).into())
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for CaFingerprint {
    type Err = JoinStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| JoinStringError::BadFingerprint(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// Why a join string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinStringError {
    #[error(
        "the join string is not a URL of the form argosy://HOST:PORT/?token=ID.SECRET&ca=sha256:HEX; copy it again from `argosy join-token create`"
    )]
    NotAUrl,
    #[error("the join string must start with argosy:// (got {0}://)")]
    WrongScheme(String),
    #[error("the join string names no control-plane host and port")]
    NoAddress,
    #[error("the join string has no token=ID.SECRET parameter")]
    NoToken,
    #[error("the join string's token is not of the form ID.SECRET")]
    MalformedToken,
    #[error(
        "the join string has no ca=sha256:HEX parameter, so the control plane cannot be verified"
    )]
    NoFingerprint,
    #[error("the CA fingerprint {0:?} is not sha256: followed by 64 hex digits")]
    BadFingerprint(String),
}

impl FromStr for JoinString {
    type Err = JoinStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(s.trim()).map_err(|_| JoinStringError::NotAUrl)?;
        if url.scheme() != "argosy" {
            return Err(JoinStringError::WrongScheme(url.scheme().to_owned()));
        }
        let host = url.host_str().ok_or(JoinStringError::NoAddress)?;
        let port = url.port().ok_or(JoinStringError::NoAddress)?;
        let mut token = None;
        let mut fingerprint = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "token" => token = Some(value.into_owned()),
                "ca" => fingerprint = Some(value.parse::<CaFingerprint>()?),
                _ => {}
            }
        }
        let token = token.ok_or(JoinStringError::NoToken)?;
        match token.split_once('.') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {}
            _ => return Err(JoinStringError::MalformedToken),
        }
        Ok(Self {
            address: format!("{host}:{port}"),
            token,
            ca_fingerprint: fingerprint.ok_or(JoinStringError::NoFingerprint)?,
        })
    }
}

impl fmt::Display for JoinString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argosy://{}/?token={}&ca={}",
            self.address, self.token, self.ca_fingerprint
        )
    }
}

impl fmt::Debug for JoinString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("JoinString")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn round_trips() {
        let text = format!("argosy://10.0.0.1:7443/?token=abc.def&ca={FP}");
        let join: JoinString = text.parse().unwrap();
        assert_eq!(join.address, "10.0.0.1:7443");
        assert_eq!(join.token, "abc.def");
        assert_eq!(join.to_string(), text);
        assert_eq!(join.to_string().parse::<JoinString>().unwrap(), join);
    }

    #[test]
    fn ipv6_and_names_keep_their_form() {
        let join: JoinString = format!("argosy://[::1]:7443/?token=a.b&ca={FP}")
            .parse()
            .unwrap();
        assert_eq!(join.address, "[::1]:7443");
        let join: JoinString = format!("argosy://cp.example.com:7443/?token=a.b&ca={FP}")
            .parse()
            .unwrap();
        assert_eq!(join.address, "cp.example.com:7443");
    }

    #[test]
    fn refuses_what_is_missing_or_malformed() {
        let cases = [
            ("not a url", JoinStringError::NotAUrl),
            (
                "https://h:1/?token=a.b",
                JoinStringError::WrongScheme("https".into()),
            ),
            ("argosy://h/?token=a.b", JoinStringError::NoAddress),
            (
                "argosy://h:1/?ca=sha256:00",
                JoinStringError::BadFingerprint("sha256:00".into()),
            ),
            ("argosy://h:1/?x=1", JoinStringError::NoToken),
            ("argosy://h:1/?token=ab", JoinStringError::MalformedToken),
            ("argosy://h:1/?token=a.", JoinStringError::MalformedToken),
            ("argosy://h:1/?token=a.b", JoinStringError::NoFingerprint),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<JoinString>().unwrap_err(), expected, "{text}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let join: JoinString = format!("argosy://h:1/?token=id.topsecret&ca={FP}")
            .parse()
            .unwrap();
        assert!(!format!("{join:?}").contains("topsecret"));
    }
}
