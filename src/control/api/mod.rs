//! The control plane's tonic services: input parsing, audit, error mapping. One file per
//! service; `convert` is the Actor's wire edge both ways (requests and the caller's permit
//! parsed into domain values, the flow's domain answers presented as wire messages). Errors
//! reach the wire through the one map in [`crate::control::error`]; explanations through
//! [`crate::control::digest`].

pub mod actor;
pub mod auditor;
pub mod convert;
pub mod observer;

pub use crate::control::context::{Ctx, SharedCtx};
