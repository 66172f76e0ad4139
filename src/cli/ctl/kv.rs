//! `aerodbctl kv …`: the data plane, with a client-role profile pointing at a node.

use serde_json::json;

use super::{Cli, Exit, print_json, report_error};
use crate::proto::kernel as kpb;

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

/// Runs a kv subcommand.
pub async fn run(cli: &Cli, command: &KvCommand) -> Exit {
    let (_, ch) = match cli.conn.channel(crate::tls::identity::Role::Node) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut data = kpb::data_client::DataClient::new(ch);
    let j = cli.json;
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
                if r.found { Exit::Success } else { Exit::NotFound }
            }
            Err(s) => report_error(&s, j, false, None),
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
                    Exit::Success
                }
                Err(s) => report_error(&s, j, true, None),
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
                Exit::Success
            }
            Err(s) => report_error(&s, j, true, None),
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
                    Exit::Success
                }
                Err(s) => report_error(&s, j, false, None),
            }
        }
    }
}
