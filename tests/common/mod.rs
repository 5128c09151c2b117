//! Helpers shared by the integration tests. Each test binary uses a subset of them.
#![allow(dead_code)]

use std::path::PathBuf;

/// Overrides where the Binance fixtures are read from.
pub const FIXTURES_ENV: &str = "ALPHAPULSE_FIXTURES";

/// The Binance fixture folder: `$ALPHAPULSE_FIXTURES` if set, otherwise the copy kept
/// in this repository (`tests/data/binance`). Panics with the fix when the folder is
/// missing, so no fixture test can pass by finding nothing to check.
pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os(FIXTURES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/binance")),
    };
    assert!(
        dir.join("kline.json").is_file(),
        "Binance fixtures not found in {}: restore tests/data/binance or set \
         {FIXTURES_ENV} to the fixture folder",
        dir.display()
    );
    dir
}

/// The bytes of one fixture file, e.g. `fixture("kline.json")`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
pub mod pglite;
