#!/usr/bin/env bash
# Sanitizer run (CI runs it after scripts/test.sh): a second build with clang under AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/, CPU only), the whole ctest suite in it (any report fails
# the test: ASan halts on the first error, UBSan is built with -fno-sanitize-recover), then
# LeakSanitizer-clean runs of the CLI on small models (a leak fails the run).
# Usage: scripts/sanitize.sh [ctest args]    Env: TL_SHARED (default ../shared), JOBS (default nproc).
# Heavy tests see TL_SANITIZE=1 and may shrink their sizes (never skip) to stay fast under ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
export TL_SHARED=${TL_SHARED:-$(cd .. && pwd)/shared}
export TL_SANITIZE=1
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_invalid_pointer_pairs=0:allocator_may_return_null=0:exitcode=86"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1"
export LSAN_OPTIONS="exitcode=87"
t0=$(date +%s)
CC=clang cmake -S . -B build-asan -DTL_SANITIZE=ON -DTL_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan -j"$JOBS"
t1=$(date +%s)
echo "sanitize: build $((t1 - t0)) s"
ctest --test-dir build-asan --output-on-failure -j"$JOBS" "$@"
t2=$(date +%s)
echo "sanitize: ctest under ASan+UBSan $((t2 - t1)) s"

# LeakSanitizer on whole CLI runs (tests exit through many paths; these are the common ones).
bin=build-asan/tinyllm
run() {
    echo "sanitize: $*"
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || grep -q "Sanitizer" <<<"$out"; then
        echo "$out" | tail -40
        echo "sanitize: FAILED (exit $rc): $*"
        exit 1
    fi
}
run $bin generate -m tests/data/hf/qwen2-tied-gqa2-hd64 --tokens 1,2,3 -n 8
run $bin generate -m tests/data/hf/llama-gqa2-sharded --tokens 1,2,3 -n 8 --quant int4:32
run $bin score -m tests/data/hf/qwen2-untied-gqa1-hd64-bf16 --tokens 1,2,3,4,5
run $bin info -m tests/data/hf/qwen2-gqa7-hd128-f16
stories="$TL_SHARED/assets/stories260K/stories260K.gguf"
if [ -f "$stories" ]; then
    run $bin generate -m "$stories" -p "Once upon a time" -n 16
    run $bin tokenize -m "$stories" "Hello world"
else
    echo "sanitize: $stories not found: skipping the GGUF CLI run" >&2
fi
# Error paths must not leak either: a missing model is an error (exit 1), not a sanitizer report.
out=$($bin generate -m /nonexistent --tokens 1 -n 1 2>&1) && { echo "sanitize: expected an error"; exit 1; }
if grep -q "Sanitizer" <<<"$out"; then echo "$out"; echo "sanitize: FAILED on the error path"; exit 1; fi
t3=$(date +%s)
echo "sanitize: ok (build $((t1 - t0)) s, tests $((t2 - t1)) s, CLI $((t3 - t2)) s)"
