//! Compiles `proto/` with protox (no system `protoc`) and tonic-prost-build, and writes the
//! encoded descriptor set used by the reflection service.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &["proto/aerodb/kernel/v1/kernel.proto", "proto/aerodb/control/v1/control.proto"];

/// `google.rpc` error details, vendored (Apache-2.0, googleapis; as shipped by tonic-types): its
/// descriptors are served by reflection so that tools can decode the details every error carries;
/// the Rust types come from tonic-types. No code is generated from it.
const ERROR_DETAILS_PROTO: &str = "proto/google/rpc/error_details.proto";

/// etcd's KV API subset, used only by `aerodb-bench` for its comparison runs (client only).
const ETCD_PROTO: &str = "bench/proto/etcd_kv.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("aerodb_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;

    // The google.rpc error detail types with the well-known types they import, for the reflection
    // service only (tonic-types has the Rust types): reflection-driven tools (grpcurl) then print
    // ErrorInfo and BadRequest decoded.
    println!("cargo:rerun-if-changed={ERROR_DETAILS_PROTO}");
    let details = protox::compile([ERROR_DETAILS_PROTO], ["proto"])?;
    std::fs::write(out_dir.join("google_rpc_descriptor.bin"), details.encode_to_vec())?;

    println!("cargo:rerun-if-changed={ETCD_PROTO}");
    let etcd = protox::compile([ETCD_PROTO], ["bench/proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(etcd)?;
    Ok(())
}
