//! The control plane (Phase 7): explains, asks for confirmation, dispatches exactly once,
//! audits. Owns no authoritative state.
//!
//! Layers, each calling only the ones below: `api` (tonic services, parsing, presenting) →
//! `flow` (pending actions) → `explain` (explanations from snapshots) and `digest` (an
//! explanation's wire form and its SHA-256) → `adapter` (the only caller of kernel APIs, and
//! `adapter::snapshot`, which reads a kernel's answer into domain values), with the audit log
//! beside `api` and `flow`. `rounds` lets concurrent whole-cluster reads share one fresh
//! fan-out. `access` records denied calls and refused handshakes; `budget` bounds the records one
//! identity's reads and refusals can add; `error` is every failure and its one wire form, used
//! by the api's answers and the flow's audit records alike.
pub mod access;
pub mod adapter;
pub mod api;
pub mod budget;
pub mod config;
pub mod context;
pub mod digest;
pub mod error;
pub mod explain;
pub mod flow;
pub mod rounds;
pub mod run;
