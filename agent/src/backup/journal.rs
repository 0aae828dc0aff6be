//! The backup job journal, in `<state dir>/backup-jobs/`: one small JSON
//! file per job, written atomically (temporary file, fsync, rename), so a
//! job runs at most once across restarts and crashes.
//!
//! A job is journaled as started before it does anything; the uploads it
//! opens (`.partial` files, multipart upload ids) are added while they are
//! open; its result is kept once it is finished, until the control plane
//! acknowledges it and for a while after (the last [`KEEP_FINISHED`]).
//!
//! What the runner does with it ([`on_job`], [`interrupted`],
//! [`to_forget`]) are pure decisions over the journal's index.

use super::destinations::{InFlight, write_file_atomically};
use argosy_proto::v1::JobResult;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The journal's folder under the state directory.
pub const DIR: &str = "backup-jobs";
/// Finished jobs remembered at most (the oldest are forgotten first).
pub const KEEP_FINISHED: usize = 200;

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot use the backup job journal {path}: {source}; check the state directory's permissions and free space"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One job as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub job_id: String,
    /// `backup`, `verify`, `restore` or `prune`.
    pub kind: String,
    pub policy: String,
    pub started_at_ms: i64,
    /// Uploads the job has open.
    #[serde(default)]
    pub in_flight: Vec<InFlight>,
    #[serde(default)]
    pub finished: Option<Finished>,
}

/// A finished job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub at_ms: i64,
    /// The `JobResult` as protobuf, hex.
    pub result: String,
    /// Whether the control plane has stored it.
    #[serde(default)]
    pub acknowledged: bool,
}

impl Finished {
    pub fn new(at_ms: i64, result: &JobResult, acknowledged: bool) -> Self {
        Self {
            at_ms,
            result: hex::encode(result.encode_to_vec()),
            acknowledged,
        }
    }

    /// The stored result (a damaged one reads as a failure saying so).
    pub fn result(&self) -> JobResult {
        hex::decode(&self.result)
            .ok()
            .and_then(|bytes| JobResult::decode(bytes.as_slice()).ok())
            .unwrap_or_else(|| JobResult {
                ok: false,
                error: "the agent's journal entry for this job is damaged; run the job again"
                    .into(),
                ..JobResult::default()
            })
    }
}

/// What the index remembers of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Started,
    Finished { at_ms: i64, acknowledged: bool },
}

impl Entry {
    pub fn status(&self) -> Status {
        match &self.finished {
            None => Status::Started,
            Some(finished) => Status::Finished {
                at_ms: finished.at_ms,
                acknowledged: finished.acknowledged,
            },
        }
    }
}

/// What to do with a job the control plane sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnJob {
    /// Never seen: run it.
    Run,
    /// Already finished: send the stored result again.
    Resend,
    /// Running (or being cleaned up after a restart): nothing to do.
    Ignore,
}

/// The decision for a job given what the journal knows of it.
pub fn on_job(known: Option<&Status>) -> OnJob {
    match known {
        None => OnJob::Run,
        Some(Status::Started) => OnJob::Ignore,
        Some(Status::Finished { .. }) => OnJob::Resend,
    }
}

/// Jobs the agent stopped during: started, never finished (at start-up,
/// nothing is running yet).
pub fn interrupted(index: &BTreeMap<String, Status>) -> Vec<String> {
    index
        .iter()
        .filter(|(_, status)| **status == Status::Started)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Finished jobs to forget so that at most `keep` remain: the oldest
/// acknowledged ones (an unacknowledged result is kept until it is sent).
pub fn to_forget(index: &BTreeMap<String, Status>, keep: usize) -> Vec<String> {
    let mut finished: Vec<(i64, &String, bool)> = index
        .iter()
        .filter_map(|(id, status)| match status {
            Status::Finished {
                at_ms,
                acknowledged,
            } => Some((*at_ms, id, *acknowledged)),
            Status::Started => None,
        })
        .collect();
    let excess = finished.len().saturating_sub(keep);
    finished.sort();
    finished
        .into_iter()
        .filter(|(_, _, acknowledged)| *acknowledged)
        .take(excess)
        .map(|(_, id, _)| id.clone())
        .collect()
}

/// The file of a job: its id when that is a plain name, else its hex.
pub fn file_name(job_id: &str) -> String {
    let plain = !job_id.is_empty()
        && job_id.len() <= 100
        && !job_id.starts_with('.')
        && job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        format!("{job_id}.json")
    } else {
        format!("x-{}.json", hex::encode(job_id.as_bytes()))
    }
}

/// The journal: the files, and an index of every job's status in memory
/// (results stay on disk).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, Status>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    /// Opens (creating, 0700) `<state_dir>/backup-jobs` and reads its index.
    /// Unreadable entries are logged and left alone.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join(DIR);
        let io = |source| JournalError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string())
                }) {
                Ok(job) => {
                    index.insert(job.job_id.clone(), job.status());
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring an unreadable backup journal entry")
                }
            }
        }
        Ok(Self {
            dir,
            index: Mutex::new(index),
        })
    }

    fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(file_name(job_id))
    }

    /// What the journal knows of `job_id`.
    pub fn status(&self, job_id: &str) -> Option<Status> {
        lock(&self.index).get(job_id).cloned()
    }

    /// A copy of the index.
    pub fn index(&self) -> BTreeMap<String, Status> {
        lock(&self.index).clone()
    }

    /// Reads a job's entry.
    pub fn read(&self, job_id: &str) -> Result<Entry, JournalError> {
        let path = self.path(job_id);
        let bytes = std::fs::read(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| JournalError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    fn write(&self, entry: &Entry) -> Result<(), JournalError> {
        let path = self.path(&entry.job_id);
        let json = serde_json::to_vec_pretty(entry).map_err(|e| JournalError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_file_atomically(&path, &json, 0o600)
            .map_err(|source| JournalError::Io { path, source })?;
        lock(&self.index).insert(entry.job_id.clone(), entry.status());
        Ok(())
    }

    /// Records a job as started; it is then never run again.
    pub fn start(
        &self,
        job_id: &str,
        kind: &str,
        policy: &str,
        now_ms: i64,
    ) -> Result<(), JournalError> {
        self.write(&Entry {
            job_id: job_id.to_owned(),
            kind: kind.to_owned(),
            policy: policy.to_owned(),
            started_at_ms: now_ms,
            in_flight: Vec::new(),
            finished: None,
        })
    }

    fn update(&self, job_id: &str, change: impl FnOnce(&mut Entry)) -> Result<(), JournalError> {
        let mut entry = self.read(job_id)?;
        change(&mut entry);
        self.write(&entry)
    }

    /// Adds an upload the job opened.
    pub fn add_in_flight(&self, job_id: &str, item: &InFlight) -> Result<(), JournalError> {
        self.update(job_id, |entry| {
            if !entry.in_flight.contains(item) {
                entry.in_flight.push(item.clone());
            }
        })
    }

    /// Removes an upload that was committed or cleaned up.
    pub fn remove_in_flight(&self, job_id: &str, item: &InFlight) -> Result<(), JournalError> {
        self.update(job_id, |entry| entry.in_flight.retain(|i| i != item))
    }

    /// Records the job's result, then forgets the oldest finished jobs
    /// beyond [`KEEP_FINISHED`].
    pub fn finish(
        &self,
        job_id: &str,
        result: &JobResult,
        now_ms: i64,
    ) -> Result<(), JournalError> {
        self.update(job_id, |entry| {
            entry.in_flight.clear();
            entry.finished = Some(Finished::new(now_ms, result, false));
        })?;
        self.forget_old();
        Ok(())
    }

    /// Records that the control plane stored the job's result.
    pub fn acknowledge(&self, job_id: &str) -> Result<(), JournalError> {
        self.update(job_id, |entry| {
            if let Some(finished) = &mut entry.finished {
                finished.acknowledged = true;
            }
        })
    }

    /// The stored result of a finished job.
    pub fn result(&self, job_id: &str) -> Option<JobResult> {
        self.read(job_id).ok()?.finished.map(|f| f.result())
    }

    fn forget_old(&self) {
        for job_id in to_forget(&self.index(), KEEP_FINISHED) {
            match std::fs::remove_file(self.path(&job_id)) {
                Ok(()) => {
                    lock(&self.index).remove(&job_id);
                }
                Err(error) => {
                    tracing::warn!(job = %job_id, %error, "cannot forget an old backup journal entry")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(at_ms: i64, acknowledged: bool) -> Status {
        Status::Finished {
            at_ms,
            acknowledged,
        }
    }

    #[test]
    fn a_job_runs_once_and_a_finished_one_is_answered_again() {
        assert_eq!(on_job(None), OnJob::Run);
        assert_eq!(on_job(Some(&Status::Started)), OnJob::Ignore);
        assert_eq!(on_job(Some(&finished(5, false))), OnJob::Resend);
        assert_eq!(on_job(Some(&finished(5, true))), OnJob::Resend);
    }

    #[test]
    fn started_and_unfinished_jobs_were_interrupted() {
        let index = BTreeMap::from([
            ("j-1".to_owned(), Status::Started),
            ("j-2".to_owned(), finished(1, true)),
            ("j-3".to_owned(), Status::Started),
        ]);
        assert_eq!(interrupted(&index), ["j-1", "j-3"]);
        assert!(interrupted(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_oldest_acknowledged_results_are_forgotten_first() {
        let mut index = BTreeMap::new();
        for n in 0..5i64 {
            index.insert(format!("j-{n}"), finished(100 - n, true));
        }
        index.insert("j-unsent".to_owned(), finished(1, false));
        index.insert("j-running".to_owned(), Status::Started);
        assert!(to_forget(&index, 10).is_empty());
        // 6 finished, keep 3: the 3 oldest acknowledged (j-4, j-3, j-2).
        assert_eq!(to_forget(&index, 3), ["j-4", "j-3", "j-2"]);
        assert_eq!(to_forget(&index, 0).len(), 5, "unacknowledged results stay");
    }

    #[test]
    fn job_ids_make_safe_file_names() {
        assert_eq!(file_name("j-01J9ZK"), "j-01J9ZK.json");
        assert_eq!(
            file_name("../etc/passwd"),
            "x-2e2e2f6574632f706173737764.json"
        );
        assert_eq!(file_name(".hidden"), "x-2e68696464656e.json");
        assert_eq!(file_name(""), "x-.json");
        assert!(file_name(&"a".repeat(300)).starts_with("x-"));
    }

    #[test]
    fn the_journal_survives_a_restart() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        let mode = std::fs::metadata(state.path().join(DIR))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        journal.start("j-1", "backup", "crm-db", 10).unwrap();
        let partial = InFlight::File {
            destination: "local".into(),
            path: "/b/crm-db/b-1.argosy.partial".into(),
        };
        journal.add_in_flight("j-1", &partial).unwrap();
        journal.add_in_flight("j-1", &partial).unwrap();
        journal.start("j-2", "verify", "crm-db", 11).unwrap();
        let result = JobResult {
            ok: true,
            restore_ms: 1234,
            ..JobResult::default()
        };
        journal.finish("j-2", &result, 20).unwrap();

        let reopened = Journal::open(state.path()).unwrap();
        assert_eq!(reopened.status("j-1"), Some(Status::Started));
        assert_eq!(
            reopened.read("j-1").unwrap().in_flight,
            std::slice::from_ref(&partial)
        );
        assert_eq!(reopened.status("j-2"), Some(finished(20, false)));
        assert_eq!(reopened.result("j-2"), Some(result));
        assert_eq!(interrupted(&reopened.index()), ["j-1"]);
        reopened.remove_in_flight("j-1", &partial).unwrap();
        assert!(reopened.read("j-1").unwrap().in_flight.is_empty());
        reopened.acknowledge("j-2").unwrap();
        assert_eq!(reopened.status("j-2"), Some(finished(20, true)));
        assert!(reopened.status("j-3").is_none());
        let file = state.path().join(DIR).join("j-2.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        std::fs::write(state.path().join(DIR).join("garbage.json"), b"{").unwrap();
        assert_eq!(Journal::open(state.path()).unwrap().index().len(), 2);
    }

    #[test]
    fn only_the_last_finished_jobs_are_kept() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        for n in 0..(KEEP_FINISHED as i64 + 5) {
            let id = format!("j-{n:04}");
            journal.start(&id, "backup", "p", n).unwrap();
            journal.finish(&id, &JobResult::default(), n).unwrap();
            journal.acknowledge(&id).unwrap();
        }
        journal.start("j-last", "backup", "p", 1_000).unwrap();
        journal
            .finish("j-last", &JobResult::default(), 1_000)
            .unwrap();
        let index = journal.index();
        assert_eq!(index.len(), KEEP_FINISHED);
        assert!(!index.contains_key("j-0000"));
        assert!(index.contains_key("j-last"));
        assert_eq!(
            std::fs::read_dir(state.path().join(DIR)).unwrap().count(),
            KEEP_FINISHED
        );
    }

    #[test]
    fn a_damaged_result_reads_as_a_failure() {
        let damaged = Finished {
            at_ms: 1,
            result: "zz".into(),
            acknowledged: false,
        };
        assert!(!damaged.result().ok);
        assert!(damaged.result().error.contains("damaged"));
    }
}
