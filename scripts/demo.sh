#!/usr/bin/env bash
# Runs the self-contained demo: simulator + engine + dashboard in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo run --release --locked -- demo "$@"
