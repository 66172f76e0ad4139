//! The kernel: one AeroDB node, the sole authority on correctness.
//!
//! - `entry`: WAL entry encoding and hash chain.
//! - `wal`: the write-ahead log (segments, group commit, recovery).
//! - `records`, `ledger`: the kernel ledger and its record types.
//! - `authority`: the role state as the fold of the ledger.
//! - `kv`: the key-value state machine.
//! - `node`: recovery, shared state, commit tracking, observation.
//! - `replication`: discovery, pull, fork resolution, grants.
//! - `execute`, `codes`, `digest`: exactly-once `Kernel.Execute` and its rejections, on
//!   domain values (`service` parses the wire request and presents the answer).
//! - `signed`: verification of the signed intent and approvals every Execute must carry.
//! - `diagnostics`, `snapshot`, `data`: the read-only scan, snapshots, the data plane.
//! - `lifecycle`, `transfer`: online snapshots and WAL compaction; catch-up by snapshot.
//! - `service`, `run`, `config`: tonic glue, the process, its configuration.
//!
//! # What is public
//! The kernel's internals are `pub(crate)`; the control plane reaches the kernel only through
//! [`crate::contract`] and its adapter (over gRPC). Public, for code outside the crate:
//! - the configuration of `aerodb node`: [`config`] and [`lifecycle::Lifecycle`];
//! - the on-disk formats and their offline readers, for the integration tests, the fuzz targets
//!   and the fuzz corpus writer: [`records`], [`entry`], [`ledger::Ledger`]'s `read_all`, `open`
//!   and `open_with`, [`wal::read_dir`] with [`wal::Base`] and [`wal::EpochMark`],
//!   [`snapshot::list`], [`snapshot::read_manifest`], [`snapshot::read_data`],
//!   [`snapshot::write`], [`kv::Kv`]'s `from_parts` and `map`, and [`execute::parse`];
//! - [`node::init`] (`aerodb node init`);
//! - an in-process [`node::Node`] (`open`, `execute`, `control_seq`, `authority`,
//!   `highest_known_epoch`, with [`authority::Authority`] and [`signed::IntentVerifier::new`]),
//!   its request [`execute::Request`] (from [`execute::parse`]) and answer [`execute::Answer`]
//!   with [`execute::AnsweredRecord`], for the ledger-model test that drives one kernel without
//!   processes;
//! - [`transfer::CHUNK_BYTES_MAX`], the bound the catch-up test checks.
pub mod authority;
pub(crate) mod claims;
pub mod config;
pub(crate) mod data;
pub(crate) mod datadir;
pub(crate) mod diagnostics;
pub mod entry;
pub mod execute;
pub mod kv;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub(crate) mod observe;
pub(crate) mod promotion;
pub mod records;
pub(crate) mod replication;
pub(crate) mod run;
pub(crate) mod service;
pub mod signed;
pub mod snapshot;
pub mod transfer;
pub mod wal;

/// The kernel's stable codes (they belong to the contract with the control plane).
pub(crate) use crate::contract::codes;
/// The canonical request digest (part of the contract with the control plane).
pub(crate) use crate::contract::digest;
