//! Where the binaries under test are, and the repository they were built from.
//!
//! `env!("CARGO_BIN_EXE_aerodb")` compiles only inside the `aerodb` package's own tests, and this
//! crate is a library those tests link, so the paths are found when the test runs: `cargo test`
//! passes `CARGO_BIN_EXE_<name>` to the test process (cargo 1.94 and later); without it (an older
//! cargo, or a test binary run by hand) the binary is the one cargo placed next to the test's
//! `deps/` directory, which `cargo test` builds before it runs any integration test. Either way
//! the path must name an existing file, or the harness panics saying where it looked.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `aerodb` binary under test (node, control plane, certs, dev).
pub fn aerodb_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| locate("aerodb"))
}

/// The `aerodbctl` binary under test.
pub fn aerodbctl_bin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| locate("aerodbctl"))
}

/// The repository's root directory (the `aerodb` package's manifest directory).
pub fn repo_root() -> &'static Path {
    // This crate lives in `testkit/` directly under the root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ lies in the repository")
}

fn locate(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "CARGO_BIN_EXE_{name} names {}, which is not a file", path.display());
        return path;
    }
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| panic!("no directory above {}", exe.display()));
    assert!(
        path.is_file(),
        "{name} not found: CARGO_BIN_EXE_{name} is unset and {} is not a file (run the tests with `cargo test`)",
        path.display()
    );
    path
}
