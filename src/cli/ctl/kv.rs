//! `aerodbctl kv …`: the data plane, with a client-role profile pointing at a node.

use serde_json::json;

use tonic::Status;
use tonic::transport::Channel;

use super::{Cli, Exit, print_json, report_error_with};
use crate::contract::codes;
use crate::proto::kernel as kpb;
use crate::wire::{Outcome, WireError};

/// Data-plane subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Read a key from the primary.
    Get {
        /// The key (UTF-8).
        key: String,
    },
    /// Write a key; acknowledged once durable on a majority.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Keys in [start, end).
    Scan {
        /// First key.
        #[arg(long, default_value = "")]
        start: String,
        /// End key (exclusive; empty = no end).
        #[arg(long, default_value = "")]
        end: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Whether a failed data call may be sent to another node: only answers that prove nothing ran
/// (`AERO_NOT_PRIMARY`, `AERO_NODE_HALTED`, outcome NOT_EXECUTED). Returns the primary's address
/// when the refusing node named one (ErrorInfo metadata `primary_address`).
fn redirect(status: &Status) -> Option<Option<String>> {
    let w = WireError::from_status(status)?;
    let movable = (w.code == codes::NOT_PRIMARY || w.code == codes::NODE_HALTED) && w.outcome == Outcome::NotExecuted;
    if !movable {
        return None;
    }
    Some(w.extra.iter().find(|(k, v)| k == "primary_address" && !v.is_empty()).map(|(_, v)| v.clone()))
}

/// Runs a kv subcommand. The first node asked is `--endpoint` (or the profile's `endpoint`);
/// a node that answers that it is not the primary (or is halted) proved that nothing ran, so
/// the command goes on to the primary it names, else to the next of `--endpoints` (the
/// profile's `endpoints`) not asked yet, each node at most once. Any other answer ends it.
pub async fn run(cli: &Cli, command: &KvCommand) -> Exit {
    let conn = match cli.conn.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut candidates = vec![conn.endpoint.clone()];
    for e in &conn.endpoints {
        if !candidates.contains(e) {
            candidates.push(e.clone());
        }
    }
    let mut tried: Vec<String> = Vec::new();
    let mut endpoint = conn.endpoint.clone();
    loop {
        tried.push(endpoint.clone());
        let ch = match cli.conn.channel_at(&conn, &endpoint, crate::tls::identity::Role::Node) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        let status = match attempt(kpb::data_client::DataClient::new(ch), command, cli.json).await {
            Ok(exit) => return exit,
            Err(status) => status,
        };
        let next = match redirect(&status) {
            Some(named) => {
                named.filter(|a| !tried.contains(a)).or_else(|| candidates.iter().find(|c| !tried.contains(c)).cloned())
            }
            None => None,
        };
        match next {
            Some(n) => {
                let why = WireError::from_status(&status).map(|w| w.message).unwrap_or_default();
                eprintln!("{endpoint}: {why}; trying {n}");
                endpoint = n;
            }
            None => return report_kv_error(&status, cli.json, command),
        }
    }
}

/// Reports a failed kv call. A write whose outcome is unknown names the key and `kv get` as the
/// way to look at it (the data plane has no idempotency key to ask a ledger about).
fn report_kv_error(status: &Status, j: bool, command: &KvCommand) -> Exit {
    let (dispatched, key) = match command {
        KvCommand::Put { key, .. } | KvCommand::Delete { key } => (true, Some(key.as_str())),
        KvCommand::Get { .. } | KvCommand::Scan { .. } => (false, None),
    };
    let mut extra = serde_json::Map::new();
    let advice = match key {
        Some(k) => {
            extra.insert("key".into(), json!(k));
            extra.insert("look_up".into(), json!(format!("aerodbctl kv get {k}")));
            format!(
                "the write of key {k} may or may not be applied; look with: aerodbctl kv get {k} (a later write \
                 by anyone else would show instead)"
            )
        }
        None => String::new(),
    };
    report_error_with(status, j, dispatched, extra, &advice)
}

/// One attempt on one node: the exit code, or the status of a call that another node may take.
async fn attempt(
    mut data: kpb::data_client::DataClient<Channel>,
    command: &KvCommand,
    j: bool,
) -> Result<Exit, Status> {
    let fail = |s: Status| if redirect(&s).is_some() { Err(s) } else { Ok(report_kv_error(&s, j, command)) };
    match command {
        KvCommand::Get { key } => match data.get(kpb::GetRequest { key: key.as_bytes().to_vec() }).await {
            Ok(r) => {
                let r = r.into_inner();
                let value = String::from_utf8_lossy(&r.value).into_owned();
                if j {
                    print_json(
                        &json!({"key": key, "found": r.found, "value": value, "applied_index": r.applied_index}),
                    );
                } else if r.found {
                    println!("{value}");
                } else {
                    eprintln!("(not found)");
                }
                Ok(if r.found { Exit::Success } else { Exit::NotFound })
            }
            Err(s) => fail(s),
        },
        KvCommand::Put { key, value } => {
            match data.put(kpb::PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if j {
                        print_json(&json!({"key": key, "index": r.index, "epoch": r.epoch}));
                    } else {
                        println!("ok: index {} epoch {} (durable on a majority)", r.index, r.epoch);
                    }
                    Ok(Exit::Success)
                }
                Err(s) => fail(s),
            }
        }
        KvCommand::Delete { key } => match data.delete(kpb::DeleteRequest { key: key.as_bytes().to_vec() }).await {
            Ok(r) => {
                let r = r.into_inner();
                if j {
                    print_json(&json!({"key": key, "index": r.index, "epoch": r.epoch}));
                } else {
                    println!("ok: index {} epoch {}", r.index, r.epoch);
                }
                Ok(Exit::Success)
            }
            Err(s) => fail(s),
        },
        KvCommand::Scan { start, end, limit } => {
            let req = kpb::ScanRequest {
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
                limit: *limit,
            };
            match data.scan(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let pairs: Vec<(String, String)> = r
                        .entries
                        .iter()
                        .map(|e| {
                            (
                                String::from_utf8_lossy(&e.key).into_owned(),
                                String::from_utf8_lossy(&e.value).into_owned(),
                            )
                        })
                        .collect();
                    if j {
                        print_json(&json!({
                            "entries": pairs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                            "more": r.more,
                            "applied_index": r.applied_index,
                        }));
                    } else {
                        for (k, v) in &pairs {
                            println!("{k}\t{v}");
                        }
                        if r.more {
                            println!("(more)");
                        }
                    }
                    Ok(Exit::Success)
                }
                Err(s) => fail(s),
            }
        }
    }
}
