#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration and end-to-end tests.
# Tests start everything they need themselves (the simulator, private servers) on
# loopback; nothing outside this machine is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked -- --test-threads="${TEST_THREADS:-2}"
