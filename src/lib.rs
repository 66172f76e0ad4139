//! # AeroDB
//!
//! A correctness-first database kernel and its Phase 7 control plane.
//!
//! ## Layout
//! - [`proto`]: the generated gRPC contract (`proto/`).
//! - [`wire`]: the error model on the wire (ErrorInfo, BadRequest).
//! - [`clock`]: the one place time is read.
//! - [`tls`]: mutual TLS, identity from certificates, authorization.
//! - [`pki`]: certificate authority tooling (`aerodb certs`).
//! - [`limits`]: the maximum of every request field of both servers, checked at the edge.
//! - [`edge`]: the HTTP/2 edge of both servers: content type, framing and size of each request
//!   before it is decoded; undecodable requests are the caller's error.
//!
//! ## The request path
//! TLS 1.3 handshake (client certificate verified, identity derived) → authorization layer
//! (method table, default deny) → api (tonic service, input parsing) → flow (confirmation) →
//! explain (facts from kernel snapshots) → adapter (the only caller of kernel APIs) → kernel.
//! The audit log sits beside api and flow.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod control;
pub mod dev;
pub mod edge;
pub mod failpoint;
pub mod frame;
pub mod fsutil;
pub mod kernel;
pub mod limits;
pub mod pki;
pub mod server;
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
pub mod etcd_proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("etcdserverpb");
}
