#!/usr/bin/env bash
# Set up SMART-Net for Slicer in ./.venv (CPU PyTorch). Usage: bash scripts/setup.sh [--test]
#   --test  also installs the test tools and the Debian packages some tests use (when run as root).
# GPU users: install the CUDA build of torch into .venv first (see README), this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "torch==2.13.0"          # the CPU build; an unpinned torch pulls GBs of CUDA packages
fi
if [ "${1:-}" = "--test" ]; then
  $PIP install -q -e ".[test]"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in invesalius-examples libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libgdcm-tools; do
      dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null \
        || echo "setup: could not install$missing; the tests that need them will be skipped" >&2
    fi
  fi
else
  $PIP install -q -e .
fi
