//! `Debug` for the wire messages that carry secret values, written by hand
//! so that printing one (a stray `{:?}` in a log line) shows which secret
//! it is and how long, never the bytes.

use crate::v1::{GetSecretResponse, RotateMasterKeyRequest, SecretValue, SetSecretRequest};
use std::fmt;

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("secret", &self.secret)
            .field(
                "value",
                &format_args!("<redacted, {} bytes>", self.value.len()),
            )
            .finish()
    }
}

impl fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("name", &self.name)
            .field(
                "value",
                &format_args!("<redacted, {} bytes>", self.value.len()),
            )
            .field("expect_existing", &self.expect_existing)
            .finish()
    }
}

impl fmt::Debug for GetSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetSecretResponse")
            .field("name", &self.name)
            .field("version", &self.version)
            .field(
                "value",
                &format_args!("<redacted, {} bytes>", self.value.len()),
            )
            .finish()
    }
}

impl fmt::Debug for RotateMasterKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |text: &str| {
            if text.is_empty() {
                "<none>"
            } else {
                "<redacted>"
            }
        };
        f.debug_struct("RotateMasterKeyRequest")
            .field(
                "new_master_key_base64",
                &format_args!("{}", given(&self.new_master_key_base64)),
            )
            .field(
                "new_passphrase",
                &format_args!("{}", given(&self.new_passphrase)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::v1::{ControlMessage, SecretRef, SecretResponse, SecretValue, control_message};

    #[test]
    fn secret_api_messages_never_print_values_or_keys() {
        use crate::v1::{GetSecretResponse, RotateMasterKeyRequest, SetSecretRequest};
        let printed = format!(
            "{:?} {:?} {:?}",
            SetSecretRequest {
                name: "crm/db".into(),
                value: b"hunter2-set".to_vec(),
                expect_existing: true,
            },
            GetSecretResponse {
                name: "crm/db".into(),
                version: 2,
                value: b"hunter2-get".to_vec(),
            },
            RotateMasterKeyRequest {
                new_master_key_base64: "a2V5LWJ5dGVz".into(),
                new_passphrase: "new words here".into(),
            }
        );
        for leaked in ["hunter2", "104, 117", "a2V5", "words"] {
            assert!(!printed.contains(leaked), "{printed}");
        }
        assert!(printed.contains("<redacted, 11 bytes>"), "{printed}");
    }

    #[test]
    fn a_secret_value_never_prints() {
        let message = ControlMessage {
            body: Some(control_message::Body::SecretResponse(SecretResponse {
                values: vec![SecretValue {
                    secret: Some(SecretRef {
                        name: "crm/db-password".into(),
                        version: 3,
                    }),
                    value: b"hunter2-very-secret".to_vec(),
                }],
                denied: vec![],
            })),
        };
        let printed = format!("{message:?} {message:#?}");
        let bytes = format!("{:?}", b"hunter2-very-secret".to_vec());
        assert!(
            !printed.contains("hunter2") && !printed.contains(&bytes[1..20]),
            "{printed}"
        );
        assert!(
            printed.contains("crm/db-password") && printed.contains("<redacted, 19 bytes>"),
            "{printed}"
        );
    }
}
