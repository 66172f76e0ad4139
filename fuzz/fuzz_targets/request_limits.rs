//! Every request conversion over arbitrary protobuf: byte 0 picks the request type, the rest is
//! decoded as it. Decoding, the limit check and the parse into domain values never panic; a
//! request within its limits that parses keeps its fields.
#![no_main]

use aerodb::control::api::convert;
use aerodb::kernel::records::{Action, Confirmation};
use aerodb::limits::RequestLimits;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn limits<M: Message + Default + RequestLimits>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let _ = m.check_limits();
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    let [which, bytes @ ..] = data else { return };
    match which % 24 {
        0 => {
            if let Some(r) = limits::<cpb::RequestActionRequest>(bytes)
                && let Ok(a) = convert::action_request(&r, &["n1", "n2", "n3"])
            {
                assert_eq!(a.target, r.target_node);
                assert_eq!(a.idempotency_key, r.idempotency_key);
            }
        }
        1 => {
            if let Some(r) = limits::<cpb::ConfirmActionRequest>(bytes)
                && let Ok(c) = convert::confirm_input(&r)
            {
                assert_eq!(c.confirmation_id, r.confirmation_id);
            }
        }
        2 => drop(limits::<cpb::GetNodeRequest>(bytes)),
        3 => drop(limits::<cpb::InspectWalRequest>(bytes)),
        4 => drop(limits::<cpb::InspectSnapshotsRequest>(bytes)),
        5 => drop(limits::<cpb::GetOutcomeRequest>(bytes)),
        6 => drop(limits::<cpb::DeclineActionRequest>(bytes)),
        7 => drop(limits::<cpb::ReadAuditRequest>(bytes)),
        8 => drop(limits::<cpb::ReconstructActionRequest>(bytes)),
        9 => {
            if let Some(r) = limits::<kpb::ExecuteRequest>(bytes) {
                if let Some(a) = r.action.as_ref().and_then(Action::from_proto) {
                    assert_eq!(Action::from_proto(&a.to_proto()), Some(a));
                }
                let c = Confirmation::from_proto(r.confirmation.as_ref());
                assert_eq!(Confirmation::from_proto(Some(&c.to_proto())), c);
                let _ = aerodb::kernel::execute::parse(&r);
            }
        }
        10 => drop(limits::<kpb::GetOutcomeRequest>(bytes)),
        11 => drop(limits::<kpb::StatusRequest>(bytes)),
        12 => drop(limits::<kpb::PullRequest>(bytes)),
        13 => drop(limits::<kpb::HashAtRequest>(bytes)),
        14 => drop(limits::<kpb::GrantRequest>(bytes)),
        15 => drop(limits::<kpb::ClaimKeyRequest>(bytes)),
        16 => drop(limits::<kpb::PutRequest>(bytes)),
        17 => drop(limits::<kpb::GetRequest>(bytes)),
        18 => drop(limits::<kpb::DeleteRequest>(bytes)),
        19 => drop(limits::<kpb::ScanRequest>(bytes)),
        20 => {
            if let Ok(e) = kpb::WalEntry::decode(bytes)
                && let Some(entry) = aerodb::kernel::entry::Entry::from_proto(&e)
            {
                assert_eq!(aerodb::kernel::entry::Entry::from_proto(&entry.to_proto()), Some(entry));
            }
        }
        21 => drop(limits::<cpb::GetClusterStateRequest>(bytes)),
        22 => drop(limits::<kpb::ObserveRequest>(bytes)),
        _ => drop(limits::<cpb::VerifyAuditRequest>(bytes)),
    }
});
