//! The keyring's decisions, as plain functions over plain data: what to do
//! with the key files at start (use, finish an interrupted rotation,
//! create, refuse), what a refused start should tell the operator, and how
//! a rotation gets its new key from the running source and the request.
//! The keyring (`keyring`) does the I/O.

use super::envelope::SecretKey;
use super::master_key::{self, KeyError, SecretText, SourceKind};

/// What to do about the key files at start, given whether each exists and
/// matches the store's key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFilePlan {
    /// Use `master.key`; remove a stale `master.key.next` if there is one
    /// (a rotation that never committed).
    Use {
        discard_next: bool,
    },
    /// A rotation committed but did not rename: `master.key.next` becomes
    /// `master.key`.
    PromoteNext,
    /// A store never sealed and no key file: create `master.key`.
    Create {
        discard_next: bool,
    },
    /// The store is sealed and neither file holds its key, or there is
    /// none: refuse.
    RefuseMissing,
    RefuseWrongKey,
}

/// What a key file holds compared with the store's key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKey {
    Absent,
    /// It opens the key check (or the store has none yet).
    Matches,
    Mismatch,
}

/// The start-up decision for the key-file source.
pub fn plan_key_file(sealed: bool, current: FileKey, next: FileKey) -> KeyFilePlan {
    let discard_next = next != FileKey::Absent;
    match (sealed, current, next) {
        (false, FileKey::Absent, _) => KeyFilePlan::Create { discard_next },
        (_, FileKey::Matches, _) => KeyFilePlan::Use { discard_next },
        (true, _, FileKey::Matches) => KeyFilePlan::PromoteNext,
        (true, FileKey::Absent, _) => KeyFilePlan::RefuseMissing,
        (_, FileKey::Mismatch, _) => KeyFilePlan::RefuseWrongKey,
    }
}

/// What a refused start should tell the operator to do.
pub fn unseal_hint(presented: SourceKind, sealed_with: SourceKind) -> String {
    let rotated = "If the master key was rotated (`argosy keys rotate-master`), use the new one.";
    match (presented, sealed_with) {
        (SourceKind::MasterKey, SourceKind::MasterKey) => {
            format!("Set ARGOSY_MASTER_KEY to the key this store was sealed with. {rotated}")
        }
        (SourceKind::Passphrase, SourceKind::Passphrase) => format!(
            "Check the unseal passphrase (a trailing space or a different file?). {rotated}"
        ),
        (SourceKind::KeyFile, SourceKind::KeyFile) => format!(
            "Restore this store's master.key from your backup into the data folder (mode 0600). {rotated}"
        ),
        (_, SourceKind::MasterKey) => {
            "Start with ARGOSY_MASTER_KEY set to the key this store was sealed with.".to_owned()
        }
        (_, SourceKind::Passphrase) => "Start with the unseal passphrase this store was sealed \
             with (--unseal-passphrase-file FILE or ARGOSY_UNSEAL_PASSPHRASE)."
            .to_owned(),
        (_, SourceKind::KeyFile) => "Start without ARGOSY_MASTER_KEY and passphrase flags, with \
             this store's master.key in the data folder."
            .to_owned(),
    }
}

/// How a rotation gets its new key, decided from the running source and
/// what the request carries.
#[derive(Debug)]
pub enum NewKeyPlan {
    /// Key file: the given key, or (`None`) a fresh random one, written to
    /// `master.key.next` first.
    KeyFile(Option<SecretKey>),
    /// `ARGOSY_MASTER_KEY`: the key the request carries.
    MasterKey(SecretKey),
    /// A new passphrase, stretched with fresh parameters.
    Passphrase(SecretText),
}

/// What `RotateMasterKey` asked for.
#[derive(Debug, Default)]
pub struct RotationRequest {
    /// Base64 of 32 bytes.
    pub new_master_key: Option<SecretText>,
    pub new_passphrase: Option<SecretText>,
}

/// Why a rotation request does not fit the running key source.
#[derive(Debug, thiserror::Error)]
pub enum RotationRefused {
    #[error(
        "this control plane's master key comes from ARGOSY_MASTER_KEY: pass the new key \
         (`argosy keys rotate-master --new-key-file FILE`, the file holding base64 of 32 bytes; {})",
        master_key::GENERATE_KEY_HINT
    )]
    NewKeyNeeded,
    #[error(
        "this control plane is unsealed with a passphrase: pass the new one with \
         `argosy keys rotate-master --new-passphrase-file FILE`"
    )]
    NewPassphraseNeeded,
    #[error(
        "a new passphrase was given, but this control plane's master key comes from {}; \
         rotate with {} instead (changing the kind of source is not supported)",
        running.describe(),
        if *running == SourceKind::KeyFile { "no option (a new key is generated)" } else { "--new-key-file" }
    )]
    PassphraseForKeySource { running: SourceKind },
    #[error(
        "a new master key was given, but this control plane is unsealed with a passphrase; \
         rotate with --new-passphrase-file instead"
    )]
    KeyForPassphraseSource,
    #[error("the new master key is not base64 of 32 bytes ({0}); {gen}", gen = master_key::GENERATE_KEY_HINT)]
    BadNewKey(String),
    #[error(transparent)]
    WeakPassphrase(KeyError),
}

/// Decides how a rotation gets its new key.
pub fn plan_rotation(
    source: SourceKind,
    request: RotationRequest,
) -> Result<NewKeyPlan, RotationRefused> {
    let new_key = request
        .new_master_key
        .map(|text| master_key::parse_master_key(text.expose()).map_err(RotationRefused::BadNewKey))
        .transpose()?;
    match (source, new_key, request.new_passphrase) {
        (SourceKind::Passphrase, None, Some(passphrase)) => {
            master_key::check_new_passphrase(passphrase.expose())
                .map_err(RotationRefused::WeakPassphrase)?;
            Ok(NewKeyPlan::Passphrase(passphrase))
        }
        (SourceKind::Passphrase, Some(_), _) => Err(RotationRefused::KeyForPassphraseSource),
        (SourceKind::Passphrase, None, None) => Err(RotationRefused::NewPassphraseNeeded),
        (running, _, Some(_)) => Err(RotationRefused::PassphraseForKeySource { running }),
        (SourceKind::MasterKey, Some(key), None) => Ok(NewKeyPlan::MasterKey(key)),
        (SourceKind::MasterKey, None, None) => Err(RotationRefused::NewKeyNeeded),
        (SourceKind::KeyFile, key, None) => Ok(NewKeyPlan::KeyFile(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileKey::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    fn text(s: &str) -> Option<SecretText> {
        Some(SecretText::new(s.to_owned()))
    }

    #[test]
    fn key_file_plans_cover_every_state() {
        let table = [
            // sealed, master.key, master.key.next → plan
            (
                false,
                Absent,
                Absent,
                KeyFilePlan::Create {
                    discard_next: false,
                },
            ),
            (
                false,
                Absent,
                Matches,
                KeyFilePlan::Create { discard_next: true },
            ),
            (
                false,
                Matches,
                Absent,
                KeyFilePlan::Use {
                    discard_next: false,
                },
            ),
            (
                false,
                Matches,
                Matches,
                KeyFilePlan::Use { discard_next: true },
            ),
            (
                true,
                Matches,
                Absent,
                KeyFilePlan::Use {
                    discard_next: false,
                },
            ),
            // A rotation wrote master.key.next but never committed.
            (
                true,
                Matches,
                Mismatch,
                KeyFilePlan::Use { discard_next: true },
            ),
            // A rotation committed but did not rename.
            (true, Mismatch, Matches, KeyFilePlan::PromoteNext),
            (true, Absent, Matches, KeyFilePlan::PromoteNext),
            (true, Absent, Absent, KeyFilePlan::RefuseMissing),
            (true, Absent, Mismatch, KeyFilePlan::RefuseMissing),
            (true, Mismatch, Absent, KeyFilePlan::RefuseWrongKey),
            (true, Mismatch, Mismatch, KeyFilePlan::RefuseWrongKey),
        ];
        for (sealed, current, next, expected) in table {
            assert_eq!(
                plan_key_file(sealed, current, next),
                expected,
                "sealed {sealed}, master.key {current:?}, master.key.next {next:?}"
            );
        }
    }

    #[test]
    fn rotation_plans_follow_the_source() {
        let key = BASE64.encode([5u8; 32]);
        let request = |key: Option<SecretText>, pass: Option<SecretText>| RotationRequest {
            new_master_key: key,
            new_passphrase: pass,
        };
        use SourceKind::*;
        assert!(matches!(
            plan_rotation(KeyFile, request(None, None)),
            Ok(NewKeyPlan::KeyFile(None))
        ));
        match plan_rotation(KeyFile, request(text(&key), None)) {
            Ok(NewKeyPlan::KeyFile(Some(k))) => assert_eq!(k.expose(), &[5u8; 32]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_rotation(MasterKey, request(text(&key), None)),
            Ok(NewKeyPlan::MasterKey(_))
        ));
        assert!(matches!(
            plan_rotation(MasterKey, request(None, None)),
            Err(RotationRefused::NewKeyNeeded)
        ));
        assert!(matches!(
            plan_rotation(Passphrase, request(None, text("a long new passphrase"))),
            Ok(NewKeyPlan::Passphrase(_))
        ));
        assert!(matches!(
            plan_rotation(Passphrase, request(None, text("short"))),
            Err(RotationRefused::WeakPassphrase(KeyError::WeakPassphrase {
                chars: 5
            }))
        ));
        assert!(matches!(
            plan_rotation(Passphrase, request(None, None)),
            Err(RotationRefused::NewPassphraseNeeded)
        ));
        assert!(matches!(
            plan_rotation(Passphrase, request(text(&key), None)),
            Err(RotationRefused::KeyForPassphraseSource)
        ));
        for source in [KeyFile, MasterKey] {
            assert!(matches!(
                plan_rotation(source, request(None, text("a long new passphrase"))),
                Err(RotationRefused::PassphraseForKeySource { .. })
            ));
        }
        match plan_rotation(MasterKey, request(text("bm90IGEga2V5"), None)) {
            Err(RotationRefused::BadNewKey(reason)) => assert_eq!(reason, "it decodes to 9 bytes"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hints_say_what_to_do_for_each_pair_of_sources() {
        use SourceKind::*;
        for presented in [MasterKey, Passphrase, KeyFile] {
            for sealed in [MasterKey, Passphrase, KeyFile] {
                let hint = unseal_hint(presented, sealed);
                let names_the_way = match sealed {
                    MasterKey => hint.contains("ARGOSY_MASTER_KEY"),
                    Passphrase => hint.contains("passphrase"),
                    KeyFile => hint.contains("master.key"),
                };
                assert!(names_the_way, "{presented:?} vs {sealed:?}: {hint}");
            }
        }
    }
}
