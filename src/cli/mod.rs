//! Command-line front ends: `aerodb` (processes and tooling) and `aerodbctl` (the operator CLI).
pub mod aerodb;
pub mod check;
pub mod ctl;
