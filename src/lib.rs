//! # AeroDB
//!
//! A correctness-first database kernel and its Phase 7 control plane.
//!
//! ## Layout
//! - [`proto`]: the generated gRPC contract (`proto/`); [`wire`]: the error model on the wire
//!   (ErrorInfo, BadRequest), one map per server.
//! - [`contract`]: value types shared by the kernel and the control plane (actions, requester,
//!   request digest, `AERO_*` codes, the action checks as data, members, the signed intent and
//!   the approval policy); the control plane uses nothing else of the kernel.
//! - [`tls`]: mutual TLS (rustls configs and reload, identity from the URI SAN, server identity,
//!   authorization as a pure table plus one layer, connection limits, the accept loop).
//! - [`serve`]: serving a set of gRPC services over [`tls`] with the [`edge`] and authorization
//!   layers, health and reflection; [`edge`]: each request's content type, framing and size
//!   before it is decoded; [`limits`]: the maximum of every request field of both servers.
//! - [`kernel`]: `aerodb node`: WAL, ledger, authority fold, replication, promotion and demotion,
//!   key claims, Execute and its verification of signed intents, online snapshots, WAL compaction
//!   and catch-up by snapshot, diagnostics, the tonic services.
//! - [`control`]: `aerodb control`: api (tonic services; `convert` is the Actor's wire edge,
//!   parsing requests and presenting answers) → flow (the action's life as types, and the typed audit event each step
//!   owes) → explain (domain explanations) and digest (an explanation's wire form and plan
//!   digest) → adapter (the only kernel caller; `adapter::snapshot` reads kernel answers into
//!   domain values), with `error` (every failure and its one wire form), the audit log and the
//!   record budget beside. No layer imports one above it.
//! - [`audit`]: records, hash chain, RFC 6962 Merkle tree and proofs, durable log with group
//!   commit, signed-note checkpoints, recovery from the newest checkpoint, verification, and the
//!   offline cross-check of the trail against kernel ledgers.
//! - [`pki`]: certificate authority tooling (`aerodb certs`) and intent signing with an actor's
//!   key; [`cli`]: `aerodb` and `aerodbctl`;
//!   [`dev`]: the embedded cluster (`aerodb dev`).
//! - [`metrics`]: Prometheus metrics of every process and their plain-HTTP `/metrics` endpoint.
//! - [`clock`]: the one place time is read; [`config`]: the TOML reader and range check every
//!   configuration uses; [`fsutil`]: durable, private file operations; [`frame`]: the length +
//!   CRC framing of every log; [`failpoint`]: named crash points (feature `failpoints`);
//!   [`shutdown`]: the shutdown signal.
//! - `bench` (feature `bench`): `aerodb-bench`'s measured ratios.
//!
//! ## The request path
//! TLS 1.3 handshake (client certificate verified, identity derived) → authorization layer
//! (method table, default deny) → edge (one well-formed message within its size) → api (tonic
//! service: field limits, parsing) → flow (pending action, confirmation, one dispatch, the
//! outcome) → explain (facts from kernel snapshots) → adapter (the only caller of kernel APIs) →
//! kernel, which executes only what the operator's key signed. The audit log sits beside api and
//! flow.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod control;
pub mod dev;
pub mod edge;
pub mod failpoint;
pub mod frame;
pub mod fsutil;
pub mod kernel;
pub mod limits;
pub mod metrics;
pub mod pki;
pub mod serve;
pub mod shutdown;
pub mod tls;
pub mod wire;

/// The generated gRPC contract.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    /// Package `aerodb.*`.
    pub mod aerodb {
        /// Package `aerodb.kernel`.
        pub mod kernel {
            /// `aerodb.kernel.v1`.
            pub mod v1 {
                tonic::include_proto!("aerodb.kernel.v1");
            }
        }
        /// Package `aerodb.control`.
        pub mod control {
            /// `aerodb.control.v1`.
            pub mod v1 {
                tonic::include_proto!("aerodb.control.v1");
            }
        }
    }
    pub use aerodb::control::v1 as control;
    pub use aerodb::kernel::v1 as kernel;

    /// The encoded descriptor set of every proto file, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aerodb_descriptor.bin"));
}

/// etcd's KV API subset, for the benchmark's comparison runs only.
#[cfg(feature = "bench")]
pub mod etcd_proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("etcdserverpb");
}

/// Thin public entry points into crate-private code for the `cargo fuzz` targets in `fuzz/`.
/// Not part of the API: each wraps exactly one private function without changing it.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::Bytes;

    use crate::edge::EdgeRefusal;

    /// `crate::edge::one_message` over a request body delivered as `chunks` (one HTTP/2 DATA
    /// frame each), driven to completion on the calling thread.
    pub fn one_message(chunks: Vec<Vec<u8>>, path: &str, max: usize) -> Result<Bytes, EdgeRefusal> {
        let frames =
            chunks.into_iter().map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c))));
        let body = tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(frames)));
        futures::executor::block_on(crate::edge::one_message(body, path, max))
    }
}
