//! The Python interpreter of the polyglot client tests.

use std::path::PathBuf;
use std::process::Command;

use crate::bins;

/// A Python interpreter with the client requirements installed: `$AERODB_PYTHON`, or a venv at
/// `target/python-venv` created on first use (serialised by a file lock). `.ci/run` creates it
/// ahead of time; the first run elsewhere installs the pinned requirements from PyPI.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AERODB_PYTHON") {
        return PathBuf::from(p);
    }
    let root = bins::repo_root();
    let venv = root.join("target").join("python-venv");
    let py = venv.join("bin").join("python");
    std::fs::create_dir_all(root.join("target")).expect("target dir");
    let lock = std::fs::File::create(root.join("target").join("python-venv.lock")).expect("lock file");
    lock.lock().expect("lock");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let ok =
            Command::new("python3").args(["-m", "venv", venv.to_str().unwrap()]).status().expect("python3 -m venv");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("clients/python/requirements.txt"))
            .status()
            .expect("pip install");
        assert!(ok.success(), "pip install -r clients/python/requirements.txt failed");
        std::fs::write(&ready, b"").expect("ready marker");
    }
    py
}
