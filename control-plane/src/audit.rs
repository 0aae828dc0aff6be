//! The audit log's decisions: how a record is chained to the one before it
//! and how a chain is verified. Plain functions over plain data; the
//! appending (and refusing a call whose record cannot be written) is
//! `audit_log::AuditLog`, the rows are `store::audit`.
//!
//! Every record carries `hash = HMAC-SHA256(key, prev_hash ‖ fields)` where
//! the fields are length-prefixed so no two records encode alike. The key is
//! the audit key the master key protects, so someone with write access to
//! the database alone cannot forge a record that verifies: an edited record
//! breaks its own hash, an inserted or deleted one breaks the link to its
//! neighbour or leaves a gap in the sequence numbers.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What one audit record says, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// `user:alice`, `token:ci`, `host:h-abc` or `anonymous`.
    pub actor: String,
    /// The caller's address (`ip:port`), or `local`.
    pub source: String,
    /// A dotted name: `service.apply`, `secret.read`, `secret.deliver`, ….
    pub action: String,
    /// What the action was taken on.
    pub target: String,
    /// `started`, `ok`, `denied: …` or `failed: …`.
    pub outcome: String,
}

/// A record as stored: the entry, when, its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "genesis";

/// The chained hash of a record (hex).
pub fn chain_hash(key: &[u8], prev_hash: &str, seq: i64, at_ms: i64, entry: &AuditEntry) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    let mut field = |bytes: &[u8]| {
        mac.update(&(bytes.len() as u64).to_be_bytes());
        mac.update(bytes);
    };
    field(b"argosy-audit-v1");
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&at_ms.to_be_bytes());
    field(entry.actor.as_bytes());
    field(entry.source.as_bytes());
    field(entry.action.as_bytes());
    field(entry.target.as_bytes());
    field(entry.outcome.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The record that follows `last` (or starts the chain).
pub fn next_record(
    key: &[u8],
    last: Option<(i64, &str)>,
    at_ms: i64,
    entry: AuditEntry,
) -> AuditRecord {
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash.to_owned()),
        None => (1, GENESIS.to_owned()),
    };
    let hash = chain_hash(key, &prev_hash, seq, at_ms, &entry);
    AuditRecord {
        seq,
        at_ms,
        entry,
        prev_hash,
        hash,
    }
}

/// One way the chain is broken, naming the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    #[error(
        "record {seq} was edited: its contents no longer match its hash (or it was forged without the audit key)"
    )]
    Edited { seq: i64 },
    #[error("records {first}..={last} are missing: deleted from the log")]
    Missing { first: i64, last: i64 },
    #[error(
        "record {seq} does not follow record {previous}: a record was inserted, deleted or reordered before it"
    )]
    BrokenLink { seq: i64, previous: i64 },
    #[error("the log does not start at record 1 but at {seq}: its first records were deleted")]
    MissingStart { seq: i64 },
}

/// The result of walking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verification {
    pub records: u64,
    /// The last record's sequence number and hash: keep them to detect a
    /// later truncation of the log's end.
    pub head: Option<(i64, String)>,
    pub problems: Vec<ChainProblem>,
}

/// Verifies records in ascending `seq` order, a batch at a time.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    key: &'k [u8],
    result: Verification,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: &'k [u8]) -> Self {
        Self {
            key,
            result: Verification::default(),
        }
    }

    /// Checks the next record of the chain.
    pub fn push(&mut self, record: &AuditRecord) {
        let expected = chain_hash(
            self.key,
            &record.prev_hash,
            record.seq,
            record.at_ms,
            &record.entry,
        );
        if expected != record.hash {
            self.result
                .problems
                .push(ChainProblem::Edited { seq: record.seq });
        }
        match &self.result.head {
            None => {
                if record.seq != 1 {
                    self.result
                        .problems
                        .push(ChainProblem::MissingStart { seq: record.seq });
                } else if record.prev_hash != GENESIS {
                    self.result.problems.push(ChainProblem::BrokenLink {
                        seq: record.seq,
                        previous: 0,
                    });
                }
            }
            Some((previous, previous_hash)) => {
                if record.seq > previous + 1 {
                    self.result.problems.push(ChainProblem::Missing {
                        first: previous + 1,
                        last: record.seq - 1,
                    });
                } else if record.prev_hash != *previous_hash {
                    self.result.problems.push(ChainProblem::BrokenLink {
                        seq: record.seq,
                        previous: *previous,
                    });
                }
            }
        }
        self.result.records += 1;
        self.result.head = Some((record.seq, record.hash.clone()));
    }

    pub fn finish(self) -> Verification {
        self.result
    }
}

/// Verifies a whole chain held in memory.
pub fn verify(key: &[u8], records: &[AuditRecord]) -> Verification {
    let mut verifier = ChainVerifier::new(key);
    for record in records {
        verifier.push(record);
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            actor: format!("user:u{n}"),
            source: "127.0.0.1:5000".into(),
            action: "service.apply".into(),
            target: format!("web-{n}"),
            outcome: "ok".into(),
        }
    }

    fn chain(len: usize) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for n in 0..len {
            let last = records.last().map(|r| (r.seq, r.hash.as_str()));
            let record = next_record(KEY, last, 1_000 + n as i64, entry(n));
            records.push(record);
        }
        records
    }

    /// Re-hashes records from `from` on with the key, as someone holding
    /// the key (but nobody else) could.
    fn rechain(records: &mut [AuditRecord], key: &[u8]) {
        for i in 0..records.len() {
            let prev = if i == 0 {
                GENESIS.to_owned()
            } else {
                records[i - 1].hash.clone()
            };
            records[i].prev_hash = prev.clone();
            records[i].hash = chain_hash(
                key,
                &prev,
                records[i].seq,
                records[i].at_ms,
                &records[i].entry,
            );
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let records = chain(5);
        let result = verify(KEY, &records);
        assert_eq!(result.problems, vec![]);
        assert_eq!(result.records, 5);
        assert_eq!(result.head, Some((5, records[4].hash.clone())));
        assert_eq!(verify(KEY, &[]), Verification::default());
    }

    #[test]
    fn an_edited_record_is_named() {
        for field in 0..6 {
            let mut records = chain(5);
            let record = &mut records[2];
            match field {
                0 => record.entry.actor = "user:mallory".into(),
                1 => record.entry.source = "10.0.0.1:1".into(),
                2 => record.entry.action = "secret.read".into(),
                3 => record.entry.target = "other".into(),
                4 => record.entry.outcome = "denied".into(),
                _ => record.at_ms += 1,
            }
            assert_eq!(
                verify(KEY, &records).problems,
                vec![ChainProblem::Edited { seq: 3 }],
                "field {field}"
            );
        }
    }

    #[test]
    fn a_deleted_record_leaves_a_gap() {
        let mut records = chain(5);
        records.remove(2);
        assert_eq!(
            verify(KEY, &records).problems,
            vec![ChainProblem::Missing { first: 3, last: 3 }]
        );
        let mut records = chain(5);
        records.remove(0);
        assert_eq!(
            verify(KEY, &records).problems,
            vec![ChainProblem::MissingStart { seq: 2 }]
        );
    }

    #[test]
    fn a_deletion_hidden_by_renumbering_breaks_the_link() {
        let mut records = chain(5);
        records.remove(2);
        for (i, record) in records.iter_mut().enumerate() {
            record.seq = i as i64 + 1;
        }
        let problems = verify(KEY, &records).problems;
        assert!(
            problems.contains(&ChainProblem::BrokenLink {
                seq: 3,
                previous: 2
            }),
            "{problems:?}"
        );
    }

    #[test]
    fn an_inserted_record_is_caught_even_with_a_plausible_hash() {
        // Inserted at the end, hashed without the key: the hash is wrong.
        let mut records = chain(3);
        let forged = next_record(
            b"not the audit key",
            Some((3, &records[2].hash)),
            5_000,
            entry(9),
        );
        records.push(forged);
        assert_eq!(
            verify(KEY, &records).problems,
            vec![ChainProblem::Edited { seq: 4 }]
        );
        // Inserted in the middle with the later records renumbered.
        let mut records = chain(4);
        let mut inserted = records[1].clone();
        inserted.entry.target = "inserted".into();
        records.insert(2, inserted);
        for (i, record) in records.iter_mut().enumerate() {
            record.seq = i as i64 + 1;
        }
        let problems = verify(KEY, &records).problems;
        assert!(!problems.is_empty());
        assert!(
            problems.iter().all(|p| matches!(
                p,
                ChainProblem::Edited { .. } | ChainProblem::BrokenLink { .. }
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn only_the_key_holder_can_rewrite_history() {
        let mut records = chain(4);
        records[1].entry.outcome = "denied".into();
        rechain(&mut records, b"a guessed key");
        let problems = verify(KEY, &records).problems;
        assert_eq!(problems.len(), 4, "{problems:?}");
        rechain(&mut records, KEY);
        assert_eq!(verify(KEY, &records).problems, vec![]);
    }

    #[test]
    fn problems_say_which_record() {
        assert_eq!(
            ChainProblem::Edited { seq: 7 }.to_string(),
            "record 7 was edited: its contents no longer match its hash (or it was forged without the audit key)"
        );
        assert_eq!(
            ChainProblem::Missing { first: 3, last: 4 }.to_string(),
            "records 3..=4 are missing: deleted from the log"
        );
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let a = AuditEntry {
            actor: "user:ab".into(),
            target: "c".into(),
            ..entry(0)
        };
        let b = AuditEntry {
            actor: "user:a".into(),
            target: "bc".into(),
            ..entry(0)
        };
        assert_ne!(
            chain_hash(KEY, GENESIS, 1, 0, &a),
            chain_hash(KEY, GENESIS, 1, 0, &b)
        );
    }
}
