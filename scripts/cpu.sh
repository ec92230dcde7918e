#!/usr/bin/env bash
# cpu.sh: CPU-only build, the CPU kernel tests and the CPU matmul / INT4 benchmarks, for a machine
# whose CPU the dev box lacks (the GPU host's Xeon: AVX-512 VNNI). No CUDA is built.
#   scripts/cpu.sh [threads...]   (default: $(nproc) and 2)
# Per thread count: bench_matmul (all weight types at the first count, then only its Q4 kernel-table
# A/B), then bench_int4 on dummy qwen2-0.5b/1.5b:
# int4 (tier by cpuid), int4-old (TL_Q4_KERNEL=old: the one-row kernel of that tier), int4 with
# TL_CPU=avx2 (the AVX2 4-row kernel on the same CPU); bf16 as well at the first thread count.
# Logs go to $OUT (or ./out), one file per step, and cpu-logs.tgz with all of them. If the machine
# lacks the -dev libraries or pkg-config, .deb files in $TL_DEBS (default .gpu-debs) are unpacked into
# a private prefix (never into /) by scripts/debs-prefix.sh, as for scripts/gpu.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
THREADS=("$@")
[ ${#THREADS[@]} -gt 0 ] || THREADS=("$(nproc)" 2)
COMMIT=$(cat .gpu-commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "cpu.sh: commit $COMMIT, $(date -u +%FT%TZ), threads ${THREADS[*]}"
lscpu | grep -iE 'model name|^cpu\(s\)|mhz|l2|l3|^flags' | tee "$OUT/lscpu.log" | grep -ivE '^flags'
grep -o -wE 'avx512(f|bw|vl|dq|_vnni|_bf16)' "$OUT/lscpu.log" | sort -u | tr '\n' ' '
echo

. scripts/debs-prefix.sh

TESTS=(test_matmul test_int4 test_int4_quality test_ops)
cmake -S . -B build-cpu -DCMAKE_BUILD_TYPE=Release -DTL_CUDA=OFF "${EXTRA[@]}" >"$OUT/cmake.log" 2>&1 ||
  { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build-cpu -j"$(nproc)" --target "${TESTS[@]}" bench_matmul bench_int4 >"$OUT/build.log" 2>&1 ||
  { grep -E 'error|Error' "$OUT/build.log" | head -40; exit 1; }
echo "cpu.sh: built"

rc=0
for t in "${TESTS[@]}"; do
  echo "== $t"
  timeout 120 ./build-cpu/$t >"$OUT/$t.log" 2>&1 || rc=1
  grep -E 'FAIL|SKIP|ISA|isa|passed' "$OUT/$t.log" | head -20
done
echo "== test_matmul with TL_CPU=avx2"
TL_CPU=avx2 timeout 120 ./build-cpu/test_matmul >"$OUT/test_matmul_avx2.log" 2>&1 || rc=1
grep -E 'FAIL|ISA|passed' "$OUT/test_matmul_avx2.log" | head -10

first=1
for n in "${THREADS[@]}"; do
  pre=512 types=bf16,int4,int4-old what=all
  [ $first = 1 ] || { pre=128 types=int4,int4-old what=q4; }
  echo "== bench_matmul $n 32768 4096 $what"
  timeout 120 ./build-cpu/bench_matmul "$n" 32768 4096 $what 2>&1 | tee "$OUT/bench_matmul_$n.log"
  echo "== bench_int4 $n $pre 32 ($types; then int4 with TL_CPU=avx2)"
  BENCH_TYPES=$types timeout 150 ./build-cpu/bench_int4 "$n" $pre 32 qwen2-0.5b qwen2-1.5b 2>&1 | tee "$OUT/bench_int4_$n.log"
  TL_CPU=avx2 BENCH_TYPES=int4 timeout 60 ./build-cpu/bench_int4 "$n" $pre 32 qwen2-0.5b qwen2-1.5b 2>&1 |
    grep -E '^qwen' | sed 's/ int4 / int4-avx2/' | tee -a "$OUT/bench_int4_$n.log"
  first=0
done
(cd "$OUT" && tar czf cpu-logs.tgz ./*.log)
echo "cpu.sh exit $rc"
exit $rc
