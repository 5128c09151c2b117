#!/usr/bin/env bash
# End-to-end latency and CPU of the engine against two baseline relays (tokio, Python),
# measured the same way in one run. See bench/relays/README.md.
#
#   bash bench/relays/compare.sh [--alphapulse PATH] [--rates 10000,1000] [--duration 15]
#                                [--warmup 3] [--systems engine,tokio,python] [--out DIR]
#                                [--phase aligned|spread] [--engine-env NAME=VALUE]
#                                [--repeat N]
#
# Installs what it needs first: builds the tokio relay (cargo, its own Cargo.lock) and
# creates bench/relays/.venv from requirements.txt when they are missing. The measuring
# itself is done by compare.py (standard library only); every process is ended by PID on
# exit, also on error or Ctrl-C.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RELAY="$HERE/tokio-relay/target/release/tokio-relay"
VENV="$HERE/.venv"

systems="engine,tokio,python"
prev=""
for arg in "$@"; do
    case "$arg" in
        -h|--help) exec python3 "$HERE/compare.py" --help ;;
        --systems=*) systems="${arg#--systems=}" ;;
    esac
    [[ "$prev" == "--systems" ]] && systems="$arg"
    prev="$arg"
done

cd "$ROOT"

if [[ ",$systems," == *",tokio,"* && ! -x "$RELAY" ]]; then
    echo "compare.sh: building the tokio relay" >&2
    cargo build --release --manifest-path "$HERE/tokio-relay/Cargo.toml"
fi

if [[ ",$systems," == *",python,"* ]]; then
    if ! { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import uvloop, websockets, orjson' 2>/dev/null; }; then
        echo "compare.sh: creating $VENV from requirements.txt" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    fi
fi

driver=""
cleanup() {
    # The driver ends its own children (simulator, system, client) by PID on SIGTERM.
    if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        wait "$driver" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$HERE/compare.py" --tokio-relay "$RELAY" --python "$VENV/bin/python" "$@" &
driver=$!
rc=0
wait "$driver" || rc=$?
driver=""
exit "$rc"
