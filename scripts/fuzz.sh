#!/usr/bin/env bash
# Fuzzes the engine's input parsers: every cargo-fuzz target in fuzz/, one after the
# other, each for a bounded time with one job and one worker (the machine may be
# shared). Prints, per target, the executions, the corpus size and whether a crash was
# found; exits 1 if any target crashed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Needs a nightly toolchain (libFuzzer's sanitizer flags are nightly-only) and
# cargo-fuzz, which it installs when missing. Without nightly it says so and skips.
# The committed seeds are fuzz/corpus/<target>/; what the fuzzer finds is kept in
# fuzz/target/fuzz-corpus/<target>/ (reused by the next run, never committed); crash
# inputs land in fuzz/artifacts/<target>/ and logs in fuzz/target/fuzz-logs/.
set -euo pipefail

secs="${1:-60}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"

if ! command -v rustup >/dev/null || ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: skipped: no nightly toolchain (install one with: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$fuzz"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
echo "fuzz: building ${targets[*]} (release, AddressSanitizer)"
cargo +nightly fuzz build -O
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz/target/$triple/release"
logs="$fuzz/target/fuzz-logs"
mkdir -p "$logs"

crashed=0
printf '\n%-12s %12s %8s %8s  %s\n' target execs exec/s corpus result
summary=()
for t in "${targets[@]}"; do
    work="$fuzz/target/fuzz-corpus/$t"
    artifacts="$fuzz/artifacts/$t"
    mkdir -p "$work" "$artifacts" "$logs/$t"
    before=$(find "$artifacts" -type f | wc -l)
    # -jobs=1 -workers=1: one fuzzing process; libFuzzer then writes its output to
    # fuzz-0.log in the working directory, hence the cd.
    status=0
    (cd "$logs/$t" && rm -f fuzz-0.log && "$bin_dir/$t" \
        -max_total_time="$secs" -jobs=1 -workers=1 -print_final_stats=1 \
        -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$artifacts/" \
        "$work" "$fuzz/corpus/$t" >"$logs/$t/driver.log" 2>&1) || status=$?
    log="$logs/$t/fuzz-0.log"
    [ -f "$log" ] || log="$logs/$t/driver.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | sed 's/corp: //')
    after=$(find "$artifacts" -type f | wc -l)
    if [ "$after" -gt "$before" ] || grep -q -e '^==[0-9]*==ERROR' -e 'deadly signal' -e '^SUMMARY: libFuzzer' "$log"; then
        result="CRASH (see $artifacts and $log)"
        crashed=1
    elif [ "$status" -ne 0 ]; then
        result="FAILED (exit $status, see $log)"
        crashed=1
    else
        result="no crash"
    fi
    line=$(printf '%-12s %12s %8s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" "${corpus:-?}" "$result")
    echo "$line"
    summary+=("$line")
done

echo
echo "fuzz: $(date -u +%Y-%m-%dT%H:%MZ), ${secs} s per target"
printf '%s\n' "${summary[@]}"
exit "$crashed"
