//! The control plane (Phase 7): explains, asks for confirmation, dispatches exactly once,
//! audits. Owns no authoritative state.
//!
//! Layers, each calling only the one below: `api` (tonic services, parsing, error mapping) →
//! `flow` (pending actions) → `explain` (explanations from snapshots) → `adapter` (the only
//! caller of kernel APIs), with the audit log beside `api` and `flow`. `rounds` lets concurrent
//! whole-cluster reads share one fresh fan-out. `access` records denied calls and refused
//! handshakes; `budget` bounds the records one identity's reads and refusals can add; `error` is
//! every failure, mapped to the wire in `api::status`.
pub mod access;
pub mod adapter;
pub mod api;
pub mod budget;
pub mod config;
pub mod context;
pub mod error;
pub mod explain;
pub mod flow;
pub mod rounds;
pub mod run;
