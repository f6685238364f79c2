//! Where the test fixtures are. Every crate's tests include this one file
//! (`#[path = "../../../../test-support/fixtures.rs"] mod fixtures;` from
//! `tests/common/mod.rs`), so the rule is written once:
//!
//! * `fixtures/` in the repository holds the small models the core tests
//!   need; it is always there.
//! * The team's shared fixtures (the larger models) are at
//!   `$BITNET_SHARED_FIXTURES`, else `../shared/fixtures` beside the
//!   repository. Absent, the tests that need them print a note and pass,
//!   except when the `CI` environment variable is set: CI always has them,
//!   so there a missing directory fails the test instead of silently
//!   skipping the proof.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `fixtures/` inside the repository.
pub fn repo_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Where the shared fixtures should be (whether or not they are).
pub fn shared_fixtures_dir() -> PathBuf {
    std::env::var_os("BITNET_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"))
}

/// The shared fixtures, if present (see the module doc for CI).
pub fn shared_fixtures() -> Option<PathBuf> {
    let dir = shared_fixtures_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    let note = format!(
        "shared fixtures not found at {} (set BITNET_SHARED_FIXTURES)",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{note}; CI is set, so the tests that need them must not be skipped");
    }
    eprintln!("note: {note}; skipping");
    None
}
