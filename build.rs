//! Compiles `proto/` with protox (no system `protoc`) and tonic-prost-build, and writes the
//! encoded descriptor set used by the reflection service.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &["proto/aerodb/kernel/v1/kernel.proto", "proto/aerodb/control/v1/control.proto"];

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

    println!("cargo:rerun-if-changed={ETCD_PROTO}");
    let etcd = protox::compile([ETCD_PROTO], ["bench/proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(etcd)?;
    Ok(())
}
