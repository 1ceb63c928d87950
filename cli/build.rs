//! Puts the commit the binary was built from into `swarm --version` (`SWARM_COMMIT`), or
//! "unknown commit" when built outside a git checkout (from a source tarball, say).

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=SWARM_COMMIT={commit}");
    // Run again when HEAD moves; in a worktree `.git` is a file and the commit is read anew
    // only when this script changes.
    let head = Path::new("../.git/HEAD");
    if head.is_file() {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        println!("cargo:rerun-if-changed=../.git/refs/heads");
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
