#!/usr/bin/env bash
# Set everything up from nothing: a virtual environment in .venv, PyTorch 2.13.0 first, then
# ecgcnn with its dev extras. pip takes torch from its configured indexes: on a stock Linux
# machine PyPI's wheel is the multi-GB CUDA build, so set TORCH_INDEX_URL to choose another,
# e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: Python >= 3.10 needed, $("$PY" --version) found" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  .venv/bin/python -m pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
  .venv/bin/python -m pip install --quiet torch==2.13.0
fi
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "ecgcnn installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
