//! aerodbctl as an operator runs it: a child process with arguments, environment and typed
//! input on stdin (closed after it), its exit code and both outputs collected.

use std::io::Write;
use std::process::{Command, Stdio};

/// What one aerodbctl run printed and how it exited.
#[derive(Debug, Clone)]
pub struct CtlOut {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs aerodbctl with `args` and `env`, writing `input` to its stdin and closing it.
pub fn run_ctl<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)], input: &str) -> CtlOut {
    let mut child = Command::new(crate::bins::aerodbctl_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aerodbctl starts");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin written");
    let out = child.wait_with_output().expect("aerodbctl ends");
    CtlOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run_ctl`] on a blocking thread, for async tests.
pub async fn run_ctl_async(args: Vec<String>, env: Vec<(String, String)>, input: &str) -> CtlOut {
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_ctl(&args, &env, &input)
    })
    .await
    .expect("aerodbctl task")
}
