#!/usr/bin/env bash
# Set everything up from nothing: a virtual environment in .venv, the CPU build of PyTorch
# 2.13.0 first (so pip never pulls the multi-GB CUDA build), then ecgcnn with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: Python >= 3.10 needed, $("$PY" --version) found" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "ecgcnn installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
