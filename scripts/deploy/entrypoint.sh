#!/usr/bin/env bash
# Entrypoint of the AlphaPulse container image.
#
#   alphapulse-entrypoint COMMAND [ARGS…]     runs `alphapulse COMMAND ARGS…`
#   alphapulse-entrypoint healthcheck PATH [ADDR]
#                                             GET PATH on ADDR (default DASHBOARD_ADDR);
#                                             exit 0 on 200, else 1
#
# Before it starts the engine it
# - fills in INSTANCE_INDEX when it is set but empty (a Kubernetes StatefulSet hands the
#   pod's `apps.kubernetes.io/pod-index` label over the downward API, and clusters older
#   than 1.28 have no such label): the ordinal is the number after the last '-' of the
#   pod's hostname, `alphapulse-2` → 2;
# - raises the soft memlock limit to the hard one, as io_uring's registered buffers count
#   against it (the hard limit itself is the container runtime's: --ulimit memlock=-1).
set -euo pipefail

# The longest a healthcheck waits for the status line, in seconds.
HEALTHCHECK_TIMEOUT_S=5

healthcheck() {
  local path="${1:-/healthz}"
  local addr="${2:-${DASHBOARD_ADDR:-127.0.0.1:8000}}"
  local port="${addr##*:}"
  local host="${addr%:*}"
  host="${host#[}"
  host="${host%]}"
  # A wildcard listener is reached over loopback.
  case "$host" in
    0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  exec 3<>"/dev/tcp/${host}/${port}" || exit 1
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3
  local status=""
  IFS= read -r -t "$HEALTHCHECK_TIMEOUT_S" status <&3 || true
  case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *)
      echo "healthcheck: GET $path on $addr answered '${status%$'\r'}'" >&2
      exit 1
      ;;
  esac
}

instance_index_from_hostname() {
  local host="${HOSTNAME:-}"
  if [ -z "$host" ] && [ -r /proc/sys/kernel/hostname ]; then
    host="$(cat /proc/sys/kernel/hostname)"
  fi
  local ordinal="${host##*-}"
  case "$ordinal" in
    "" | *[!0-9]*)
      echo "error: INSTANCE_INDEX is empty and the hostname '$host' does not end in -<ordinal>: set INSTANCE_INDEX to this instance's number (0 to INSTANCE_COUNT-1)" >&2
      exit 2
      ;;
  esac
  # Base 10: an ordinal such as 08 is not octal.
  echo "$((10#$ordinal))"
}

if [ "${1:-}" = healthcheck ]; then
  healthcheck "${2:-/healthz}" "${3:-}"
fi

if [ "${INSTANCE_INDEX+set}" = set ] && [ -z "$INSTANCE_INDEX" ]; then
  INSTANCE_INDEX="$(instance_index_from_hostname)"
  export INSTANCE_INDEX
fi

hard_memlock="$(ulimit -H -l)"
ulimit -S -l "$hard_memlock" 2>/dev/null || true

exec alphapulse "$@"
