#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.c, clang, ASan+UBSan, build-fuzz/) and runs each for a
# bounded time on its committed seed corpus fuzz/corpus/<target without fuzz_>/ (read only: new units
# go to a scratch folder). Any crash, leak, timeout or sanitizer report fails the run; the input is
# kept under build-fuzz/crashes/<target>/ — commit it into fuzz/corpus/<target>/ with the fix, where
# ctest's fuzz_<target>_corpus test replays it from then on.
# Usage: scripts/fuzz.sh [seconds per target, default 45] [target ...]    Env: JOBS (targets run at once)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-45}
shift || true
JOBS=${JOBS:-$(nproc)}
export TL_SHARED=${TL_SHARED:-$(cd .. && pwd)/shared}
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
if [ $# -gt 0 ]; then targets="$*"; else targets=$(cd fuzz && ls fuzz_*.c | sed 's/\.c$//'); fi
t0=$(date +%s)
CC=clang cmake -S . -B build-fuzz -DTL_FUZZ=ON -DTL_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build build-fuzz -j"$(nproc)" --target $targets
echo "fuzz: build $(( $(date +%s) - t0 )) s; $SECS s each for: $targets"
rm -rf build-fuzz/work build-fuzz/crashes build-fuzz/logs
mkdir -p build-fuzz/logs

one() { # target -> 0 if clean
    local t=$1 c=${1#fuzz_}
    local work=build-fuzz/work/$c crash=build-fuzz/crashes/$c
    mkdir -p "$work" "$crash"
    local seeds=()
    [ -d "fuzz/corpus/$c" ] && seeds=("fuzz/corpus/$c")
    local rc=0
    build-fuzz/"$t" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$crash/" "$work" "${seeds[@]}" >build-fuzz/logs/"$t".log 2>&1 || rc=$?
    local runs
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' build-fuzz/logs/"$t".log | grep -o '[0-9]*$' || echo "?")
    if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$crash")" ]; then
        echo "fuzz: $t FAILED (exit $rc) after $runs runs; input(s): $(ls "$crash" | sed "s|^|$crash/|" | tr '\n' ' ')"
        grep -A30 -m1 -E "ERROR|runtime error|deadly signal|Timeout|out-of-memory" build-fuzz/logs/"$t".log | head -40
        return 1
    fi
    echo "fuzz: $t ok, $runs runs, corpus $(ls "$work" | wc -l) new units"
}
export -f one
export SECS
# shellcheck disable=SC2086
if printf '%s\n' $targets | xargs -P "$JOBS" -I{} bash -c 'one {}'; then
    echo "fuzz: ok ($(( $(date +%s) - t0 )) s)"
else
    echo "fuzz: FAILED (logs in build-fuzz/logs/)"
    exit 1
fi
