//! The audit trail: durable, totally ordered, tamper-evident.
//!
//! - `record`: what a record holds (stages, identity, outcome, kernel response, observation).
//! - `chain`: the payload layout and hash chain (pure).
//! - `log`: durable append with group commit, fault handling, recovery.
//! - `checkpoint`: the instance key and signed checkpoints.
//! - `verify`: streaming verification and reading.
//! - `crosscheck`: the trail against the kernels' ledgers (every executed action signed and
//!   confirmed).
pub mod chain;
pub mod checkpoint;
pub mod crosscheck;
pub mod log;
pub mod record;
pub mod verify;
