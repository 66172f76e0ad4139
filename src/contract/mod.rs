//! The contract between the kernel and the control plane: value types only.
//!
//! Both sides depend on this module; the control plane depends on the kernel through nothing
//! else but its adapter (the one caller of kernel APIs, over gRPC). What lives here:
//!
//! - [`action`]: the closed set of actions, the requester and the confirmation as forwarded;
//! - [`digest`]: the canonical request digest and the idempotency-key rule, computed identically
//!   on both sides;
//! - [`codes`]: every stable `AERO_*` code the kernel answers with;
//! - [`checks`]: the promotion and demotion checks as data, which the kernel rejects by and
//!   explanations cite;
//! - [`cluster`]: a member of the cluster (node id and address);
//! - [`intent`]: the signed intent (the canonical bytes an operator signs and the kernel
//!   verifies) and the approvals each command needs.
//!
//! Epochs, control sequences and plan epochs travel as `u64` fields of the generated proto types
//! (`crate::proto::kernel`), which are the wire contract itself.

pub mod action;
pub mod checks;
pub mod cluster;
pub mod codes;
pub mod digest;
pub mod intent;
