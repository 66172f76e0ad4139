//! The control plane's layers, as the code imports them (issue 14): `api` → `flow` → `explain`
//! and `digest` → `adapter`, with `error` below them all; no layer imports one above it, and the
//! control plane uses the kernel only through `contract` (value types) and the adapter (the
//! kernel's wire API). docs/design-notes.md ("The shape of the code") states these rules; this
//! test is what keeps them true as the code changes.
//!
//! Read from the source files, not from a build: a `use` of a forbidden path anywhere in a
//! layer's files (code, tests or docs links) fails the test, naming the file, the line and the
//! rule.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `rel` (a file or a directory of the crate's `src/`).
fn files(rel: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.unwrap_or_else(|e| panic!("{}: {e}", p.display())).path());
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    assert!(!out.is_empty(), "no source under src/{rel}: the layer moved, update this test");
    out.sort();
    out
}

/// Each line of the layer's files that mentions one of `forbidden`, as `file:line: text`.
fn mentions(layer: &[&str], forbidden: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for rel in layer {
        for f in files(rel) {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for (i, line) in text.lines().enumerate() {
                if forbidden.iter().any(|p| line.contains(p)) {
                    hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    hits
}

#[test]
fn control_layers_below_the_api_import_nothing_of_it() {
    let below = ["control/flow", "control/explain.rs", "control/digest.rs", "control/adapter", "control/error.rs"];
    let hits = mentions(&below, &["control::api", "super::api", "super::super::api"]);
    assert!(hits.is_empty(), "a layer below the api imports the api:\n{}", hits.join("\n"));
    // Nothing outside the api and the composition root (`run.rs`) reaches into the api either.
    let others = ["control/access.rs", "control/budget.rs", "control/context.rs", "control/rounds.rs"];
    let hits = mentions(&others, &["control::api", "super::api"]);
    assert!(hits.is_empty(), "a control module other than run.rs imports the api:\n{}", hits.join("\n"));
}

#[test]
fn explain_and_digest_import_nothing_of_the_flow_and_the_adapter_nothing_above_it() {
    let hits = mentions(&["control/explain.rs", "control/digest.rs"], &["control::flow", "super::flow"]);
    assert!(hits.is_empty(), "explain or digest imports the flow:\n{}", hits.join("\n"));
    let hits = mentions(
        &["control/adapter", "control/error.rs"],
        &["control::flow", "control::explain", "control::digest", "super::flow", "super::explain"],
    );
    assert!(hits.is_empty(), "the adapter or the error map imports a layer above it:\n{}", hits.join("\n"));
}

#[test]
fn the_control_plane_uses_the_kernel_only_through_the_contract_and_its_wire_api() {
    let hits = mentions(&["control"], &["crate::kernel", "aerodb::kernel"]);
    assert!(
        hits.is_empty(),
        "the control plane imports kernel internals (use crate::contract, or the kernel's proto through the adapter):\n{}",
        hits.join("\n")
    );
}
