//! Human-readable tables. Facts only, in configuration order; an unreachable node is a row
//! that says so.

use crate::proto::control as pb;
use crate::proto::kernel as kpb;

/// Prints rows as an aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(&c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// A role's short name.
pub fn role(r: i32) -> &'static str {
    match kpb::Role::try_from(r).unwrap_or(kpb::Role::Unspecified) {
        kpb::Role::Primary => "primary",
        kpb::Role::Replica => "replica",
        kpb::Role::Demoted => "demoted",
        kpb::Role::Halted => "halted",
        kpb::Role::Unspecified => "-",
    }
}

fn halt(a: &kpb::AuthorityView) -> String {
    if a.role != kpb::Role::Halted as i32 {
        return String::new();
    }
    let reason = kpb::HaltReason::try_from(a.halt_reason)
        .map(|h| h.as_str_name().trim_start_matches("HALT_REASON_").to_lowercase())
        .unwrap_or_default();
    format!("{reason}: {}", a.halt_detail)
}

fn observed(points: &[kpb::ObservationPoint]) -> String {
    points.iter().map(|o| format!("{}@seq {}", o.node_id, o.control_seq)).collect::<Vec<_>>().join(", ")
}

fn unreachable_row(id: &str, u: &pb::Unreachable, cols: usize) -> Vec<String> {
    let mut row = vec![id.to_string()];
    row.extend(std::iter::repeat_n("-".to_string(), cols.saturating_sub(2)));
    row.push(format!("UNREACHABLE: {} ({})", u.error, u.status));
    row
}

/// `status`.
pub fn cluster(c: &pb::ClusterState) {
    println!("cluster {} (observed: {})", c.cluster_id, observed(&c.observed));
    let header = ["NODE", "ROLE", "EPOCH", "LAST", "COMMIT", "APPLIED", "FENCED", "GRANTED", "FOLLOWING", "STATE"];
    let rows: Vec<Vec<String>> = c
        .nodes
        .iter()
        .map(|n| match &n.state {
            Some(pb::node_entry::State::Snapshot(s)) => {
                let a = s.authority.clone().unwrap_or_default();
                let r = s.replication.clone().unwrap_or_default();
                let p = s.promotion.unwrap_or_default();
                vec![
                    n.node_id.clone(),
                    role(a.role).into(),
                    a.epoch.to_string(),
                    r.last_index.to_string(),
                    r.commit_index.to_string(),
                    r.applied_index.to_string(),
                    if p.current_epoch_fenced { format!("yes@{}", p.fence_index) } else { "no".into() },
                    a.highest_granted_epoch.to_string(),
                    if r.following.is_empty() { "-".into() } else { r.following.clone() },
                    {
                        let h = halt(&a);
                        if h.is_empty() { "ok".into() } else { format!("HALTED {h}") }
                    },
                ]
            }
            Some(pb::node_entry::State::Unreachable(u)) => unreachable_row(&n.node_id, u, header.len()),
            None => vec![n.node_id.clone()],
        })
        .collect();
    table(&header, &rows);
    if c.primary_claims.len() > 1 {
        let claims: Vec<String> =
            c.primary_claims.iter().map(|p| format!("{} (epoch {})", p.node_id, p.epoch)).collect();
        println!("note: {} nodes report the primary role: {}", claims.len(), claims.join(", "));
    }
    if c.approval_policies_differ {
        let policies: Vec<String> = c
            .nodes
            .iter()
            .filter_map(|n| match &n.state {
                Some(pb::node_entry::State::Snapshot(s)) => {
                    let a = s.approvals.unwrap_or_default();
                    Some(format!(
                        "{} (diagnostics {}, promotion {}, demotion {}, forced promotion {})",
                        n.node_id, a.run_diagnostics, a.request_promotion, a.request_demotion, a.force_promotion
                    ))
                }
                _ => None,
            })
            .collect();
        println!("note: the nodes' approval policies differ (signatures required): {}", policies.join("; "));
    }
}

/// `node`.
pub fn node(v: &pb::NodeView) {
    let Some(s) = &v.snapshot else { return };
    let a = s.authority.clone().unwrap_or_default();
    let r = s.replication.clone().unwrap_or_default();
    let p = s.promotion.unwrap_or_default();
    let w = s.wal.clone().unwrap_or_default();
    let l = s.ledger.unwrap_or_default();
    let o = s.observation.clone().unwrap_or_default();
    println!("node {} at {} (observed at control_seq {})", v.node_id, v.address, o.control_seq);
    let rows = vec![
        ("role", role(a.role).to_string()),
        ("halt", halt(&a)),
        ("epoch", a.epoch.to_string()),
        (
            "highest granted epoch",
            format!("{} (to {})", a.highest_granted_epoch, if a.granted_to.is_empty() { "-" } else { &a.granted_to }),
        ),
        (
            "known primary",
            if a.known_primary.is_empty() {
                "-".into()
            } else {
                format!("{} (epoch {})", a.known_primary, a.known_primary_epoch)
            },
        ),
        ("last index / epoch", format!("{} / {}", r.last_index, r.last_epoch)),
        ("commit / applied / durable", format!("{} / {} / {}", r.commit_index, r.applied_index, r.durable_index)),
        (
            "current epoch fenced",
            if p.current_epoch_fenced { format!("yes, Fence at {}", p.fence_index) } else { "no".into() },
        ),
        ("known primary commit", p.known_primary_commit_index.to_string()),
        (
            "last promotion",
            if p.last_promoted_epoch == 0 {
                "-".into()
            } else {
                format!("epoch {}{}", p.last_promoted_epoch, if p.last_promotion_forced { " (forced)" } else { "" })
            },
        ),
        ("action in flight", p.action_in_flight.to_string()),
        (
            "wal",
            format!(
                "{} segments, {} bytes, entries {}..={}",
                w.segments.len(),
                w.total_bytes,
                w.first_index,
                w.last_index
            ),
        ),
        ("ledger", format!("{} records, {} bytes, {} decided keys", l.records, l.bytes, l.decided_keys)),
        ("execute calls received", s.execute_calls_received.to_string()),
    ];
    for (k, v) in rows {
        println!("  {k:<28} {v}");
    }
    peers(&r);
}

fn peers(r: &kpb::ReplicationView) {
    if r.peers.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = r
        .peers
        .iter()
        .map(|p| {
            vec![
                p.node_id.clone(),
                if p.connected { "yes".into() } else { "no".into() },
                p.durable_index.to_string(),
                p.lag_entries.to_string(),
                role(p.role).into(),
                p.epoch.to_string(),
            ]
        })
        .collect();
    println!("  peers as this node sees them:");
    table(
        &["  PEER", "CONNECTED", "POSITION", "LAG", "ROLE", "EPOCH"],
        &rows
            .into_iter()
            .map(|mut r| {
                r[0] = format!("  {}", r[0]);
                r
            })
            .collect::<Vec<_>>(),
    );
}

/// `replication`.
pub fn replication(v: &pb::ReplicationStatus) {
    println!("observed: {}", observed(&v.observed));
    let header = ["NODE", "ROLE", "EPOCH", "LAST", "DURABLE", "COMMIT", "APPLIED", "FOLLOWING", "PEER LAG (entries)"];
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| match &n.state {
            Some(pb::node_replication::State::Facts(f)) => {
                let a = f.authority.clone().unwrap_or_default();
                let r = f.replication.clone().unwrap_or_default();
                vec![
                    n.node_id.clone(),
                    role(a.role).into(),
                    a.epoch.to_string(),
                    r.last_index.to_string(),
                    r.durable_index.to_string(),
                    r.commit_index.to_string(),
                    r.applied_index.to_string(),
                    if r.following.is_empty() { "-".into() } else { r.following.clone() },
                    r.peers.iter().map(|p| format!("{}:{}", p.node_id, p.lag_entries)).collect::<Vec<_>>().join(" "),
                ]
            }
            Some(pb::node_replication::State::Unreachable(u)) => unreachable_row(&n.node_id, u, header.len()),
            None => vec![n.node_id.clone()],
        })
        .collect();
    table(&header, &rows);
}

/// `promotion`.
pub fn promotion(v: &pb::PromotionState) {
    println!("observed: {}", observed(&v.observed));
    let header =
        ["NODE", "ROLE", "EPOCH", "GRANTED", "LAST(EPOCH)", "FENCED", "PRIMARY COMMIT", "LAST PROMOTION", "STATE"];
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| match &n.state {
            Some(pb::node_promotion::State::Facts(f)) => {
                let a = f.authority.clone().unwrap_or_default();
                let p = f.promotion.unwrap_or_default();
                vec![
                    n.node_id.clone(),
                    role(a.role).into(),
                    a.epoch.to_string(),
                    a.highest_granted_epoch.to_string(),
                    format!("{}({})", f.last_index, f.last_epoch),
                    if p.current_epoch_fenced { format!("yes@{}", p.fence_index) } else { "no".into() },
                    p.known_primary_commit_index.to_string(),
                    if p.last_promoted_epoch == 0 {
                        "-".into()
                    } else {
                        format!("{}{}", p.last_promoted_epoch, if p.last_promotion_forced { " forced" } else { "" })
                    },
                    {
                        let h = halt(&a);
                        if h.is_empty() { "ok".into() } else { format!("HALTED {h}") }
                    },
                ]
            }
            Some(pb::node_promotion::State::Unreachable(u)) => unreachable_row(&n.node_id, u, header.len()),
            None => vec![n.node_id.clone()],
        })
        .collect();
    table(&header, &rows);
}

/// `wal`.
pub fn wal(v: &pb::WalInspection) {
    println!("observed: {}", observed(&v.observed));
    let header = ["NODE", "SEGMENTS", "FIRST", "LAST", "DURABLE", "BYTES", "CHECKSUMS", "LEDGER SEQ", "LEDGER BYTES"];
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| match &n.state {
            Some(pb::node_wal::State::Facts(f)) => {
                let w = f.wal.clone().unwrap_or_default();
                let l = f.ledger.unwrap_or_default();
                vec![
                    n.node_id.clone(),
                    w.segments.len().to_string(),
                    w.first_index.to_string(),
                    w.last_index.to_string(),
                    w.durable_index.to_string(),
                    w.total_bytes.to_string(),
                    kpb::ChecksumStatus::try_from(w.checksum_status)
                        .map(|c| c.as_str_name().trim_start_matches("CHECKSUM_STATUS_").to_lowercase())
                        .unwrap_or_default(),
                    l.control_seq.to_string(),
                    l.bytes.to_string(),
                ]
            }
            Some(pb::node_wal::State::Unreachable(u)) => unreachable_row(&n.node_id, u, header.len()),
            None => vec![n.node_id.clone()],
        })
        .collect();
    table(&header, &rows);
}

/// `snapshots`.
pub fn snapshots(v: &pb::SnapshotInspection) {
    println!("observed: {}", observed(&v.observed));
    let mut rows = Vec::new();
    for n in &v.nodes {
        match &n.state {
            Some(pb::node_snapshots::State::Facts(f)) => {
                let snaps = f.snapshots.clone().unwrap_or_default().snapshots;
                if snaps.is_empty() {
                    rows.push(vec![n.node_id.clone(), "(none)".into(), "-".into(), "-".into(), "-".into(), "-".into()]);
                }
                for s in snaps {
                    rows.push(vec![
                        n.node_id.clone(),
                        s.name,
                        s.last_index.to_string(),
                        s.bytes.to_string(),
                        if s.valid {
                            if s.used_at_recovery { "valid, used".into() } else { "valid".into() }
                        } else {
                            format!("INVALID: {}", s.error)
                        },
                        s.last_epoch.to_string(),
                    ]);
                }
            }
            Some(pb::node_snapshots::State::Unreachable(u)) => rows.push(unreachable_row(&n.node_id, u, 6)),
            None => {}
        }
    }
    table(&["NODE", "SNAPSHOT", "LAST INDEX", "BYTES", "STATE", "EPOCH"], &rows);
}

/// A decided record in one line.
pub fn decided(r: &kpb::DecidedRecord) -> String {
    if r.decision == kpb::Decision::Rejected as i32 {
        let rej = r.rejection.clone().unwrap_or_default();
        return format!(
            "REJECTED at control_seq {}: {} [{}]: {}",
            r.control_seq,
            rej.code,
            rej.invariants.join(", "),
            rej.message
        );
    }
    use kpb::action_result::Result as R;
    let what = match r.result.as_ref().and_then(|x| x.result.as_ref()) {
        Some(R::Promotion(p)) => format!(
            "primary of epoch {}{}, granted by {}",
            p.epoch,
            if p.forced { " (forced)" } else { "" },
            p.granted_by.join(", ")
        ),
        Some(R::Demotion(d)) if d.from_halt => format!("demoted out of a halt (epoch {})", d.epoch),
        Some(R::Demotion(d)) => format!("demoted; Fence at index {} ends epoch {}", d.fence_index, d.epoch),
        Some(R::Diagnostics(d)) => format!(
            "diagnostics: WAL {} records / {} bytes {}, ledger {} records / {} bytes {} (declared cost {} bytes){}",
            d.wal_records_checked,
            d.wal_bytes_read,
            if d.wal_ok { "ok" } else { "PROBLEM" },
            d.ledger_records_checked,
            d.ledger_bytes_read,
            if d.ledger_ok { "ok" } else { "PROBLEM" },
            d.declared_cost_bytes,
            if d.first_problem.is_empty() { String::new() } else { format!("; first problem: {}", d.first_problem) }
        ),
        None => "executed".into(),
    };
    let target = r.action.as_ref().map(|a| a.target_node.clone()).unwrap_or_default();
    format!("EXECUTED at control_seq {} on {target}: {what}", r.control_seq)
}

/// `outcome`.
pub fn outcome(v: &pb::OutcomeView) {
    let status = pb::KeyStatus::try_from(v.status).map(|s| s.as_str_name()).unwrap_or("?");
    println!("idempotency key {}: {}", v.idempotency_key, status.trim_start_matches("KEY_STATUS_"));
    if let Some(r) = &v.record {
        println!("  {} (ledger of {})", decided(r), v.decided_on);
    }
    for n in &v.nodes {
        match &n.state {
            Some(pb::node_outcome::State::Answer(a)) => println!(
                "  {}: {}{}",
                n.node_id,
                if a.found { "decided" } else { "no record" },
                if a.in_flight { ", executing now" } else { "" }
            ),
            Some(pb::node_outcome::State::Unreachable(u)) => {
                println!("  {}: UNREACHABLE ({}): not known", n.node_id, u.error)
            }
            None => {}
        }
    }
}

/// A pending action's explanation.
pub fn explanation(p: &pb::PendingAction) {
    let Some(e) = &p.explanation else { return };
    println!("action:    {}", e.summary);
    if let Some(a) = &e.action {
        let kind = kpb::ActionKind::try_from(a.kind)
            .map(|k| k.as_str_name().trim_start_matches("ACTION_KIND_"))
            .unwrap_or("?");
        println!(
            "kernel:    one Execute of {kind} on {} (force={}), bound to its control_seq {}",
            a.target_node, a.force, e.expected_control_seq
        );
    }
    println!("affects:   {}", e.affected_nodes.join(", "));
    if e.declared_cost_bytes > 0 {
        println!("cost:      reads {} bytes", e.declared_cost_bytes);
    }
    if e.irreversible.is_empty() {
        println!("cannot be undone: nothing (read-only)");
    } else {
        println!("cannot be undone:");
        for i in &e.irreversible {
            println!("  - {i}");
        }
    }
    if !e.kernel_checks.is_empty() {
        println!("kernel checks (in order; only the kernel evaluates them):");
        for c in &e.kernel_checks {
            println!(
                "  {}. {}{} [{}; {}]",
                c.order,
                c.description,
                if c.skipped { " (SKIPPED by force)" } else { "" },
                c.rejection_code,
                c.invariants.join(", ")
            );
        }
    }
    println!("invariants:");
    for i in &e.invariants {
        println!("  {:<7} {}", i.id, i.statement);
    }
    println!("facts (observed: {}):", observed(&e.observed));
    let names: Vec<String> = {
        let mut seen = Vec::new();
        for f in &e.facts {
            if !seen.contains(&f.name) {
                seen.push(f.name.clone());
            }
        }
        seen
    };
    let nodes: Vec<String> = {
        let mut seen = Vec::new();
        for f in &e.facts {
            if !seen.contains(&f.node_id) {
                seen.push(f.node_id.clone());
            }
        }
        seen
    };
    let mut header = vec!["  FACT".to_string()];
    header.extend(nodes.iter().cloned());
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let mut row = vec![format!("  {name}")];
            for n in &nodes {
                row.push(
                    e.facts
                        .iter()
                        .find(|f| &f.node_id == n && &f.name == name)
                        .map(|f| f.value.clone())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            row
        })
        .collect();
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    table(&h, &rows);
    if !e.unreachable_nodes.is_empty() {
        println!("could not be observed (no facts about them): {}", e.unreachable_nodes.join(", "));
    }
    println!(
        "expires in {} s; confirmation id {}…; plan digest {}",
        p.expires_after_seconds,
        &p.confirmation_id[..8.min(p.confirmation_id.len())],
        p.plan_digest
    );
}
