#!/usr/bin/env bash
# The project's main job. Data: $ECGCNN_DATA_DIR if set, else data/mitdb (downloaded from
# PhysioNet and checksum-verified on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ECGCNN_DATA_DIR:-}" ]; then
  export ECGCNN_DATA_DIR="$PWD/data/mitdb"
  [ -f "$ECGCNN_DATA_DIR/234.atr" ] || .venv/bin/ecgcnn-download target="$ECGCNN_DATA_DIR"
fi
.venv/bin/ecgcnn-prepare "$@"
