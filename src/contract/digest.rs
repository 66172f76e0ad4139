//! The canonical digest of an action request, computed identically by the control plane and
//! the kernel (which refuses a digest that does not match the request it came with).

use sha2::{Digest, Sha256};

use super::action::{Action, ActionKind, Requester};

/// SHA-256 of `aerodb.request.v1` ‖ kind ‖ target ‖ force ‖ requester role/name, each line-
/// separated. The confirmation is not part of it: it is how the request was approved, not what
/// was requested.
pub fn request_digest(action: &Action, requester: &Requester) -> [u8; 32] {
    let kind = match action.kind {
        ActionKind::Promote => "promote",
        ActionKind::Demote => "demote",
        ActionKind::Diagnostics => "diagnostics",
    };
    let text = format!(
        "aerodb.request.v1\nkind={kind}\ntarget={}\nforce={}\nrequester={}/{}\n",
        action.target_node, action.force, requester.role, requester.name
    );
    Sha256::digest(text.as_bytes()).into()
}

/// The idempotency-key rule: 1..=128 characters of `[A-Za-z0-9._:-]`.
pub fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
