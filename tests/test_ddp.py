"""DistributedDataParallel on CPU (gloo): two ranks end with identical weights; only rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synth_ecg, write_record

TESTS = Path(__file__).resolve().parent

WORKER = """
import json, sys
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[1])
from conftest import compose
from ecgcnn.apps.train import train
s = train(compose("train", json.loads(sys.argv[2])), Path(sys.argv[3]))
torch.save(s["state_dict"], sys.argv[4])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def overrides(tmp_path) -> list[str]:
    root = tmp_path / "db"
    sig, r, syms = synth_ecg(150, v_every=5)
    write_record(root, "s1", sig, r, syms)
    sig, r, syms = synth_ecg(60, seed=1)
    write_record(root, "s2", sig, r, syms)
    return [
        f"data.root={root}",
        'data.records=["s1","s2"]',
        f"data.cache_dir={tmp_path / 'c'}",
        'split.train_records=["s1"]',
        'split.test_records=["s2"]',
        "trainer.max_epochs=1",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "trainer.num_threads=1",
    ]


def test_two_gloo_ranks_end_identical_and_only_rank0_writes(tmp_path, overrides):
    # warm the beat cache first so the two ranks do not both write it
    from conftest import compose

    from ecgcnn.data.cache import load_beats

    load_beats(compose("train", overrides).data, records=["s1"])
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(TESTS),
                    json.dumps(overrides),
                    str(tmp_path / f"out{rank}"),
                    str(tmp_path / f"rank{rank}.pt"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    for f in ("best.pt", "last.pt", "metrics.csv", "train_summary.json"):
        assert (tmp_path / "out0" / f).is_file(), f
    assert not (tmp_path / "out1").exists() or not any((tmp_path / "out1").iterdir())
    summary = json.loads((tmp_path / "out0" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    ck = torch.load(tmp_path / "out0" / "best.pt", weights_only=True)
    assert all(torch.equal(ck["model"][k], w0[k]) for k in w0)
    # only the main process prints the model line
    printed = [o.decode() for o, _ in outs]
    assert "parameters" in printed[0] and "parameters" not in printed[1]

    # a single process on the same data takes twice the steps: different weights, so the
    # two ranks really split the epoch between them
    from ecgcnn.apps.train import train

    ws = train(compose("train", overrides), tmp_path / "single")["state_dict"]
    assert not all(torch.equal(ws[k], w0[k]) for k in w0)


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").is_file(),
    reason="torchrun not installed",
)
def test_torchrun_two_processes(tmp_path, overrides):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "-m",
            "ecgcnn.apps.train",
            *overrides,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 1
    assert (tmp_path / "run" / "best.pt").is_file()
