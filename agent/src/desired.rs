//! The desired state as the agent keeps it on disk, so it goes on running
//! its workloads with no control plane (static stability): the last
//! applied `DesiredState` in `desired.json`, and what the runtime
//! remembers about each allocation (restarts, last exit, last failure) in
//! `allocation-history.json`, both in the state directory, written
//! atomically with mode 0600. Two files, two writers: `apply` writes the
//! first, the runtime loop the second.
//!
//! Never secret values. [`StoredSpec::from_spec`] is the one place a
//! container spec is written down; `ContainerSpec` carries secrets as
//! references only (name and version, for env and for files), and only
//! those are kept. The runtime asks the control plane for the values again
//! (holding them in memory, files on tmpfs — see `crate::secrets`) before
//! it creates a container.

use crate::reconcile::History;
use argosy_proto::v1::health_check_spec::Probe;
use argosy_proto::v1::restart_spec::Policy;
use argosy_proto::v1::{
    Allocation, ContainerSpec, DesiredState, ExecProbe, HealthCheckSpec, HttpProbe, PortSpec,
    RestartSpec, SecretEnv, SecretFile, SecretRef, TcpProbe, VolumeSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The desired state's file in the state directory.
pub const DESIRED_FILE: &str = "desired.json";
/// The allocations' history's file in the state directory.
pub const HISTORY_FILE: &str = "allocation-history.json";

/// Why the stored desired state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid ({message}); the agent ignores it")]
    Corrupt { path: PathBuf, message: String },
}

/// What `desired.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub version: u64,
    pub allocations: Vec<StoredAllocation>,
}

impl Stored {
    pub fn new(desired: &DesiredState) -> Self {
        Self {
            version: desired.version,
            allocations: desired
                .allocations
                .iter()
                .map(StoredAllocation::from_allocation)
                .collect(),
        }
    }

    pub fn desired(&self) -> DesiredState {
        DesiredState {
            version: self.version,
            allocations: self
                .allocations
                .iter()
                .map(StoredAllocation::to_allocation)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAllocation {
    pub id: String,
    pub service: String,
    pub revision_id: String,
    pub revision: u64,
    pub run: bool,
    pub container: Option<StoredSpec>,
    /// How long a stopping allocation keeps running (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drain_ms: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl StoredAllocation {
    fn from_allocation(a: &Allocation) -> Self {
        Self {
            id: a.id.clone(),
            service: a.service.clone(),
            revision_id: a.revision_id.clone(),
            revision: a.revision,
            run: a.run,
            container: a.container.as_ref().map(StoredSpec::from_spec),
            drain_ms: a.drain_ms,
        }
    }

    fn to_allocation(&self) -> Allocation {
        Allocation {
            id: self.id.clone(),
            service: self.service.clone(),
            revision_id: self.revision_id.clone(),
            revision: self.revision,
            run: self.run,
            container: self.container.as_ref().map(StoredSpec::to_spec),
            drain_ms: self.drain_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpec {
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<StoredPort>,
    pub volumes: Vec<StoredVolume>,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub memory_swap_bytes: u64,
    pub pids_limit: u32,
    pub health_check: Option<StoredHealthCheck>,
    pub restart: Option<StoredRestart>,
    /// Secret references (never values).
    #[serde(default)]
    pub secret_env: Vec<StoredSecretEnv>,
    #[serde(default)]
    pub secret_files: Vec<StoredSecretFile>,
    /// The container port the service's route sends requests to (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub route_port: u32,
}

/// A secret by name and version: what is kept instead of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecretRef {
    pub name: String,
    pub version: u32,
}

impl StoredSecretRef {
    fn from_wire(secret: Option<&SecretRef>) -> Self {
        let secret = secret.cloned().unwrap_or_default();
        Self {
            name: secret.name,
            version: secret.version,
        }
    }

    fn to_wire(&self) -> Option<SecretRef> {
        Some(SecretRef {
            name: self.name.clone(),
            version: self.version,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecretEnv {
    pub variable: String,
    pub secret: StoredSecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecretFile {
    pub secret: StoredSecretRef,
    pub file: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl StoredSpec {
    /// What of `spec` goes to disk. SECRET SEAM: every value written here
    /// ends up in a file. Secrets are references in `ContainerSpec` (the
    /// control plane never puts a value there) and stay references here;
    /// a secret value must never be added to this struct.
    pub fn from_spec(spec: &ContainerSpec) -> Self {
        Self {
            image: spec.image.clone(),
            command: spec.command.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ports: spec
                .ports
                .iter()
                .map(|p| StoredPort {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                    protocol: p.protocol.clone(),
                })
                .collect(),
            volumes: spec
                .volumes
                .iter()
                .map(|v| StoredVolume {
                    source: v.source.clone(),
                    bind: v.bind,
                    target: v.target.clone(),
                    read_only: v.read_only,
                })
                .collect(),
            cpu_millis: spec.cpu_millis,
            memory_bytes: spec.memory_bytes,
            memory_swap_bytes: spec.memory_swap_bytes,
            pids_limit: spec.pids_limit,
            route_port: spec.route_port,
            health_check: spec.health_check.as_ref().map(|h| StoredHealthCheck {
                probe: h.probe.as_ref().map(|p| match p {
                    Probe::Http(http) => StoredProbe::Http {
                        path: http.path.clone(),
                        port: http.port,
                        expected_status: http.expected_status,
                    },
                    Probe::Tcp(tcp) => StoredProbe::Tcp { port: tcp.port },
                    Probe::Exec(exec) => StoredProbe::Exec {
                        command: exec.command.clone(),
                    },
                }),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                retries: h.retries,
                start_period_ms: h.start_period_ms,
            }),
            restart: spec.restart.map(|r| StoredRestart {
                policy: match Policy::try_from(r.policy).unwrap_or(Policy::Unspecified) {
                    Policy::Unspecified => RestartWord::Unspecified,
                    Policy::Never => RestartWord::Never,
                    Policy::OnFailure => RestartWord::OnFailure,
                    Policy::Always => RestartWord::Always,
                },
                max_retries: r.max_retries,
            }),
            secret_env: spec
                .secret_env
                .iter()
                .map(|e| StoredSecretEnv {
                    variable: e.variable.clone(),
                    secret: StoredSecretRef::from_wire(e.secret.as_ref()),
                })
                .collect(),
            secret_files: spec
                .secret_files
                .iter()
                .map(|f| StoredSecretFile {
                    secret: StoredSecretRef::from_wire(f.secret.as_ref()),
                    file: f.file.clone(),
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                })
                .collect(),
        }
    }

    fn to_spec(&self) -> ContainerSpec {
        ContainerSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ports: self
                .ports
                .iter()
                .map(|p| PortSpec {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                    protocol: p.protocol.clone(),
                })
                .collect(),
            volumes: self
                .volumes
                .iter()
                .map(|v| VolumeSpec {
                    source: v.source.clone(),
                    bind: v.bind,
                    target: v.target.clone(),
                    read_only: v.read_only,
                })
                .collect(),
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
            memory_swap_bytes: self.memory_swap_bytes,
            pids_limit: self.pids_limit,
            route_port: self.route_port,
            health_check: self.health_check.as_ref().map(|h| HealthCheckSpec {
                probe: h.probe.as_ref().map(|p| match p {
                    StoredProbe::Http {
                        path,
                        port,
                        expected_status,
                    } => Probe::Http(HttpProbe {
                        path: path.clone(),
                        port: *port,
                        expected_status: *expected_status,
                    }),
                    StoredProbe::Tcp { port } => Probe::Tcp(TcpProbe { port: *port }),
                    StoredProbe::Exec { command } => Probe::Exec(ExecProbe {
                        command: command.clone(),
                    }),
                }),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                retries: h.retries,
                start_period_ms: h.start_period_ms,
            }),
            restart: self.restart.as_ref().map(|r| RestartSpec {
                policy: match r.policy {
                    RestartWord::Unspecified => Policy::Unspecified,
                    RestartWord::Never => Policy::Never,
                    RestartWord::OnFailure => Policy::OnFailure,
                    RestartWord::Always => Policy::Always,
                } as i32,
                max_retries: r.max_retries,
            }),
            secret_env: self
                .secret_env
                .iter()
                .map(|e| SecretEnv {
                    variable: e.variable.clone(),
                    secret: e.secret.to_wire(),
                })
                .collect(),
            secret_files: self
                .secret_files
                .iter()
                .map(|f| SecretFile {
                    secret: f.secret.to_wire(),
                    file: f.file.clone(),
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPort {
    pub container_port: u32,
    pub host_port: u32,
    pub host_ip: String,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVolume {
    pub source: String,
    pub bind: bool,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHealthCheck {
    pub probe: Option<StoredProbe>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredProbe {
    Http {
        path: String,
        port: u32,
        expected_status: u32,
    },
    Tcp {
        port: u32,
    },
    Exec {
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRestart {
    pub policy: RestartWord,
    pub max_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartWord {
    Unspecified,
    Never,
    OnFailure,
    Always,
}

/// Reads the stored desired state from `dir`; `None` if there is none.
pub fn load_desired(dir: &Path) -> Result<Option<DesiredState>, PersistError> {
    Ok(load::<Stored>(&dir.join(DESIRED_FILE))?.map(|s| s.desired()))
}

/// Stores `desired` in `dir` (see [`StoredSpec::from_spec`] for what is
/// written).
pub fn save_desired(dir: &Path, desired: &DesiredState) -> Result<(), PersistError> {
    save(dir, DESIRED_FILE, &Stored::new(desired))
}

/// Reads the allocations' history from `dir` (empty if there is none).
pub fn load_history(dir: &Path) -> Result<BTreeMap<String, History>, PersistError> {
    Ok(load(&dir.join(HISTORY_FILE))?.unwrap_or_default())
}

pub fn save_history(dir: &Path, history: &BTreeMap<String, History>) -> Result<(), PersistError> {
    save(dir, HISTORY_FILE, history)
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PersistError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Writes `value` to `dir/name` atomically (temporary file, fsync,
/// rename), mode 0600.
fn save<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), PersistError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let text = serde_json::to_vec_pretty(value).map_err(|e| PersistError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(&tmp)(e)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err(&tmp))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(write_err(&tmp))?;
    file.write_all(&text).map_err(write_err(&tmp))?;
    file.sync_all().map_err(write_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(write_err(&path))?;
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{Exit, Failure};

    fn desired() -> DesiredState {
        DesiredState {
            version: 7,
            allocations: vec![Allocation {
                id: "a1".into(),
                service: "web".into(),
                revision_id: "r1".into(),
                revision: 3,
                run: true,
                container: Some(ContainerSpec {
                    image: "web:v1".into(),
                    command: vec!["httpd".into()],
                    env: [("A".into(), "1".into())].into(),
                    ports: vec![PortSpec {
                        container_port: 8080,
                        host_port: 18080,
                        host_ip: "127.0.0.1".into(),
                        protocol: "tcp".into(),
                    }],
                    volumes: vec![VolumeSpec {
                        source: "/srv".into(),
                        bind: true,
                        target: "/srv".into(),
                        read_only: true,
                    }],
                    cpu_millis: 250,
                    memory_bytes: 1 << 26,
                    memory_swap_bytes: 1 << 27,
                    pids_limit: 64,
                    health_check: Some(HealthCheckSpec {
                        probe: Some(Probe::Exec(ExecProbe {
                            command: vec!["true".into()],
                        })),
                        interval_ms: 1,
                        timeout_ms: 2,
                        retries: 3,
                        start_period_ms: 4,
                    }),
                    restart: Some(RestartSpec {
                        policy: Policy::OnFailure as i32,
                        max_retries: 5,
                    }),
                    secret_env: vec![SecretEnv {
                        variable: "DB_PASSWORD".into(),
                        secret: Some(SecretRef {
                            name: "crm/db".into(),
                            version: 4,
                        }),
                    }],
                    secret_files: vec![SecretFile {
                        secret: Some(SecretRef {
                            name: "crm/tls".into(),
                            version: 2,
                        }),
                        file: "tls.key".into(),
                        mode: 0o440,
                        uid: 1000,
                        gid: 1001,
                    }],
                    route_port: 8080,
                }),
                drain_ms: 1_500,
            }],
        }
    }

    #[test]
    fn secrets_are_stored_as_references_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        save_desired(dir.path(), &desired()).unwrap();
        let text = fs::read_to_string(dir.path().join(DESIRED_FILE)).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let container = &mut json["allocations"][0]["container"];
        assert_eq!(
            container["secret_env"],
            serde_json::json!([{"variable": "DB_PASSWORD", "secret": {"name": "crm/db", "version": 4}}])
        );
        assert_eq!(
            container["secret_files"],
            serde_json::json!([{"secret": {"name": "crm/tls", "version": 2}, "file": "tls.key", "mode": 0o440, "uid": 1000, "gid": 1001}])
        );
        // A file written before secrets existed has no secret fields.
        let object = container.as_object_mut().unwrap();
        object.remove("secret_env");
        object.remove("secret_files");
        let loaded: Stored = serde_json::from_value(json).unwrap();
        let spec = loaded.allocations[0].container.as_ref().unwrap();
        assert!(spec.secret_env.is_empty() && spec.secret_files.is_empty());
    }

    #[test]
    fn the_desired_state_and_history_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_desired(dir.path()).unwrap(), None);
        assert_eq!(load_history(dir.path()).unwrap(), BTreeMap::new());
        let history = BTreeMap::from([(
            "a1".to_owned(),
            History {
                restarts: 2,
                streak: 1,
                last_exit: Some(Exit {
                    code: 137,
                    oom_killed: true,
                    at_ms: 5,
                }),
                failure: Some(Failure {
                    message: "m".into(),
                    at_ms: 6,
                    attempts: 1,
                    spec_hash: "h".into(),
                }),
            },
        )]);
        save_desired(dir.path(), &desired()).unwrap();
        save_history(dir.path(), &history).unwrap();
        assert_eq!(load_desired(dir.path()).unwrap(), Some(desired()));
        assert_eq!(load_history(dir.path()).unwrap(), history);
        let mode = fs::metadata(dir.path().join(DESIRED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Every probe kind and policy maps both ways.
        for probe in [
            Probe::Http(HttpProbe {
                path: "/v".into(),
                port: 1,
                expected_status: 200,
            }),
            Probe::Tcp(TcpProbe { port: 2 }),
        ] {
            let mut d = desired();
            let spec = d.allocations[0].container.as_mut().unwrap();
            spec.health_check.as_mut().unwrap().probe = Some(probe);
            spec.restart.as_mut().unwrap().policy = Policy::Always as i32;
            assert_eq!(Stored::new(&d).desired(), d);
        }
    }

    #[test]
    fn a_corrupt_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DESIRED_FILE), "{").unwrap();
        let error = load_desired(dir.path()).unwrap_err().to_string();
        assert!(error.contains("desired.json is not valid"), "{error}");
        assert!(error.contains("ignores it"), "{error}");
    }
}
