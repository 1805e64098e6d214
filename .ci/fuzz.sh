#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time; fails if any of them
# finds a crash (the input is left in fuzz/artifacts/<target>/).
#
# Usage: .ci/fuzz.sh [seconds-per-target]   (default 20)
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [seconds-per-target]" >&2
    exit 2
fi

cd "$(dirname "$0")/../fuzz"

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this lets the
# stable toolchain, the one the project builds with, accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Build everything first, so that each target's time is spent fuzzing.
cargo fuzz build
mapfile -t targets < <(cargo fuzz list)

logs="target/fuzz-logs"
mkdir -p "$logs"
failed=0
summary=()
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    # Inputs that once crashed (fuzz/regressions/<target>/) must keep passing.
    if compgen -G "regressions/$target/*" >/dev/null; then
        if ! cargo fuzz run "$target" regressions/"$target"/* >"$log" 2>&1; then
            echo "=== $target: a regression input fails again; the end of $log:" >&2
            tail -n 40 "$log" >&2
            failed=1
            summary+=("$(printf '%-14s %-6s %s' "$target" "FAILED" "regression input")")
            continue
        fi
    fi
    # Targets that need seeds (real segments, sealed frames) write them into
    # their corpus at start-up when CKPT_FUZZ_SEED_DIR names it. A single
    # input running 10 s is a hang, reported like a crash.
    if CKPT_FUZZ_SEED_DIR="corpus/$target" \
        cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
        result="ok"
    else
        result="FAILED"
        failed=1
        {
            echo "=== $target failed (full log: fuzz/$log)"
            grep -m 1 -A 4 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" || true
            sed -n '/^Failing input:/,/cargo fuzz run/p' "$log"
        } >&2
    fi
    # libFuzzer's status lines: "#<runs> <event> cov: <n> ft: <n> corp: <n>/<size> ... exec/s: <n> ...".
    stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 |
        sed -E 's/^#([0-9]+).*cov: ([0-9]+).*corp: ([0-9]+).*exec\/s: ([0-9]+).*/runs=\1 cov=\2 corpus=\3 exec\/s=\4/' || true)
    crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/.* /input=/' || true)
    summary+=("$(printf '%-14s %-6s %s %s' "$target" "$result" "${stats:-no-stats}" "$crash")")
done

printf '%s\n' "${summary[@]}"
exit "$failed"
