//! The audit log as the rest of the control plane uses it: append a record
//! (serialized, chained with the audit key) and fail closed — a caller that
//! cannot get its record written must not act — plus verification of the
//! stored chain. The chaining rules are `audit`; the rows are `store::audit`.

use crate::audit::{AuditEntry, AuditRecord, ChainVerifier, Verification};
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// A record could not be written, so the action it records was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "the audit log cannot be written ({source}); the request was refused so that nothing happens unrecorded — make the store writable and retry"
)]
pub struct AuditError {
    #[source]
    pub source: StoreError,
}

/// Appends to and verifies the hash-chained audit log.
pub struct AuditLog {
    store: Store,
    clock: Arc<dyn Clock>,
    key: Zeroizing<Vec<u8>>,
    /// One append at a time, so each record chains onto the last.
    append: tokio::sync::Mutex<()>,
    failures: AtomicU64,
}

impl AuditLog {
    pub fn new(store: Store, clock: Arc<dyn Clock>, key: Zeroizing<Vec<u8>>) -> Self {
        Self {
            store,
            clock,
            key,
            append: tokio::sync::Mutex::new(()),
            failures: AtomicU64::new(0),
        }
    }

    /// Writes one record; an `Err` means the caller must not go on.
    pub async fn record(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let _turn = self.append.lock().await;
        let result = self
            .store
            .append_audit(&self.key, self.clock.now_ms(), entry.clone())
            .await;
        match result {
            Ok(record) => Ok(record),
            Err(source) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    error = %source,
                    action = entry.action,
                    actor = entry.actor,
                    "could not write an audit record; the request is refused"
                );
                Err(AuditError { source })
            }
        }
    }

    /// How many records could not be written since start (for `/metrics`).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Walks the whole stored chain, a page at a time.
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        let mut verifier = ChainVerifier::new(&self.key);
        let mut after = 0;
        loop {
            let page = self.store.audit_chain_page(after, 1_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                verifier.push(record);
            }
        }
        Ok(verifier.finish())
    }
}
