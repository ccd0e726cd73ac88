"""The personal-model benchmarks' --seeds mode (figures as the mean over seeds with their
range) and the patient-specific --review row, in their small modes (slow: real records)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _run(script, args, mitdb):
    proc = subprocess.run(
        [sys.executable, f"scripts/{script}", *args],
        cwd=REPO,
        env={**os.environ, "ECGCNN_DATA_DIR": str(mitdb)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_benchmark_review_and_seeds(mitdb, tmp_path):
    """--review 3 --seeds 0,1 on one record: both protocols' figures, the range over seeds, the
    asked beats in review.json and never more than the budget."""
    out = tmp_path / "out"
    args = ["--records", "119", "--common-model", "none", "--workers", "1", "--out", str(out)]
    args += ["--seeds", "0,1", "--review", "3", "trainer.max_epochs=1", "views=[none]"]
    line = _run("benchmark_patient_specific.py", args, mitdb)
    assert line["seeds"] == [0, 1] and len(line["per_seed"]) == 2
    lo, hi = line["VEB_range"]["Se"]
    assert lo <= line["VEB"]["Se"] <= hi
    assert line["review"]["asked"] == 3
    for s in (0, 1):
        rv = json.loads((out / f"seed{s}" / "review.json").read_text())
        beats = rv["per_record"]["119"]["asked"]
        assert len(beats) == 3 and all(b["time_s"] >= 300 for b in beats)
        strict = json.loads((out / f"seed{s}" / "119_m5" / "metrics.json").read_text())
        assert strict["review"]["n_test"] == strict["n_beats"] - 3


def test_zeroshot_seeds(mitdb, tmp_path):
    """--seeds 0,1: each seed's run in its folder, the mean between the range's ends."""
    out = tmp_path / "zs"
    args = ["--records", "119", "--jobs", "1", "--out", str(out), "--seeds", "0,1"]
    args += ["trainer.max_epochs=1", "figures=false", "library_records=[100,105,119,208]"]
    line = _run("benchmark_zeroshot.py", args, mitdb)
    assert line["seeds"] == [0, 1] and len(line["per_seed"]) == 2
    lo, hi = line["f1_range"]
    assert lo <= line["f1"] <= hi
    assert line["f1"] == pytest.approx(sum(p["f1"] for p in line["per_seed"]) / 2)
    assert all((out / f"seed{s}" / "summary.json").is_file() for s in (0, 1))
