"""Faults: a full disk while checkpointing, a multirun killed with SIGKILL and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ecgcnn.atomic import atomic_output
from ecgcnn.errors import EcgError
from ecgcnn.training import checkpoint
from ecgcnn.training.checkpoint import load_checkpoint, save_checkpoint


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = {"model": {"w": torch.ones(3)}, "model_args": {}, "classes": ["N"], "epoch": 1}
    save_checkpoint(good, tmp_path / "last.pt")

    def full_disk(obj, fh):
        fh.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(EcgError, match=r"last\.pt: cannot write \(No space left on device\)"):
        save_checkpoint({**good, "epoch": 2}, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the old one, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_unwritable_output_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        pytest.raises(EcgError, match="cannot write"),
        atomic_output(blocker / "metrics.json", "w") as fh,
    ):
        fh.write("{}")


def _sweep(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "ecgcnn.apps.finetune", "-m", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.slow
def test_killed_multirun_resumes_to_the_same_summary(mitdb, tmp_path):
    common = [
        "record=100,119,208",
        "trainer.max_epochs=3",
        "report=false",
        "trainer.resume=true",
        f"data.root={mitdb}",
        f"data.cache_dir={tmp_path / 'c'}",
    ]
    ref = _sweep([*common, f"hydra.sweep.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()[-2000:]

    killed = tmp_path / "killed"
    p = _sweep([*common, f"hydra.sweep.dir={killed}"], tmp_path)
    deadline = time.time() + 300
    while not (killed / "100_m5.0" / "metrics.json").exists():
        assert p.poll() is None and time.time() < deadline, "sweep ended before the kill"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (killed / "summary.json").exists()
    first = (killed / "100_m5.0" / "metrics.json").read_bytes()

    again = _sweep([*common, f"hydra.sweep.dir={killed}"], tmp_path)
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()[-2000:]
    assert (killed / "100_m5.0" / "metrics.json").read_bytes() == first  # not redone

    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    for key in ("confusion", "VEB", "SVEB", "per_record", "n_patients"):
        assert a[key] == b[key], key
