#!/usr/bin/env bash
# For a machine without nvcc: compiles the CUDA backend, the GPU tests and the GPU benchmarks with -Werror, runs
# nothing (no GPU needed), with NVIDIA's CUDA 13.0 toolkit (the GPU machine's nvcc version) from PyPI's wheels
# (nvcc, nvvm, crt, runtime, cccl, cuBLAS: ~500 MB download, ~1.1 GB unpacked) in build-cuda/toolkit, once.
# Where nvcc is on PATH (the CI machine, the GPU machine) scripts/test.sh already compiles all of it, and .ci/run
# calls this only when nvcc is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TK=build-cuda/toolkit
R=$TK/nvidia/cu13
WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96
        nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14"
mkdir -p build-cuda
if [ ! -x "$R/bin/nvcc" ]; then
  echo "cuda-compile: pip install the CUDA 13.0 toolkit wheels into $TK"
  # shellcheck disable=SC2086
  $PY -m pip install -q --no-deps --target "$TK" $WHEELS 2>/dev/null ||
    $PY -m pip install -q --no-deps --break-system-packages --target "$TK" $WHEELS
fi
# the wheels carry versioned libraries (libcudart.so.13); the linker looks for the plain names
for f in "$R"/lib/lib*.so.*; do
  b=$(basename "$f")
  [ -e "$R/lib/${b%%.so.*}.so" ] || ln -s "$b" "$R/lib/${b%%.so.*}.so"
done
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$PWD/$R/bin/nvcc" \
  -DCUDAToolkit_ROOT="$PWD/$R" -DTL_GPU_TESTS=ON > build-cuda/cmake.log 2>&1 || { tail -30 build-cuda/cmake.log; exit 1; }
grep -q "building the CUDA backend" build-cuda/cmake.log || { echo "cuda-compile: CMake did not take the CUDA path"; tail -30 build-cuda/cmake.log; exit 1; }
cmake --build build-cuda -j"$(nproc)" --target gpu_test_cuda_ops gpu_test_cuda_model gpu_test_cuda_sample \
  gpu_bench_cuda gpu_bench_prefill gpu_bench_attn tinyllm_cli
echo "cuda-compile: ok (CUDA backend, GPU tests and benchmarks compiled with $("$R/bin/nvcc" --version | tail -1))"
