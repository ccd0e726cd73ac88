#!/usr/bin/env bash
# The project's main job: the 44-patient patient-specific benchmark (Kiranyaz 2016 protocol),
# from raw records to outputs/benchmark_ps/<time>/report.html.
# Data: $ECGCNN_DATA_DIR if set, else data/mitdb (downloaded from PhysioNet and checksum-verified
# on first use). Extra arguments go to scripts/benchmark_patient_specific.py, e.g.
# `--seeds 0,1,2` (the mean over three seeds with the range, about 3x the time) or `--review 25`
# (adds the review-in-the-loop row). The default stays one seed so the main job stays short.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ECGCNN_DATA_DIR:-}" ]; then
  export ECGCNN_DATA_DIR="$PWD/data/mitdb"
  [ -f "$ECGCNN_DATA_DIR/234.atr" ] || .venv/bin/ecgcnn-download target="$ECGCNN_DATA_DIR"
fi
.venv/bin/python scripts/benchmark_patient_specific.py "$@"
