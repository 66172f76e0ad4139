//! Proto messages as JSON: the canonical proto3 JSON mapping (via the compiled descriptor set),
//! with proto field names, enum names, every field present, and 64-bit integers as numbers.
//! This is the stable `--json` format (docs/operator-guide.md).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).ok()).as_ref()
}

/// `msg` (of proto type `full_name`, e.g. `aerodb.control.v1.ClusterState`) as JSON.
pub fn to_json<M: prost::Message>(msg: &M, full_name: &str) -> Value {
    let Some(desc) = pool().and_then(|p| p.get_message_by_name(full_name)) else {
        return Value::Null;
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) else {
        return Value::Null;
    };
    let opts =
        SerializeOptions::new().skip_default_fields(false).use_proto_field_name(true).stringify_64_bit_integers(false);
    let mut ser = serde_json::Serializer::new(Vec::new());
    if dynamic.serialize_with_options(&mut ser, &opts).is_err() {
        return Value::Null;
    }
    serde_json::from_slice(&ser.into_inner()).unwrap_or(Value::Null)
}
