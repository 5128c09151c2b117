#!/usr/bin/env bash
# Runs the self-contained demo: simulator + engine + dashboard in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the build needs: the demo runs its own simulated exchange and keeps its
# data in memory, so no database, Redis or browser is installed for it.
bash scripts/setup.sh --build >/dev/null
exec cargo run --release --locked -- demo "$@"
