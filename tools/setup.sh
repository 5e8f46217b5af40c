#!/usr/bin/env bash
# Installs what AKCB needs on a fresh Debian 12 machine, skipping what is already there:
# Debian packages (compilers' libraries, fmt, GoogleTest, Google Benchmark, JSON, PCRE2, utf8proc,
# CLI11, clang for the fuzzers, ninja, ccache) and PyPI packages (LibTorch via torch==2.11.0,
# transformers / tokenizers / safetensors for the reference fixtures, matplotlib for plots).
set -euo pipefail

APT_PACKAGES=(cmake ninja-build ccache g++ pkg-config python3-pip
  libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libcli11-dev clang libclang-rt-14-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "[setup] Debian packages present"
fi

PY=${PYTHON:-python3}
need_pip=()
$PY -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.11.0") else 1)' 2>/dev/null || need_pip+=("torch==2.11.0")
for mod_pkg in "transformers:transformers>=5" "tokenizers:tokenizers>=0.21" "safetensors:safetensors" \
               "numpy:numpy" "matplotlib:matplotlib"; do
  mod=${mod_pkg%%:*}; pkg=${mod_pkg#*:}
  $PY -c "import $mod" 2>/dev/null || need_pip+=("$pkg")
done
if ((${#need_pip[@]})); then
  echo "[setup] pip install ${need_pip[*]}"
  $PY -m pip install -q "${need_pip[@]}"
else
  echo "[setup] Python packages present"
fi
