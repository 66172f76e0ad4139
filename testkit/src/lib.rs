//! AeroDB's integration-test harness: real `aerodb node` and `aerodb control` processes with
//! real certificates and data dirs on loopback. Crashes are SIGKILL. Every wait is a condition
//! with a bounded deadline.
//!
//! The `aerodb` package's integration tests use it as `use aerodb_testkit as common;`; the items
//! most tests need are re-exported here, the rest stay in their module.
//!
//! ## Layout
//! - [`bins`]: where the binaries under test are (and the repository root).
//! - [`wait`]: the bounded wait on a condition every other module uses.
//! - [`process`]: one child process with its log: start, kill, stop, pause, exit.
//! - [`cluster`]: a cluster of node and control-plane processes in a temporary directory, its
//!   clients, waits on its state, restarts and power cuts.
//! - [`pki`]: the test PKI, channels presenting a role's certificate, extra identities.
//! - [`sign`]: signed intents, signed with the requester's own test key.
//! - [`actions`]: RequestAction/ConfirmAction and Kernel.Execute as tests send them.
//! - [`load`]: writers that record acknowledged writes, and the check that none is lost.
//! - [`checkers`]: checks over ledgers, WALs and snapshots (one primary per epoch).
//! - [`proxy`]: a TCP fault proxy (cuts, delays, black holes).
//! - [`netns`]: partitions at the network layer (a network namespace per node).
//! - [`lazyfs`]: a FUSE disk that loses what was not synced, for power cuts.
//! - [`tmpfs`]: a small tmpfs a test can fill, and the filler.
//! - [`python`]: the Python interpreter of the client tests; [`ctl`]: aerodbctl as an operator
//!   runs it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod actions;
pub mod bins;
pub mod checkers;
pub mod cluster;
pub mod ctl;
pub mod lazyfs;
pub mod load;
pub mod netns;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod python;
pub mod sign;
pub mod tmpfs;
pub mod wait;

pub use actions::{
    confirm_pending, control_seq, exec_req, execute_calls, kernel_execute, key, request, request_and_confirm, verdict,
    wire, with_plan_epoch,
};
pub use bins::{aerodb_bin, aerodbctl_bin};
pub use checkers::{check_single_writer_per_epoch, decided, most_up_to_date};
pub use cluster::{Cluster, ControlProc, NodeProc, Spec, free_port};
pub use load::{Load, Rng, assert_all_present, scan_all};
pub use pki::{NODE_CERTS, Pki, TD, extra_identity, health_check, raw_channel, shared_dir};
pub use process::Proc;
pub use python::python;
pub use tmpfs::{Tmpfs, fill};
pub use wait::{WAIT, wait_for};
