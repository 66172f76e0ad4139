//! The control plane's layers, as the code imports them (issue 14): `api` → `flow` → `explain`
//! and `digest` → `adapter`, with `error` below them all; no layer imports one above it, and
//! `src/control` uses nothing of `src/kernel` (it reaches the kernel through `contract`'s value
//! types and the adapter's calls of the kernel's gRPC API). docs/design-notes.md ("The shape of
//! the code") states these rules; this test keeps them true as the code changes.
//!
//! Each file is parsed as Rust (`syn`), not searched as text. Every `use` tree is flattened and
//! resolved to a path from the crate root (`crate::`, `self::` and `super::` resolved against the
//! file's module and the inline modules around the item), and so is every path in code that
//! starts with `crate`, `self` or `super`. A glob import of a module that contains a forbidden
//! one, and a renamed `crate`/`self`/`super` root, fail too, since they would hide an import.
//! Macro bodies are not Rust syntax to `syn`; their tokens are searched for the forbidden paths.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A rule: files under `layer` (paths relative to `src/`) import nothing under `forbidden`.
struct Rule {
    what: &'static str,
    layer: &'static [&'static str],
    forbidden: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        what: "nothing in the control plane but its composition root (`run.rs`) imports the api",
        layer: &[
            "control/flow",
            "control/explain.rs",
            "control/digest.rs",
            "control/adapter",
            "control/error.rs",
            "control/access.rs",
            "control/budget.rs",
            "control/context.rs",
            "control/rounds.rs",
            "control/config.rs",
            "control/mod.rs",
        ],
        forbidden: &["crate::control::api"],
    },
    Rule {
        what: "explain and digest import nothing of the flow",
        layer: &["control/explain.rs", "control/digest.rs"],
        forbidden: &["crate::control::flow"],
    },
    Rule {
        what: "the adapter and the error map import no layer above them",
        layer: &["control/adapter", "control/error.rs"],
        forbidden: &[
            "crate::control::flow",
            "crate::control::explain",
            "crate::control::digest",
            "crate::control::api",
        ],
    },
    Rule {
        what: "the control plane uses nothing of the kernel's modules",
        layer: &["control"],
        forbidden: &["crate::kernel"],
    },
];

/// Every `.rs` file under `rel` (a file or a directory of `src/`).
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

/// The module path of a source file: `src/control/flow/actions.rs` → `crate::control::flow::actions`.
fn module_of(file: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = file.strip_prefix(&src).unwrap_or_else(|_| panic!("{} is not under src/", file.display()));
    let mut m = vec!["crate".to_string()];
    for c in rel.components() {
        let part = c.as_os_str().to_string_lossy().into_owned();
        let part = part.strip_suffix(".rs").map(str::to_string).unwrap_or(part);
        if part != "mod" && part != "lib" {
            m.push(part);
        }
    }
    m
}

/// Collects every import and crate-relative path of one file, resolved from the crate root.
struct Imports {
    /// The module the visitor is in (the file's, plus inline `mod`s around the item).
    module: Vec<String>,
    /// Resolved paths (`crate::…`), each with what it came from.
    paths: Vec<(String, String)>,
    /// Problems that hide an import (globs of a parent of a forbidden module, renamed roots).
    globs: Vec<String>,
    /// Token text of every macro body.
    macros: Vec<String>,
}

impl Imports {
    /// `segments` resolved against the current module (`crate`, `self`, `super` roots), or `None`
    /// for a path that names an extern crate or a local item.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let mut base = match first.as_str() {
            "crate" => vec!["crate".to_string()],
            "self" | "super" => self.module.clone(),
            _ => return None,
        };
        let mut rest = &segments[1..];
        if first == "super" {
            base.pop();
        }
        while let Some(s) = rest.first() {
            if s == "super" {
                base.pop();
                rest = &rest[1..];
            } else {
                break;
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.record(&full, "use");
            }
            syn::UseTree::Rename(r) => {
                let root = r.ident.to_string();
                if prefix.is_empty() && matches!(root.as_str(), "crate" | "self" | "super") {
                    self.globs.push(format!("`use {root} as {}` renames a path root", r.rename));
                }
                let mut full = prefix.clone();
                full.push(root);
                self.record(&full, "use … as");
            }
            syn::UseTree::Glob(_) => {
                if let Some(resolved) = self.resolve(prefix) {
                    self.globs.push(format!("{}::*", resolved.join("::")));
                }
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix, t);
                }
            }
        }
    }

    fn record(&mut self, segments: &[String], how: &str) {
        if let Some(resolved) = self.resolve(segments) {
            self.paths.push((resolved.join("::"), format!("{how} {}", segments.join("::"))));
        }
    }
}

impl<'ast> Visit<'ast> for Imports {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(&segments, "path");
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.macros.push(m.tokens.to_string().split_whitespace().collect());
        syn::visit::visit_macro(self, m);
    }
}

fn imports(file: &Path) -> Imports {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: not Rust syntax syn reads: {e}", file.display()));
    let mut v = Imports { module: module_of(file), paths: Vec::new(), globs: Vec::new(), macros: Vec::new() };
    v.visit_file(&ast);
    v
}

/// Whether `path` is `prefix` or inside it.
fn within(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

/// Every violation of `rule`, one line each.
fn violations(rule: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    for rel in rule.layer {
        for f in files(rel) {
            let i = imports(&f);
            let name = f.display();
            for (path, from) in &i.paths {
                if let Some(bad) = rule.forbidden.iter().find(|b| within(path, b)) {
                    out.push(format!("{name}: {from} resolves to {path}, under {bad}"));
                }
            }
            for g in &i.globs {
                let parent = g.trim_end_matches("::*");
                if g.contains(" as ") || rule.forbidden.iter().any(|b| within(b, parent)) {
                    out.push(format!("{name}: {g} would bring in a forbidden module"));
                }
            }
            for body in &i.macros {
                for bad in rule.forbidden {
                    if body.contains(bad) {
                        out.push(format!("{name}: a macro body names {bad}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn control_layers_import_nothing_above_them_and_nothing_of_the_kernel() {
    let mut failures = Vec::new();
    for rule in RULES {
        let v = violations(rule);
        if !v.is_empty() {
            failures.push(format!("{}:\n  {}", rule.what, v.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checker itself: each way of writing a forbidden import is found, and a lawful one is not.
#[test]
fn the_layering_check_resolves_every_way_of_writing_an_import() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control/adapter");
    let file = dir.join("snapshot.rs");
    let parse = |src: &str| {
        let ast = syn::parse_file(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let mut v = Imports { module: module_of(&file), paths: Vec::new(), globs: Vec::new(), macros: Vec::new() };
        v.visit_file(&ast);
        v
    };
    let hits = |src: &str, bad: &str| {
        let i = parse(src);
        i.paths.iter().any(|(p, _)| within(p, bad))
            || i.globs.iter().any(|g| g.contains(" as ") || within(bad, g.trim_end_matches("::*")))
            || i.macros.iter().any(|m| m.contains(bad))
    };
    for (src, bad) in [
        ("use crate::control::api::convert;", "crate::control::api"),
        ("use crate::control::{api::convert, error};", "crate::control::api"),
        ("use crate::{\n    control::{\n        api,\n    },\n};", "crate::control::api"),
        ("use super::super::api::convert::caller;", "crate::control::api"),
        ("use super::super::flow;", "crate::control::flow"),
        ("use crate::control::*;", "crate::control::api"),
        ("use crate as c;", "crate::kernel"),
        ("fn f() { let _ = crate::kernel::node::Node::open; }", "crate::kernel"),
        ("fn f() { let _ = super::super::digest::command_name; }", "crate::control::digest"),
        ("mod t { use super::super::super::super::kernel::kv; }", "crate::kernel"),
        ("fn f() { tracing::info!(\"{}\", crate::kernel::codes::INTERNAL); }", "crate::kernel"),
    ] {
        assert!(hits(src, bad), "not caught: {src:?} (forbidden {bad})");
    }
    for (src, bad) in [
        ("use super::TransportError;", "crate::control::api"),
        ("use crate::contract::intent::Approvals;", "crate::kernel"),
        ("use crate::proto::kernel as kpb;", "crate::kernel"),
        ("mod tests { use super::*; }", "crate::control::api"),
    ] {
        assert!(!hits(src, bad), "a lawful import was flagged: {src:?} (forbidden {bad})");
    }
}
