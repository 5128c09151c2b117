//! The crate's layering, checked on its source: every top-level module of `src/` may use
//! only the modules below it in [`LAYERS`] (and itself). The order and the reasons are in
//! `CONTRIBUTING.md` and at the top of `src/lib.rs`; this test keeps them true.
//!
//! A use is any `crate::<module>` path in code (comments, doc links included, are not
//! uses). A new module must be placed in the order here, in `src/lib.rs` and in
//! `CONTRIBUTING.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top, by layer. A module may use the modules before it, never one after it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "alloc", "digits", "clock", "market", "backoff", "ring", "http", "tls",
        ],
    ),
    (
        "pure core",
        &[
            "wire", "candle", "book", "signals", "metrics", "latency", "consumer", "message",
            "record", "store",
        ],
    ),
    ("settings", &["config", "topology"]),
    (
        "roles",
        &["shard", "feed", "backfill", "sinks", "dashboard"],
    ),
    ("wiring", &["engine"]),
    (
        "tools",
        &[
            "capture",
            "simulator",
            "harness",
            "tuning",
            "demo",
            "history",
            "cli",
        ],
    ),
];

fn order() -> Vec<&'static str> {
    LAYERS
        .iter()
        .flat_map(|(_, mods)| mods.iter().copied())
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file of `src/` belongs to (`None` for the crate roots).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line: without its comment (a `//` outside a string literal).
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The top-level modules a source text uses through `crate::` paths.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = code_of(line);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `alphapulse_crate::x` is not a crate path; `$crate::x` is.
            let standalone = before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            if standalone && !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn comments_and_strings_are_not_uses() {
    let text = "use crate::ring::Ring; // crate::engine\n/// see [`crate::dashboard`]\n\
                let u = \"ws://x\"; crate::clock::mono_ns();\nfoo_crate::bar();";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["clock", "ring"]);
}

#[test]
fn every_module_is_placed_once() {
    let order = order();
    let placed: BTreeSet<&str> = order.iter().copied().collect();
    assert_eq!(placed.len(), order.len(), "a module is listed twice");
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim())
        .collect();
    assert_eq!(
        declared, placed,
        "the modules of src/lib.rs and the layer order differ"
    );
    let contributing = std::fs::read_to_string(src().join("../CONTRIBUTING.md"))
        .expect("CONTRIBUTING.md states the layering");
    for module in &order {
        assert!(
            contributing.contains(&format!("`{module}`")),
            "CONTRIBUTING.md does not place `{module}`"
        );
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "the layout at the top of src/lib.rs does not describe `{module}`"
        );
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let rank: BTreeMap<&str, usize> = order()
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, i))
        .collect();
    let layer_of = |m: &str| {
        LAYERS
            .iter()
            .find(|(_, mods)| mods.contains(&m))
            .map_or("?", |(layer, _)| *layer)
    };
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "found only {} files under src",
        files.len()
    );
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let Some(&own) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module `{module}` is not placed",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for used in uses(&text) {
            match rank.get(used.as_str()) {
                Some(&r) if r > own => wrong.push(format!(
                    "{}: `{module}` ({}) uses `{used}` ({}), which is above it",
                    file.strip_prefix(src()).unwrap_or(file).display(),
                    layer_of(&module),
                    layer_of(&used),
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
