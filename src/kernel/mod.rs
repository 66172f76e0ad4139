//! The kernel: one AeroDB node, the sole authority on correctness.
//!
//! - `entry`: WAL entry encoding and hash chain.
//! - `wal`: the write-ahead log (segments, group commit, recovery).
//! - `records`, `ledger`: the kernel ledger and its record types.
//! - `authority`: the role state as the fold of the ledger.
//! - `kv`: the key-value state machine.
//! - `node`: recovery, shared state, commit tracking, observation.
//! - `replication`: discovery, pull, fork resolution, grants.
//! - `execute`, `codes`, `digest`: exactly-once `Kernel.Execute` and its rejections.
//! - `signed`: verification of the signed intent and approvals every Execute must carry.
//! - `diagnostics`, `snapshot`, `data`: the read-only scan, snapshots, the data plane.
//! - `lifecycle`, `transfer`: online snapshots and WAL compaction; catch-up by snapshot.
//! - `service`, `run`, `config`: tonic glue, the process, its configuration.
pub mod authority;
pub mod claims;
pub mod config;
pub mod data;
pub mod datadir;
pub mod diagnostics;
pub mod entry;
pub mod execute;
pub mod kv;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub mod observe;
pub mod promotion;
pub mod records;
pub mod replication;
pub mod run;
pub mod service;
pub mod signed;
pub mod snapshot;
pub mod transfer;
pub mod wal;

/// The kernel's stable codes (they belong to the contract with the control plane).
pub use crate::contract::codes;
/// The canonical request digest (part of the contract with the control plane).
pub use crate::contract::digest;
