//! The data plane on a node: Put, Get, Delete, Scan.
//!
//! Writes go to the primary; a write is acknowledged only once it is applied after being durable
//! on a majority, and only if the entry at its index is still the one written (a discarded
//! suffix never acknowledges). Reads are served by the primary from applied state.

use super::authority::Role;
use super::codes;
use super::entry::{Kind, encode_put};
use super::kv::{KEY_BYTES_MAX, SCAN_LIMIT_MAX, VALUE_BYTES_MAX};
use super::node::Node;
use super::wal::WalError;

/// Why a data-plane call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DataError {
    /// A field breaks its limit.
    #[error("{field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        why: String,
    },
    /// This node is not the primary.
    #[error("{node} is not the primary ({role}); the primary of epoch {epoch} is {primary}")]
    NotPrimary {
        /// This node.
        node: String,
        /// Its role.
        role: String,
        /// The primary it knows ("unknown" if none).
        primary: String,
        /// That primary's epoch.
        epoch: u64,
        /// That primary's `host:port` from this node's `members` (empty when unknown).
        primary_address: String,
    },
    /// This node is halted.
    #[error("{node} is halted ({reason}) and takes no reads or writes")]
    Halted {
        /// This node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Not durable on a majority in time (it may still become durable).
    #[error("write at index {index} not acknowledged within {timeout_ms} ms: it may or may not become durable")]
    NotAcknowledged {
        /// Its index.
        index: u64,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The write was discarded before a majority held it.
    #[error("write at index {index} was discarded before a majority held it; it did not happen")]
    Discarded {
        /// Its index.
        index: u64,
    },
    /// The primary has not committed and applied up to its read floor within the deadline (a
    /// fresh promotion's EpochStart, or the log it held when it restarted), so its state may lack
    /// an acknowledged write or hold an uncommitted one; it answers no read until it has.
    #[error(
        "{node} is the primary but has committed up to index {committed} and applied up to {applied} of \
         the {floor} it must reach before reading, after {timeout_ms} ms; it serves no read that could \
         miss an acknowledged write or show an uncommitted one"
    )]
    NotReady {
        /// This node.
        node: String,
        /// What it has applied.
        applied: u64,
        /// What it knows committed.
        committed: u64,
        /// The index both must reach.
        floor: u64,
        /// The deadline.
        timeout_ms: u64,
    },
}

impl DataError {
    /// The stable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            DataError::Invalid { .. } => codes::INVALID_ARGUMENT,
            DataError::NotPrimary { .. } => codes::NOT_PRIMARY,
            DataError::Halted { .. } => codes::NODE_HALTED,
            DataError::NotAcknowledged { .. } | DataError::Discarded { .. } => codes::WRITE_NOT_ACKNOWLEDGED,
            DataError::NotReady { .. } => codes::PRIMARY_NOT_READY,
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), DataError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(DataError::Invalid { field: "key", why: format!("must be 1..={KEY_BYTES_MAX} bytes") });
    }
    Ok(())
}

impl Node {
    /// The primary's epoch, or why this node is not it.
    fn primary_or_refuse(&self) -> Result<u64, DataError> {
        let core = self.lock();
        match &core.authority.role {
            Role::Primary { epoch } => Ok(*epoch),
            Role::Halted { reason, detail, .. } => {
                Err(DataError::Halted { node: self.cfg.node_id.clone(), reason: format!("{reason:?}: {detail}") })
            }
            other => {
                let (primary, epoch) = core.following.clone().unwrap_or_else(|| ("unknown".into(), 0));
                let primary_address =
                    self.cfg.members.iter().find(|m| m.id == primary).map(|m| m.address.clone()).unwrap_or_default();
                Err(DataError::NotPrimary {
                    node: self.cfg.node_id.clone(),
                    role: match other {
                        Role::Demoted { .. } => "demoted",
                        _ => "replica",
                    }
                    .into(),
                    primary,
                    epoch,
                    primary_address,
                })
            }
        }
    }

    async fn write(&self, kind: Kind, payload: Vec<u8>) -> Result<(u64, u64), DataError> {
        let epoch = self.primary_or_refuse()?;
        let index = match self.wal.propose(epoch, kind, payload).await {
            Ok(i) => i,
            Err(WalError::NotWritable { .. }) => {
                return Err(self.primary_or_refuse().err().unwrap_or(DataError::Halted {
                    node: self.cfg.node_id.clone(),
                    reason: "the WAL stopped taking writes".into(),
                }));
            }
            Err(e) => {
                return Err(DataError::Halted { node: self.cfg.node_id.clone(), reason: format!("WAL failure: {e}") });
            }
        };
        let hash = self.wal.hash_at(index).map(|(_, h)| h);
        let timeout = self.write_ack_timeout();
        let mut applied = self.applied_watch();
        let reached = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= index)).await;
        if !matches!(reached, Ok(Ok(_))) {
            return Err(DataError::NotAcknowledged { index, timeout_ms: timeout.as_millis() as u64 });
        }
        // An index below the WAL's first was compacted into a snapshot, which holds only
        // committed entries: it was not discarded.
        let compacted = index < self.wal.first_index();
        if !compacted && self.wal.hash_at(index).map(|(_, h)| h) != hash {
            return Err(DataError::Discarded { index });
        }
        Ok((index, epoch))
    }

    /// Put: acknowledged once durable on a majority and applied.
    pub(crate) async fn put(&self, key: &[u8], value: &[u8]) -> Result<(u64, u64), DataError> {
        check_key(key)?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(DataError::Invalid { field: "value", why: format!("must be at most {VALUE_BYTES_MAX} bytes") });
        }
        self.write(Kind::Put, encode_put(key, value)).await
    }

    /// Delete: acknowledged like a Put.
    pub(crate) async fn delete(&self, key: &[u8]) -> Result<(u64, u64), DataError> {
        check_key(key)?;
        self.write(Kind::Delete, key.to_vec()).await
    }

    /// Waits (bounded by the write acknowledgement timeout) until this primary may answer reads:
    /// its own epoch's EpochStart is written, and both its commit index and its applied index have
    /// reached its read floor ([`super::node::Core::read_floor`]). After a fresh promotion the
    /// floor is its EpochStart: every entry before it was committed under an earlier epoch, and
    /// committing the EpochStart commits them. After a restart as primary it is the whole WAL
    /// held at open, which holds every write this node acknowledged before it stopped; requiring
    /// the commit index too keeps entries a snapshot applied before they were known to be
    /// committed from being read. A read never answers from a state missing an acknowledged write
    /// or holding an uncommitted one.
    async fn ready_for_reads(&self) -> Result<(), DataError> {
        let epoch = self.primary_or_refuse()?;
        let timeout = self.write_ack_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut applied = self.applied_watch();
        let mut commit = self.commit_watch();
        loop {
            // Mark the current values seen before reading the state, so a change that lands
            // after the read wakes the wait below.
            applied.borrow_and_update();
            commit.borrow_and_update();
            let (floor, committed, own, now) = {
                let core = self.lock();
                let own = self.own_epoch_start(&core, epoch).is_some();
                (core.read_floor, core.commit_index, own, core.kv.applied())
            };
            if own && committed >= floor && now >= floor {
                return Ok(());
            }
            // The commit and applied indexes move as the floor is reached; wake on either, bounded.
            let woke = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    r = applied.changed() => r.is_ok(),
                    r = commit.changed() => r.is_ok(),
                }
            })
            .await;
            if !matches!(woke, Ok(true)) {
                return Err(DataError::NotReady {
                    node: self.cfg.node_id.clone(),
                    applied: now,
                    committed,
                    floor,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            self.primary_or_refuse()?;
        }
    }

    /// Get from the primary's applied state, once it is ready for reads.
    pub(crate) async fn get(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, u64), DataError> {
        check_key(key)?;
        self.ready_for_reads().await?;
        let core = self.lock();
        Ok((core.kv.get(key).cloned(), core.kv.applied()))
    }

    /// Scan from the primary's applied state, once it is ready for reads.
    pub(crate) async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<(super::kv::Pairs, bool, u64), DataError> {
        if limit == 0 || limit > SCAN_LIMIT_MAX {
            return Err(DataError::Invalid { field: "limit", why: format!("must be 1..={SCAN_LIMIT_MAX}") });
        }
        if start.len() > KEY_BYTES_MAX || end.len() > KEY_BYTES_MAX {
            return Err(DataError::Invalid {
                field: "start_key",
                why: format!("keys are at most {KEY_BYTES_MAX} bytes"),
            });
        }
        self.ready_for_reads().await?;
        let core = self.lock();
        let (entries, more) = core.kv.scan(start, end, limit as usize);
        Ok((entries, more, core.kv.applied()))
    }
}
