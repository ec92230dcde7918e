#!/usr/bin/env bash
# The test command: build (Release) and run every test with ctest. Usage: scripts/test.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# TL_GPU_TESTS: where nvcc is found the GPU tests and benchmarks are compiled too (never run by ctest: no GPU here)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTL_GPU_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
