//! The audit trail: durable, totally ordered, tamper-evident, a transparency log.
//!
//! - `record`: what a record holds (stages, identity, outcome, kernel response, observation).
//! - `chain`: the payload layout and hash chain (pure).
//! - `merkle`: the RFC 6962 tree, proofs and their verification (pure).
//! - `tree`: the durable tree file beside the segments.
//! - `log`: durable append with group commit, fault handling.
//! - `recovery`: what start does with records, tree and checkpoint (a decision table).
//! - `checkpoint`: the instance key and C2SP signed-note checkpoints (`checkpoint_v1`: the
//!   legacy chain checkpoints, read only).
//! - `archive`: moving sealed segments below the newest checkpoint elsewhere, noting the archive
//!   point.
//! - `reconstruct`: an action across the directories of several instances (offline).
//! - `verify`: streaming verification and reading.
//! - `witness`: a key apart from the control plane that cosigns only consistent checkpoints.
//! - `crosscheck`: the trail against the kernels' ledgers (every executed action signed and
//!   confirmed).
pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod checkpoint_v1;
pub mod crosscheck;
pub mod log;
pub mod merkle;
pub mod reconstruct;
pub mod record;
pub mod recovery;
pub mod tree;
pub mod verify;
pub mod witness;
