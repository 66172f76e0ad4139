//! `aerodbctl status --watch`: the cluster view again and again, passively (Observer reads
//! only), each refresh headed by the time it was observed; and `aerodbctl completion SHELL`.

use std::time::Duration;

use serde_json::json;
use tonic::transport::Channel;

use super::{Exit, render, report_error};
use crate::proto::control as pb;

/// Each refresh waits at most this long for its answer.
pub const REFRESH_DEADLINE: Duration = Duration::from_secs(10);
/// The smallest interval `--interval` accepts, in seconds.
pub const MIN_INTERVAL_S: f64 = 0.2;

/// The current UTC time as RFC 3339 (what each refresh prints as its observation time).
fn now_rfc3339() -> String {
    let ms = crate::clock::Clock::now_unix_ms(&crate::clock::SystemClock::new());
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "unknown time".into())
}

/// Refreshes the cluster view every `interval_s` seconds until Ctrl-C (exit 0) or, with
/// `count`, after that many refreshes (exit code of the last one). Each refresh is one
/// GetClusterState with a deadline; a failed refresh is reported (with its time) and the watch
/// goes on. With `json_out`, one JSON line per refresh: `{"observed_at", "cluster_state"}` or
/// `{"observed_at", "error"}`.
pub async fn status(ch: Channel, json_out: bool, interval_s: f64, count: Option<u64>) -> Exit {
    if !(interval_s.is_finite() && interval_s >= MIN_INTERVAL_S) {
        eprintln!("error: --interval must be a number of seconds, at least {MIN_INTERVAL_S}");
        return Exit::Usage;
    }
    let interval = Duration::from_secs_f64(interval_s);
    let mut observer = pb::observer_client::ObserverClient::new(ch);
    let mut done: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let call = tokio::time::timeout(REFRESH_DEADLINE, observer.get_cluster_state(pb::GetClusterStateRequest {}));
        let answer = tokio::select! {
            _ = &mut ctrl_c => return Exit::Success,
            a = call => a,
        };
        let at = now_rfc3339();
        let last = match answer {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if json_out {
                    let doc = json!({"observed_at": at, "cluster_state": super::json::to_json(&r, "aerodb.control.v1.ClusterState")});
                    println!("{doc}");
                } else {
                    println!("observed at {at} (every {interval_s} s; Ctrl-C stops)");
                    render::cluster(&r);
                    println!();
                }
                Exit::Success
            }
            Ok(Err(s)) => {
                if json_out {
                    println!("{}", json!({"observed_at": at, "error": format!("{}: {}", s.code(), s.message())}));
                } else {
                    eprintln!("at {at}:");
                }
                if json_out { super::classify(&s, false) } else { report_error(&s, false, false, None) }
            }
            Err(_) => {
                if json_out {
                    println!("{}", json!({"observed_at": at, "error": "no answer within the refresh deadline"}));
                } else {
                    eprintln!("at {at}: no answer within {} s", REFRESH_DEADLINE.as_secs());
                }
                Exit::Unavailable
            }
        };
        done += 1;
        if count.is_some_and(|n| done >= n) {
            return last;
        }
        tokio::select! {
            _ = &mut ctrl_c => return Exit::Success,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Shells `aerodbctl completion` writes a script for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// bash (`source <(aerodbctl completion bash)`).
    Bash,
    /// zsh (save as `_aerodbctl` in a folder of `$fpath`).
    Zsh,
    /// fish (save as `~/.config/fish/completions/aerodbctl.fish`).
    Fish,
}

/// Prints the completion script for `shell` on stdout.
pub fn completion(shell: Shell) -> Exit {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "aerodbctl", &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "aerodbctl", &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "aerodbctl", &mut out),
    }
    print!("{}", String::from_utf8_lossy(&out));
    Exit::Success
}
