#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine to build and test AlphaPulse.
# Idempotent: installs only what is missing. Needs root (or sudo) for system packages.
#   bash scripts/setup.sh          everything the test suite needs
#   bash scripts/setup.sh --build  only what building (and so the demo) needs: a C
#                                  toolchain and Rust; no servers, browser or Node
set -euo pipefail

mode=all
case "${1:-}" in
  "") ;;
  --build) mode=build ;;
  *) echo "setup: unknown option '$1' (use --build for the build's needs only)" >&2; exit 2 ;;
esac

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ "$mode" = all ]; then
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Tests start private PostgreSQL and Redis servers from these binaries (initdb, pg_ctl,
# redis-server), on free loopback ports; no running service is needed or touched.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The dashboard's browser test drives headless Chromium; promtool checks /metrics.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# tests/deploy.rs runs the engine under the containers' seccomp profile with libseccomp.
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || need_apt+=(python3-seccomp)
# tests/timescale.rs runs TimescaleDB as PGlite (PostgreSQL in WASM) under Node.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is missing: install it with rustup (https://rustup.rs), then re-run." >&2
  exit 1
fi
if [ "$mode" = all ]; then
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# The PGlite and socket-server packages tests/timescale.rs starts, at the versions
# pinned in tests/tooling/pglite/package-lock.json, into its node_modules (ignored by
# git). The socket server's peer dependency is the stock PGlite, which the TimescaleDB
# build replaces: hence --legacy-peer-deps.
pglite_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/tooling/pglite"
pglite_installed() {
  (cd "$pglite_dir" && node -e '
    for (const [name, version] of Object.entries(require("./package.json").dependencies)) {
      if (require(`./node_modules/${name}/package.json`).version !== version) process.exit(1);
    }' >/dev/null 2>&1)
}
if ! pglite_installed; then
  echo "setup: installing the PGlite test packages"
  (cd "$pglite_dir" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error)
fi
fi

# glommio needs io_uring; say so early rather than in a test failure.
if [ -r /proc/sys/kernel/io_uring_disabled ] && [ "$(cat /proc/sys/kernel/io_uring_disabled)" != "0" ]; then
  echo "setup: warning: io_uring is disabled (kernel.io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled)); run 'sysctl -w kernel.io_uring_disabled=0'" >&2
fi
echo "setup: ok"
