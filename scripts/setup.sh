#!/usr/bin/env bash
# Set up SMART-Net for Slicer in ./.venv (CPU PyTorch). Usage: bash scripts/setup.sh [--test | --web]
#   --test  also installs the test tools, the browser viewer's environment (--web) and the Debian packages some
#           tests use (when run as root).
#   --web   sets up ./.venv-web for `smartnet view` (trame-slicer pins slicer-core 5.11 and VTK 9.6.0, which clash
#           with the slicer-core 5.13 the tests use, so it gets its own environment; no torch in it).
# GPU users: install the CUDA build of torch into .venv first (see README), this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages() {  # install the Debian packages named, when root and missing
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    local missing=""
    for pkg in "$@"; do
      dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null \
        || echo "setup: could not install$missing; the tests that need them will be skipped" >&2
    fi
  fi
}

web_environment() {  # .venv-web: trame-slicer with its slicer-core and VTK, and this package without its deps
  python3 -m venv .venv-web
  .venv-web/bin/python -m pip install -q "trame-slicer[standalone]==2.0.0"
  .venv-web/bin/python -m pip install -q --no-deps -e .
}

if [ "${1:-}" = "--web" ]; then
  web_environment
  exit 0
fi
python3 -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "torch==2.13.0"          # the CPU build; an unpinned torch pulls GBs of CUDA packages
fi
if [ "${1:-}" = "--test" ]; then
  $PIP install -q -e ".[test]"
  web_environment
  debian_packages invesalius-examples libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libgdcm-tools \
    chromium chromium-driver
else
  $PIP install -q -e .
fi
