"""Every benchmark script runs in its small mode and ends with its documented JSON line, so a
benchmark that no longer runs fails the suite (slow: they read the real MIT-BIH records).
The full-size figures stay in the scripts; nothing here asserts a timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: script -> (small-mode arguments, keys of its last JSON line); "{out}": a temporary folder
SMALL = {
    "bench_inference.py": (
        ["--quick", "--beats", "2048", "--repeats", "1"],
        ["beats_per_s", "baseline_beats_per_s", "speedup"],
    ),
    "bench_prepare.py": (
        ["--records", "100", "119", "--repeats", "1"],
        ["prepare_s", "wfdb_read_s", "ratio", "peak_rss_mb"],
    ),
    "bench_qrs.py": (
        ["--records", "100", "208", "--repeats", "1"],
        ["qrs_se", "qrs_ppv", "realtime_factor", "records"],
    ),
    "bench_monitor.py": (
        [
            "--records",
            "119",
            "--epochs",
            "1",
            "--timing-repeats",
            "1",
            "--timing-record",
            "119",
            "--out",
            "{out}",
        ],
        ["qrs_se", "qrs_ppv", "realtime_factor", "latency_p99_ms"],
    ),
    "bench_holter.py": (
        ["--quick", "--out", "{out}"],
        ["wall_s", "read_s", "ratio", "beats", "qrs_se", "qrs_ppv", "peak_rss_mb", "hours"],
    ),
    "benchmark_patient_specific.py": (
        [
            "--records",
            "119",
            "--common-model",
            "none",
            "--workers",
            "1",
            "--out",
            "{out}",
            "trainer.max_epochs=1",
            "views=[none]",
        ],
        ["wall_s", "peak_rss_mb", "VEB", "SVEB"],
    ),
    "benchmark_zeroshot.py": (
        [
            "--records",
            "119",
            "--jobs",
            "1",
            "--out",
            "{out}",
            "trainer.max_epochs=1",
            "figures=false",
            "library_records=[100,105,119,208]",
        ],
        ["p_detect_first3", "f1", "se", "ppv", "false_alarms_per_hour", "wall_s"],
    ),
}


def test_every_benchmark_script_has_a_small_mode():
    """Each scripts/bench*.py runs here, or in its own helper's test file (which names it)."""
    scripts = {p.name for p in (REPO / "scripts").glob("bench*.py")}
    others = " ".join(
        p.read_text() for p in (REPO / "tests").glob("test_*.py") if p.name != "test_benchmarks.py"
    )
    untested = {s for s in scripts - set(SMALL) if s not in others}
    assert not untested, f"benchmark scripts no test runs: {sorted(untested)}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALL))
def test_benchmark_small_mode_runs(script, mitdb, tmp_path):
    args, keys = SMALL[script]
    args = [a.replace("{out}", str(tmp_path / "out")) for a in args]
    env = {**os.environ, "ECGCNN_DATA_DIR": str(mitdb)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(keys) <= set(last), f"{script}: last line lacks {set(keys) - set(last)}"
