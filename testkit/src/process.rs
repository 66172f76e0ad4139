//! One `aerodb` child process with its log file: start, SIGKILL (a power cut for the process),
//! SIGTERM, SIGSTOP/SIGCONT, and waits on its exit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bins;
use crate::wait::{WAIT, wait_for};

/// One child process with its log file.
#[derive(Debug)]
pub struct Proc {
    /// A name for messages (`n1`, `cp1`).
    pub name: String,
    /// `aerodb`'s arguments.
    pub args: Vec<String>,
    /// Environment of the next start, after `base_env` (e.g. `AERODB_FAILPOINTS`).
    pub env: Vec<(String, String)>,
    /// The file standard output and error are appended to.
    pub log: PathBuf,
    /// The running process (None when stopped, killed or exited).
    pub child: Option<Child>,
    /// Starts so far.
    pub starts: u32,
    /// Environment of every start (from `Spec::env`), before `env`.
    pub base_env: Vec<(String, String)>,
    /// The network namespace to start in (`ip netns exec NS aerodb …`, which execs `aerodb`, so
    /// the child is the process itself and SIGKILL reaches it); `None`: the test's own.
    pub netns: Option<String>,
}

impl Proc {
    /// A process not started yet.
    pub fn new(name: &str, args: Vec<String>, log: PathBuf) -> Self {
        Self {
            name: name.into(),
            args,
            env: Vec::new(),
            log,
            child: None,
            starts: 0,
            base_env: Vec::new(),
            netns: None,
        }
    }

    /// Starts `aerodb` with `args` (panics if already running); `AERODB_FAILPOINTS` only from `env`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bins::aerodb_bin());
                c
            }
            None => Command::new(bins::aerodb_bin()),
        };
        cmd.args(&self.args).stdout(Stdio::from(log.try_clone().expect("log"))).stderr(Stdio::from(log));
        cmd.env("RUST_LOG", std::env::var("AERODB_TEST_LOG").unwrap_or_else(|_| "info,h2=warn,tower=warn".into()));
        cmd.env_remove("AERODB_FAILPOINTS");
        for (k, v) in self.base_env.iter().chain(&self.env) {
            cmd.env(k, v);
        }
        self.starts += 1;
        self.child = Some(cmd.spawn().expect("spawn aerodb"));
    }

    /// SIGKILL: no cleanup, no flush, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..500 {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Whether the process has exited (and its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// SIGSTOP: the process holds its state and answers nothing until [`Proc::resume`].
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGSTOP);
        }
    }

    /// SIGCONT after [`Proc::pause`] (harmless otherwise).
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// Everything the process has logged so far (empty if nothing).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the process has exited; its exit status.
    pub async fn wait_exit(&mut self, what: &str) -> std::process::ExitStatus {
        wait_for(what, WAIT, || {
            let s = self.exited();
            async move { s }
        })
        .await
    }

    /// Starts the process and waits (bounded) for it to refuse to start: asserts it exits with a
    /// failure and returns its log.
    pub async fn start_expecting_refusal(&mut self) -> String {
        self.start();
        let what = format!("{} refuses to start", self.name);
        let status = self.wait_exit(&what).await;
        assert!(!status.success(), "{what}: it exited with {status}");
        self.log_text()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
