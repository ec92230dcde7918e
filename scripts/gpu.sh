#!/usr/bin/env bash
# gpu.sh: one command that builds, tests and benchmarks the CUDA path on a machine with an NVIDIA GPU.
#   scripts/gpu.sh [all|test|bench|bench72|engine|full|prefill|decode|attn|gemm|serve]   (all = test + bench on dummy:qwen2-7b;
#   full = all + 72b; prefill = test + the 7B prefill breakdown (gpu_bench_prefill) + bench's prefill rows alone;
#   decode = kernel tests, GEMV / decode variants old vs new on 7B, model tests; TL_NCU=1: + Nsight Compute
#   (TL_NCU=steps: only the kernel durations of two decode steps);
#   attn = test + decode attention alone, attn.cu vs tensor cores (gpu_bench_attn) + engine;
#   gemm = kernel tests, the INT4 GEMM alone vs dequant/bf16-copy + cuBLAS and batched decode steps (7B), model tests:
#   builds only those targets, and keeps the whole under ~450 s;
#   serve = `tinyllm serve` (7B INT4, CUDA) under tools/loadtest.py, clients hanging up included; the tokenizer
#   from $TL_SHARED/assets (default ../shared))
# Logs go to $OUT (or ./out). If the machine lacks the -dev libraries (jansson, pcre2, utf8proc,
# microhttpd) or pkg-config, .deb files in $TL_DEBS (default .gpu-debs) are unpacked into a private
# prefix (never into /). Benchmarks print the card, the commit and the card's measured ceilings.
set -uo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
J=$(nproc)
COMMIT=$(cat .gpu-commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "gpu.sh: $WHAT, commit $COMMIT, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
nvcc --version | tail -1

. scripts/debs-prefix.sh

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTL_GPU_TESTS=ON "${EXTRA[@]}" >"$OUT/cmake.log" 2>&1 ||
  { tail -30 "$OUT/cmake.log"; exit 1; }
grep 'tinyllm:' "$OUT/cmake.log"
TARGETS="gpu_test_cuda_ops gpu_test_cuda_model gpu_test_cuda_sample gpu_bench_cuda gpu_bench_prefill gpu_bench_attn tinyllm_cli"
[ "$WHAT" = gemm ] && TARGETS="gpu_test_cuda_ops gpu_test_cuda_model gpu_bench_cuda"
[ "$WHAT" = serve ] && TARGETS="tinyllm_cli"
cmake --build build-gpu -j"$J" --target $TARGETS >"$OUT/build.log" 2>&1 ||
  { grep -E 'error|Error' "$OUT/build.log" | head -40; exit 1; }
echo "gpu.sh: built"

rc=0
if [ "$WHAT" = all ] || [ "$WHAT" = full ] || [ "$WHAT" = test ] || [ "$WHAT" = prefill ] || [ "$WHAT" = attn ]; then
  for t in gpu_test_cuda_ops gpu_test_cuda_model gpu_test_cuda_sample; do
    echo "== $t"
    timeout 300 ./build-gpu/$t 2>&1 | tee "$OUT/$t.log" | tail -40
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  done
fi
if [ "$WHAT" = all ] || [ "$WHAT" = full ] || [ "$WHAT" = bench ]; then
  echo "== bench dummy:qwen2-7b"
  timeout 400 ./build-gpu/gpu_bench_cuda dummy:qwen2-7b "$COMMIT" 2>&1 | tee "$OUT/bench_7b.log" || rc=1
fi
if [ "$WHAT" = prefill ]; then
  echo "== prefill breakdown (7B shapes)"
  timeout 200 ./build-gpu/gpu_bench_prefill "$COMMIT" 2>&1 | tee "$OUT/bench_prefill.log" || rc=1
  echo "== bench dummy:qwen2-7b, prefill rows"
  TL_BENCH_ONLY=prefill timeout 300 ./build-gpu/gpu_bench_cuda dummy:qwen2-7b "$COMMIT" 2>&1 | tee "$OUT/bench_7b_prefill.log" || rc=1
fi
if [ "$WHAT" = decode ]; then  # the decode work: kernel tests, old vs new decode variants (7B), model tests
  echo "== gpu_test_cuda_ops"
  timeout 120 ./build-gpu/gpu_test_cuda_ops 2>&1 | tee "$OUT/gpu_test_cuda_ops.log" | grep -E "FAIL|passed|q4g" | head -60
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  echo "== bench decode variants dummy:qwen2-7b"
  timeout 240 ./build-gpu/gpu_bench_cuda dummy:qwen2-7b "$COMMIT" decode 2>&1 | tee "$OUT/bench_decode.log" || rc=1
  echo "== gpu_test_cuda_model"
  timeout 200 ./build-gpu/gpu_test_cuda_model 2>&1 | tee "$OUT/gpu_test_cuda_model.log" | tail -30
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -n "${TL_NCU:-}" ] && [ -n "$NCU" ]; then  # kernel durations of decode steps, then details
    B="./build-gpu/gpu_bench_cuda dummy:qwen2-7b $COMMIT decode"
    N="$NCU --clock-control none"
    echo "== ncu: every kernel of two decode steps (7B, ctx 512)"
    TL_BENCH_PROFILE=1 timeout 150 $N --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
      -k regex:'q4[gs]_kernel|attn_kernel|attn_dec|attn_merge|rope_kv|embed_kernel|rmsnorm_kernel|gather_kernel' $B > "$OUT/ncu_steps.csv" 2>/dev/null
    [ "$TL_NCU" = steps ] && { echo "gpu.sh exit $rc (TL_NCU=steps: no details)"; exit $rc; }
    SEC="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats"
    SEC="$SEC --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"  # stall reasons per issue
    echo "== ncu details: layer 0 GEMVs and lm_head of the second step, one attention"
    D="$OUT/ncu_details.txt"  # one file: at most 8 files come back from $OUT
    TL_BENCH_PROFILE=1 timeout 100 $N $SEC -k regex:'q4[gs]_kernel' --launch-skip 114 --launch-count 4 $B > "$D" 2>&1
    TL_BENCH_PROFILE=1 timeout 60 $N $SEC -k regex:'q4[gs]_kernel' --launch-skip 226 --launch-count 1 $B >> "$D" 2>&1
    TL_BENCH_PROFILE=1 timeout 60 $N $SEC -k regex:attn_kernel --launch-skip 56 --launch-count 1 $B >> "$D" 2>&1
    grep -E "Duration|DRAM Throughput|Achieved Occupancy|Issued Ipc" "$D" | head -40
  fi
fi
if [ "$WHAT" = gemm ]; then  # the INT4 GEMM: kernel tests, alone vs the cuBLAS paths, decode steps, model tests
  echo "== gpu_test_cuda_ops ($SECONDS s)"
  timeout 150 ./build-gpu/gpu_test_cuda_ops 2>&1 | tee "$OUT/gpu_test_cuda_ops.log" | grep -E "FAIL|passed|q4 gemm" | head -80
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  echo "== INT4 GEMM alone + batched decode, dummy:qwen2-7b ($SECONDS s)"
  timeout $((400 - SECONDS)) ./build-gpu/gpu_bench_cuda dummy:qwen2-7b "$COMMIT" gemm ${TL_GEMM_BATCH:-256} 2>&1 | tee "$OUT/bench_gemm.log" || rc=1
  echo "== gpu_test_cuda_model ($SECONDS s)"
  timeout $((465 - SECONDS)) ./build-gpu/gpu_test_cuda_model 2>&1 | tee "$OUT/gpu_test_cuda_model.log" | grep -E "FAIL|passed|checks" | tail -30
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  if [ -n "${TL_GEMM_72B:-}" ]; then  # 72B (no bf16 copies): batch 32 / 64 steps, old vs the INT4 GEMM (~3 min: load)
    echo "== batched decode, dummy:qwen2-72b ($SECONDS s)"
    timeout $((470 - SECONDS)) ./build-gpu/gpu_bench_cuda dummy:qwen2-72b "$COMMIT" gemm 64 2>&1 | tee "$OUT/bench_gemm_72b.log" || rc=1
  fi
fi
if [ "$WHAT" = attn ]; then
  echo "== decode attention alone (7B shapes)"
  timeout 120 ./build-gpu/gpu_bench_attn "$COMMIT" 2>&1 | tee "$OUT/bench_attn.log" || rc=1
fi
if [ "$WHAT" = engine ] || [ "$WHAT" = full ] || [ "$WHAT" = attn ]; then
  echo "== engine throughput dummy:qwen2-7b"
  timeout 300 ./build-gpu/gpu_bench_cuda dummy:qwen2-7b "$COMMIT" engine ${TL_ENGINE_REQS:-512} 2>&1 | tee "$OUT/engine_7b.log" || rc=1
fi
if [ "$WHAT" = serve ]; then  # `tinyllm serve` end to end on the GPU: tools/loadtest.py against a 7B INT4 server
  TOK=${TL_SHARED:-../shared}/assets/qwen2.5-tokenizer
  PORT=${TL_SERVE_PORT:-18000}
  ./build-gpu/tinyllm serve -m dummy:qwen2-7b --quant int4 --backend cuda --tokenizer "$TOK" --port "$PORT" \
    --max-seqs 256 --max-queue 1024 >"$OUT/serve.log" 2>&1 &
  SP=$!
  for _ in $(seq 1 180); do  # the load takes ~20 s; /health answers 503 until then
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null && break
    kill -0 $SP 2>/dev/null || break
    sleep 1
  done
  grep -E "cuda:|engine:|listening" "$OUT/serve.log"
  if ! kill -0 $SP 2>/dev/null; then echo "gpu.sh: the server exited:"; tail -5 "$OUT/serve.log"; echo "gpu.sh: exit 1"; exit 1; fi
  echo "== loadtest: 400 requests, 64 clients, 20% hanging up early ($SECONDS s)"
  timeout 240 python3 tools/loadtest.py --url "http://127.0.0.1:$PORT" -n 400 -c 64 --disconnect 0.2 --max-tokens 128 \
    2>&1 | tee "$OUT/loadtest1.log" | tail -10
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  echo "== loadtest: 256 requests, 128 clients, 128-512 tokens each, EOS ignored ($SECONDS s)"
  timeout 240 python3 tools/loadtest.py --url "http://127.0.0.1:$PORT" -n 256 -c 128 --disconnect 0 --min-tokens 128 \
    --max-tokens 512 --ignore-eos 2>&1 | tee "$OUT/loadtest2.log" | tail -10
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  kill -TERM $SP; wait $SP || rc=1
  tail -2 "$OUT/serve.log"
fi
if [ "$WHAT" = bench72 ] || [ "$WHAT" = full ]; then
  echo "== bench dummy:qwen2-72b"
  timeout 500 ./build-gpu/gpu_bench_cuda dummy:qwen2-72b "$COMMIT" 2>&1 | tee "$OUT/bench_72b.log" || rc=1
fi
echo "gpu.sh: exit $rc"
exit $rc
