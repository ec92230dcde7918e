#!/usr/bin/env bash
# Installs the dependencies (Debian 12 packages) and builds tinyllm into build/ (Release).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
echo "built: build/tinyllm (try: build/tinyllm generate -m dummy:qwen2-0.5b -n 32)"
