#!/usr/bin/env bash
# Installs s2o-compile (editable) with its test extras into the current Python.
# An existing torch (a GPU user's CUDA build) is kept; with none, torch==2.13.0 is installed,
# which on this project's CPU machines is the CPU wheel, not a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test,bench]"
