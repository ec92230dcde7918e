#!/usr/bin/env bash
# Installs everything tinyllm needs to build and test on Debian 12, from Debian's and PyPI's registries.
# Build: compiler, cmake, pkg-config and the -dev libraries (JSON, regex, Unicode, HTTP).
# Tests: python3 packages: HF tokenizers (differential tokenizer test), openai (server tests), numpy.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev gnuplot-nox curl python3 python3-pip"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "install-deps: apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
PY=${PYTHON:-python3}
if ! $PY -c "import tokenizers, openai, numpy" 2>/dev/null; then
  echo "install-deps: pip install tokenizers openai numpy"
  $PY -m pip install -q tokenizers openai numpy 2>/dev/null || $PY -m pip install -q --break-system-packages tokenizers openai numpy
fi
echo "install-deps: ok"
