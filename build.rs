//! Build script: stamps the binary's version with the git revision it was built from.
//!
//! Sets `ALPHAPULSE_VERSION` for the crate: `0.1.0 (abc1234)`, `0.1.0 (abc1234-dirty)`
//! when tracked files differ from the commit, or just `0.1.0` where there is no git or
//! the source is not a checkout (a release tarball, a container build without `.git`).
//! `ALPHAPULSE_GIT_REV` overrides the revision for packagers (empty: no revision).
//!
//! It reruns only when `HEAD`, the branch it names, the packed refs, HEAD's reflog,
//! `src/`, `Cargo.toml` or the override change, so an ordinary rebuild does not run git.

use std::path::{Path, PathBuf};
use std::process::Command;

const REV_ENV: &str = "ALPHAPULSE_GIT_REV";

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed={REV_ENV}");
    println!("cargo:rerun-if-changed=build.rs");
    let full = match revision(std::env::var(REV_ENV).ok(), &dir) {
        Some(rev) => format!("{version} ({rev})"),
        None => version,
    };
    println!("cargo:rustc-env=ALPHAPULSE_VERSION={full}");
}

/// The revision to show: `override_` (from `ALPHAPULSE_GIT_REV`) when set, empty
/// meaning none; else the checkout's at `dir`.
pub fn revision(override_: Option<String>, dir: &Path) -> Option<String> {
    match override_ {
        Some(rev) => Some(rev.trim().to_owned()).filter(|r| !r.is_empty()),
        None => git_revision(dir),
    }
}

/// The short revision of `HEAD`, `-dirty` appended when tracked files have changes;
/// `None` without git or outside a checkout whose top is `dir`.
pub fn git_revision(dir: &Path) -> Option<String> {
    // A tarball unpacked inside another repository must not take that one's revision.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    // Rerun when HEAD moves: HEAD itself (a checkout), the branch it names (a commit),
    // the packed refs (a branch packed by gc) and HEAD's reflog (every move, also of a
    // packed branch). Only files that exist: a missing one would rerun every build.
    // Paths come from git, as a worktree's `.git` is a file pointing elsewhere.
    let mut watched = vec![
        "HEAD".to_owned(),
        "packed-refs".to_owned(),
        "logs/HEAD".to_owned(),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    // Edited sources rebuild the crate anyway: check the tree again then.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let rev = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// Runs git in `dir`; its trimmed output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}
