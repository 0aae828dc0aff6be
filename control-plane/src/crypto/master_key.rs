//! Where the master key comes from, in order of precedence: `--master-key`
//! / `ARGOSY_MASTER_KEY` (base64 of 32 bytes), an unseal passphrase
//! (`--unseal-passphrase-file FILE` or `ARGOSY_UNSEAL_PASSPHRASE`, stretched
//! with argon2id over a random salt whose parameters the store keeps), or
//! the key file `<data-dir>/master.key` (created with mode 0600 on first
//! start; refused when others may read it).
//!
//! The choice of source is a pure function; the file helpers write
//! atomically (a private temporary file, fsynced, then linked or renamed
//! into place, then the folder fsynced).

use super::envelope::{CryptoError, KEY_LEN, SecretKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The key file's name in the data folder.
pub const KEY_FILE_NAME: &str = "master.key";
/// Where a rotation writes the new key before the store is re-wrapped.
pub const NEXT_KEY_FILE_NAME: &str = "master.key.next";
/// The shortest passphrase accepted when a store is sealed or re-sealed.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// How to make a master key for `ARGOSY_MASTER_KEY`.
pub const GENERATE_KEY_HINT: &str = "generate one with `head -c 32 /dev/urandom | base64`";

/// Text that must never be shown (a master key or a passphrase given as a
/// flag or environment variable): wiped on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    pub fn new(text: String) -> SecretText {
        SecretText(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretText::new(s.to_owned()))
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Which kind of source a master key came from; stored with the key check
/// so a refusal can say what the store was sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `--master-key` / `ARGOSY_MASTER_KEY`.
    MasterKey,
    /// An unseal passphrase.
    Passphrase,
    /// `<data-dir>/master.key`.
    KeyFile,
}

impl SourceKind {
    /// How messages name the source.
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::MasterKey => "a master key given in ARGOSY_MASTER_KEY (--master-key)",
            SourceKind::Passphrase => {
                "an unseal passphrase (--unseal-passphrase-file or ARGOSY_UNSEAL_PASSPHRASE)"
            }
            SourceKind::KeyFile => "the key file master.key in the data folder",
        }
    }
}

/// Where an unseal passphrase was read from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseOrigin {
    File(PathBuf),
    Environment,
}

impl fmt::Display for PassphraseOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseOrigin::File(path) => {
                write!(f, "the unseal passphrase in {}", path.display())
            }
            PassphraseOrigin::Environment => {
                f.write_str("the unseal passphrase from ARGOSY_UNSEAL_PASSPHRASE")
            }
        }
    }
}

/// The master-key settings of `argosy server`, as given.
#[derive(Debug, Clone, Copy)]
pub struct KeySourceFlags<'a> {
    pub master_key: Option<&'a SecretText>,
    pub passphrase_file: Option<&'a Path>,
    pub passphrase: Option<&'a SecretText>,
    pub data_dir: &'a Path,
}

/// Which source the flags select, before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    MasterKey,
    PassphraseFile(PathBuf),
    PassphraseEnvironment,
    KeyFile(PathBuf),
}

/// The source the flags select, by precedence, and the names of the ones
/// given but ignored (worth a warning).
pub fn choose_source(flags: &KeySourceFlags<'_>) -> (SourceChoice, Vec<&'static str>) {
    let given = [
        flags.master_key.map(|_| SourceChoice::MasterKey),
        flags
            .passphrase_file
            .map(|path| SourceChoice::PassphraseFile(path.to_owned())),
        flags
            .passphrase
            .map(|_| SourceChoice::PassphraseEnvironment),
    ];
    let names = [
        "ARGOSY_MASTER_KEY (--master-key)",
        "--unseal-passphrase-file",
        "ARGOSY_UNSEAL_PASSPHRASE",
    ];
    let mut chosen = None;
    let mut ignored = Vec::new();
    for (choice, name) in given.into_iter().zip(names) {
        match (choice, &chosen) {
            (Some(choice), None) => chosen = Some(choice),
            (Some(_), Some(_)) => ignored.push(name),
            (None, _) => {}
        }
    }
    let choice =
        chosen.unwrap_or_else(|| SourceChoice::KeyFile(flags.data_dir.join(KEY_FILE_NAME)));
    (choice, ignored)
}

/// A master-key source with its material read.
#[derive(Debug)]
pub enum KeySource {
    /// The key itself (`ARGOSY_MASTER_KEY`).
    MasterKey(SecretKey),
    Passphrase {
        passphrase: SecretText,
        origin: PassphraseOrigin,
    },
    /// The key file, read (or created) when the store is unsealed.
    KeyFile(PathBuf),
}

impl KeySource {
    pub fn kind(&self) -> SourceKind {
        match self {
            KeySource::MasterKey(_) => SourceKind::MasterKey,
            KeySource::Passphrase { .. } => SourceKind::Passphrase,
            KeySource::KeyFile(_) => SourceKind::KeyFile,
        }
    }

    /// Reads what the flags select: parses the key, or reads the passphrase
    /// file. The key file is left to the unseal step.
    pub fn from_flags(flags: &KeySourceFlags<'_>) -> Result<KeySource, KeyError> {
        let (choice, ignored) = choose_source(flags);
        if !ignored.is_empty() {
            tracing::warn!(
                ignored = ignored.join(", "),
                "several master-key sources are set; using the first of ARGOSY_MASTER_KEY, --unseal-passphrase-file, ARGOSY_UNSEAL_PASSPHRASE"
            );
        }
        match choice {
            SourceChoice::MasterKey => {
                let text = flags.master_key.map(SecretText::expose).unwrap_or_default();
                Ok(KeySource::MasterKey(parse_master_key(text).map_err(
                    |reason| KeyError::BadMasterKey {
                        origin: "ARGOSY_MASTER_KEY (--master-key)",
                        reason,
                    },
                )?))
            }
            SourceChoice::PassphraseFile(path) => {
                let passphrase = read_passphrase_file(&path)?;
                Ok(KeySource::Passphrase {
                    passphrase,
                    origin: PassphraseOrigin::File(path),
                })
            }
            SourceChoice::PassphraseEnvironment => {
                let passphrase = flags
                    .passphrase
                    .cloned()
                    .unwrap_or(SecretText::new(String::new()));
                if passphrase.expose().is_empty() {
                    return Err(KeyError::EmptyPassphrase {
                        origin: PassphraseOrigin::Environment.to_string(),
                    });
                }
                Ok(KeySource::Passphrase {
                    passphrase,
                    origin: PassphraseOrigin::Environment,
                })
            }
            SourceChoice::KeyFile(path) => Ok(KeySource::KeyFile(path)),
        }
    }
}

/// Why a master key or passphrase could not be used. Never holds key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{origin} is not base64 of 32 bytes ({reason}); {GENERATE_KEY_HINT}")]
    BadMasterKey {
        origin: &'static str,
        reason: String,
    },
    #[error(
        "the master key file {} has mode {mode:o}, so users other than its owner may read it; \
         refusing to use it: run `chmod 600 {}` (and consider who may have read it)",
        path.display(), path.display()
    )]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error(
        "the master key file {} does not hold base64 of 32 bytes ({reason}); restore it from your backup",
        path.display()
    )]
    MalformedKeyFile { path: PathBuf, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}; check the data folder's permissions and free space", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is empty; give the passphrase the store is sealed with")]
    EmptyPassphrase { origin: String },
    #[error(
        "the new passphrase has {chars} characters; use at least {MIN_PASSPHRASE_CHARS} (a few random words are easy to type and hard to guess)"
    )]
    WeakPassphrase { chars: usize },
    #[error(
        "the stored passphrase parameters cannot be used ({0}); the settings row crypto.passphrase_kdf was changed by hand: restore it from a backup"
    )]
    Kdf(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Parses base64 of exactly 32 bytes; the error says what was wrong without
/// the text.
pub fn parse_master_key(text: &str) -> Result<SecretKey, String> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(text.trim())
            .map_err(|_| "it is not valid base64".to_owned())?,
    );
    if bytes.len() != KEY_LEN {
        return Err(format!("it decodes to {} bytes", bytes.len()));
    }
    SecretKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// The key as the key file and `ARGOSY_MASTER_KEY` hold it.
pub fn encode_master_key(key: &SecretKey) -> Zeroizing<String> {
    Zeroizing::new(BASE64.encode(key.expose()))
}

/// A passphrase from a file: the whole content less one trailing newline.
pub fn read_passphrase_file(path: &Path) -> Result<SecretText, KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?,
    );
    let passphrase = strip_one_newline(&text);
    if passphrase.is_empty() {
        return Err(KeyError::EmptyPassphrase {
            origin: PassphraseOrigin::File(path.to_owned()).to_string(),
        });
    }
    Ok(SecretText::new(passphrase.to_owned()))
}

/// Drops one trailing `\n` or `\r\n` (what editors and `echo` add).
pub fn strip_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// Refuses a new passphrase shorter than [`MIN_PASSPHRASE_CHARS`].
pub fn check_new_passphrase(passphrase: &str) -> Result<(), KeyError> {
    let chars = passphrase.chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(KeyError::WeakPassphrase { chars });
    }
    Ok(())
}

/// The argon2id parameters and salt a passphrase is stretched with, kept in
/// the store (`crypto.passphrase_kdf`) so a later change of defaults does
/// not lock an existing store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub algorithm: String,
    pub version: u32,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Base64 of 16 random bytes.
    pub salt: String,
}

const SALT_LEN: usize = 16;

impl KdfParams {
    /// The argon2 crate's defaults (OWASP's argon2id recommendation: 19 MiB,
    /// 2 passes, 1 lane) with a fresh random salt.
    pub fn fresh() -> Result<KdfParams, CryptoError> {
        let salt = SecretKey::random()?;
        Ok(KdfParams {
            algorithm: "argon2id".to_owned(),
            version: 0x13,
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
            salt: BASE64.encode(&salt.expose()[..SALT_LEN]),
        })
    }

    /// The master key `passphrase` stretches to under these parameters.
    /// Slow on purpose (tens to hundreds of milliseconds): call it off the
    /// async threads.
    pub fn derive(&self, passphrase: &str) -> Result<SecretKey, KeyError> {
        if self.algorithm != "argon2id" || self.version != 0x13 {
            return Err(KeyError::Kdf(format!(
                "algorithm {} version {:#x} is not argon2id version 0x13",
                self.algorithm, self.version
            )));
        }
        let salt = BASE64
            .decode(&self.salt)
            .map_err(|_| KeyError::Kdf("the salt is not base64".to_owned()))?;
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|e| KeyError::Kdf(e.to_string()))?;
        Ok(SecretKey::from_bytes(key.as_ref())?)
    }
}

/// Reads a key file: `None` when it does not exist; refused when its mode
/// lets anyone but the owner read or write it.
pub fn read_key_file(path: &Path) -> Result<Option<SecretKey>, KeyError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::LoosePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?,
    );
    parse_master_key(&text)
        .map(Some)
        .map_err(|reason| KeyError::MalformedKeyFile {
            path: path.to_owned(),
            reason,
        })
}

/// Writes `key` to a new private file beside `path` and fsyncs it; returns
/// the temporary path.
fn write_private_temp(path: &Path, key: &SecretKey) -> Result<PathBuf, KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let suffix = hex::encode(&SecretKey::random()?.expose()[..6]);
    let temp = path.with_file_name(format!(
        ".{}.{suffix}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key")
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(write_err)?;
    let mut text = encode_master_key(key);
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write_err(source));
    }
    Ok(temp)
}

fn sync_parent(path: &Path) -> Result<(), KeyError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| KeyError::Write {
                path: parent.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// Creates the key file at `path` holding `key`, atomically and only if it
/// does not exist yet (mode 0600, fsynced). Returns false when a file was
/// already there (another process won); the caller reads that one.
pub fn create_key_file(path: &Path, key: &SecretKey) -> Result<bool, KeyError> {
    let temp = write_private_temp(path, key)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(KeyError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `key` to `path`, replacing any file there, atomically (mode 0600,
/// fsynced).
pub fn replace_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyError> {
    let temp = write_private_temp(path, key)?;
    if let Err(source) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(KeyError::Write {
            path: path.to_owned(),
            source,
        });
    }
    sync_parent(path)
}

/// Moves `from` over `to` (the finished rotation's new key over the old)
/// and fsyncs the folder.
pub fn promote_key_file(from: &Path, to: &Path) -> Result<(), KeyError> {
    std::fs::rename(from, to).map_err(|source| KeyError::Write {
        path: to.to_owned(),
        source,
    })?;
    sync_parent(to)
}

/// The `master.key.next` beside a key file.
pub fn next_key_path(key_file: &Path) -> PathBuf {
    key_file.with_file_name(NEXT_KEY_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretText {
        SecretText::new(text.to_owned())
    }

    #[test]
    fn sources_follow_their_precedence() {
        let dir = Path::new("/data");
        let key = secret("k");
        let pass = secret("p");
        let file = Path::new("/run/pass");
        let choose = |master_key, passphrase_file, passphrase| {
            choose_source(&KeySourceFlags {
                master_key,
                passphrase_file,
                passphrase,
                data_dir: dir,
            })
        };
        assert_eq!(
            choose(None, None, None),
            (
                SourceChoice::KeyFile(PathBuf::from("/data/master.key")),
                vec![]
            )
        );
        assert_eq!(
            choose(Some(&key), None, None),
            (SourceChoice::MasterKey, vec![])
        );
        assert_eq!(
            choose(Some(&key), Some(file), Some(&pass)),
            (
                SourceChoice::MasterKey,
                vec!["--unseal-passphrase-file", "ARGOSY_UNSEAL_PASSPHRASE"]
            )
        );
        assert_eq!(
            choose(None, Some(file), Some(&pass)),
            (
                SourceChoice::PassphraseFile(file.to_owned()),
                vec!["ARGOSY_UNSEAL_PASSPHRASE"]
            )
        );
        assert_eq!(
            choose(None, None, Some(&pass)),
            (SourceChoice::PassphraseEnvironment, vec![])
        );
    }

    #[test]
    fn master_keys_must_be_base64_of_32_bytes() {
        let good = BASE64.encode([9u8; 32]);
        let key = parse_master_key(&format!("{good}\n")).unwrap();
        assert_eq!(key.expose(), &[9u8; 32]);
        assert_eq!(&*encode_master_key(&key), &good);
        assert_eq!(
            parse_master_key(&BASE64.encode([1u8; 16])).unwrap_err(),
            "it decodes to 16 bytes"
        );
        assert_eq!(
            parse_master_key("not base64!").unwrap_err(),
            "it is not valid base64"
        );
        let flags = KeySourceFlags {
            master_key: Some(&SecretText::new("c2VjcmV0LXRleHQ=".into())),
            passphrase_file: None,
            passphrase: None,
            data_dir: Path::new("/d"),
        };
        let message = KeySource::from_flags(&flags).unwrap_err().to_string();
        assert!(message.contains("ARGOSY_MASTER_KEY"), "{message}");
        assert!(message.contains("head -c 32 /dev/urandom"), "{message}");
        assert!(
            !message.contains("c2VjcmV0LXRleHQ="),
            "never echoes the key: {message}"
        );
    }

    #[test]
    fn secret_text_is_redacted() {
        assert_eq!(format!("{:?}", secret("hunter2")), "REDACTED");
    }

    #[test]
    fn passphrase_files_lose_one_trailing_newline() {
        assert_eq!(strip_one_newline("words here\n"), "words here");
        assert_eq!(strip_one_newline("words here\r\n"), "words here");
        assert_eq!(strip_one_newline("words\n\n"), "words\n");
        assert_eq!(strip_one_newline("words"), "words");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_passphrase_file(&path),
            Err(KeyError::EmptyPassphrase { .. })
        ));
        std::fs::write(&path, "correct horse battery\n").unwrap();
        assert_eq!(
            read_passphrase_file(&path).unwrap().expose(),
            "correct horse battery"
        );
    }

    #[test]
    fn new_passphrases_need_twelve_characters() {
        assert!(matches!(
            check_new_passphrase("short"),
            Err(KeyError::WeakPassphrase { chars: 5 })
        ));
        assert!(check_new_passphrase("twelve chars").is_ok());
    }

    #[test]
    fn argon2_parameters_are_recorded_and_reproduce_the_key() {
        let params = KdfParams::fresh().unwrap();
        assert_eq!(params.algorithm, "argon2id");
        assert_eq!(params.version, 0x13);
        assert_eq!(params.memory_kib, 19 * 1024);
        assert_eq!(params.iterations, 2);
        assert_eq!(params.parallelism, 1);
        assert_eq!(BASE64.decode(&params.salt).unwrap().len(), SALT_LEN);
        assert_ne!(
            params.salt,
            KdfParams::fresh().unwrap().salt,
            "salts are random"
        );
        // Cheap parameters for the rest of the test; the stored ones are what count.
        let cheap = KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..params
        };
        let json = serde_json::to_string(&cheap).unwrap();
        let back: KdfParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cheap);
        let a = cheap.derive("correct horse battery staple").unwrap();
        let b = back.derive("correct horse battery staple").unwrap();
        assert_eq!(a.expose(), b.expose());
        let wrong = cheap.derive("correct horse battery stapler").unwrap();
        assert_ne!(a.expose(), wrong.expose());
        let other_salt = KdfParams {
            salt: BASE64.encode([0u8; SALT_LEN]),
            ..cheap.clone()
        };
        assert_ne!(
            other_salt
                .derive("correct horse battery staple")
                .unwrap()
                .expose(),
            a.expose()
        );
        let unknown = KdfParams {
            algorithm: "scrypt".into(),
            ..cheap
        };
        assert!(matches!(unknown.derive("x"), Err(KeyError::Kdf(_))));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_private_and_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        assert!(read_key_file(&path).unwrap().is_none());
        let key = SecretKey::random().unwrap();
        assert!(create_key_file(&path, &key).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_key_file(&path).unwrap().unwrap().expose(),
            key.expose()
        );
        // A second creator loses and the first key stays.
        assert!(!create_key_file(&path, &SecretKey::random().unwrap()).unwrap());
        assert_eq!(
            read_key_file(&path).unwrap().unwrap().expose(),
            key.expose()
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![KEY_FILE_NAME.to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        create_key_file(&path, &SecretKey::random().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_key_file(&path).unwrap_err();
        assert!(matches!(
            error,
            KeyError::LoosePermissions { mode: 0o644, .. }
        ));
        let message = error.to_string();
        assert!(message.contains("mode 644"), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn replacing_and_promoting_key_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let next = next_key_path(&path);
        assert_eq!(next, dir.path().join("master.key.next"));
        let (old, new) = (SecretKey::random().unwrap(), SecretKey::random().unwrap());
        create_key_file(&path, &old).unwrap();
        replace_key_file(&next, &old).unwrap();
        replace_key_file(&next, &new).unwrap();
        let mode = std::fs::metadata(&next).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        promote_key_file(&next, &path).unwrap();
        assert!(!next.exists());
        assert_eq!(
            read_key_file(&path).unwrap().unwrap().expose(),
            new.expose()
        );
        std::fs::write(&path, "garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyError::MalformedKeyFile { .. })
        ));
    }
}
