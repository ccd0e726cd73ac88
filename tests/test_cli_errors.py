"""Console scripts given bad input: exit non-zero, ONE ``error:`` line naming the file or
setting, no traceback, and nothing written but Hydra's own ``.hydra/`` and log file.

Every case is a subprocess (~2 s of imports each); they all start together from one
module-scoped fixture and run a few at a time, so the module costs seconds, not a minute.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import compose

from ecgcnn.data.beats import CLASSES, RR_FEATURES
from ecgcnn.models import build_model
from ecgcnn.training.checkpoint import save_checkpoint

TRAIN = "ecgcnn.apps.train"
EVAL = "ecgcnn.apps.evaluate"
PREPARE = "ecgcnn.apps.prepare"


class Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model(name: str):
    torch.manual_seed(0)
    return build_model(
        compose("train", [f"model={name}"]).model, 2, 128, len(RR_FEATURES), len(CLASSES)
    )


def _checkpoints(d: Path) -> dict[str, Path]:
    d.mkdir()
    small, deep = _model("kiranyaz2016"), _model("deep")
    ok = {"model": small.state_dict(), "model_args": small.model_args, "classes": list(CLASSES)}
    save_checkpoint(ok, d / "ok.pt")
    # starts like a pickle (0x80 = PROTO, then a protocol torch does not expect): torch.load
    # warns before failing, and that warning must not reach the user's terminal
    (d / "garbage.pt").write_bytes(b"\x80\x95" + random.Random(0).randbytes(5000))
    blob = (d / "ok.pt").read_bytes()
    (d / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    save_checkpoint({**ok, "model": deep.state_dict()}, d / "othershape.pt")
    torch.save({**ok, "extra": Boom(d / "pwned")}, d / "evil.pt")
    return {p.stem: p for p in d.glob("*.pt")}


def _cases(root: Path, ck: dict[str, Path], mitdb: str) -> dict[str, tuple]:
    """name -> (module, overrides, text the error line must contain)."""
    data = [f"data.root={mitdb}"]
    ev = data + ['split.train_records=["101"]', 'split.test_records=["100"]']
    small = data + [
        'split.train_records=["101"]',
        'split.test_records=["100"]',
        "trainer.max_epochs=1",
        "trainer.progress=false",
    ]
    return {
        "train_missing_root": (TRAIN, [f"data.root={root / 'nowhere'}"], "data.root"),
        "prepare_unknown_record": (PREPARE, data + ['data.records=["999"]'], "999.hea"),
        "train_unknown_record": (TRAIN, data + ['data.records=["999"]'], "data.records"),
        "eval_garbage": (EVAL, ev + [f"checkpoint={ck['garbage']}"], "garbage.pt"),
        "eval_truncated": (EVAL, ev + [f"checkpoint={ck['truncated']}"], "truncated.pt"),
        "eval_other_shape": (EVAL, ev + [f"checkpoint={ck['othershape']}"], "othershape.pt"),
        "eval_unsafe_pickle": (EVAL, ev + [f"checkpoint={ck['evil']}"], "evil.pt"),
        "eval_without_checkpoint": (EVAL, ev, "checkpoint"),  # `???` in eval.yaml
        "train_negative_lr": (TRAIN, small + ["optim.lr=-1"], "optim.lr"),
        "train_cuda_without_gpu": (TRAIN, small + ["trainer.device=cuda"], "trainer.device"),
    }


def _run(
    module: str, args: list[str], out: Path, cwd: Path, env: dict
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={out}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    # decode by hand: text=True would turn a progress bar's "\r" into line breaks
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every case (and the Hydra config errors) once, three at a time."""
    root = tmp_path_factory.mktemp("cli")
    mitdb = os.environ.get("ECGCNN_DATA_DIR") or str(root / "no_data")
    ck = _checkpoints(root / "ck")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    cases = _cases(root, ck, mitdb)
    cases["hydra_typo"] = (TRAIN, ["trainer.max_epoch=3"], None)
    cases["hydra_wrong_type"] = (TRAIN, ["trainer.max_epochs=abc"], None)
    cases["hydra_unknown_choice"] = (TRAIN, ["model.activation=foo"], None)  # an Enum
    if not os.environ.get("ECGCNN_DATA_DIR"):
        cases = {k: v for k, v in cases.items() if k not in NEEDS_DATA}
    jobs = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        for name, (module, args, _) in cases.items():
            # a cwd of its own: a relative cache dir or stray "outputs/" would land there
            cwd = root / f"cwd_{name}"
            cwd.mkdir()
            args = (
                [*args, f"data.cache_dir={root / 'cache'}"]
                if name.startswith(("train", "prepare", "eval"))
                else args
            )
            jobs[name] = pool.submit(_run, module, args, root / name, cwd, env)
    return {
        name: (cases[name], job.result(), root / name, root / f"cwd_{name}")
        for name, job in jobs.items()
    }, ck


NEEDS_DATA = {
    "prepare_unknown_record",
    "train_unknown_record",
    "train_negative_lr",
    "train_cuda_without_gpu",
}
CASES = [
    "train_missing_root",
    "prepare_unknown_record",
    "train_unknown_record",
    "eval_garbage",
    "eval_truncated",
    "eval_other_shape",
    "eval_unsafe_pickle",
    "eval_without_checkpoint",
    "train_negative_lr",
    "train_cuda_without_gpu",
]


def _written(out: Path, cwd: Path) -> list[str]:
    """Files the run wrote besides Hydra's .hydra/ folder and the app's log file."""
    files = (
        [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
        if out.exists()
        else []
    )
    extra = [f for f in files if not f.startswith(".hydra/") and not f.endswith(".log")]
    return extra + [f"cwd:{p.name}" for p in cwd.iterdir()]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(c, marks=[pytest.mark.slow, pytest.mark.needs_data]) if c in NEEDS_DATA else c
        for c in CASES
    ],
)
def test_bad_input_gives_one_error_line(results, name):
    runs, ck = results
    if name in NEEDS_DATA and not os.environ.get("ECGCNN_DATA_DIR"):
        pytest.skip("needs ECGCNN_DATA_DIR (the failure must come from the setting, not the data)")
    (_, _, needle), proc, out, cwd = runs[name]
    if name == "train_cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    # what a terminal shows: a progress bar cleared with "\r" (tqdm leave=False) is gone
    lines = [ln.rsplit("\r", 1)[-1] for ln in proc.stderr.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert _written(out, cwd) == []
    assert (out / ".hydra" / "config.yaml").is_file()  # Hydra did start: the app refused
    if name == "eval_unsafe_pickle":
        assert not (ck["evil"].parent / "pwned").exists()


@pytest.mark.parametrize(
    "name,needle",
    [
        ("hydra_typo", "max_epoch"),
        ("hydra_wrong_type", "max_epochs"),
        ("hydra_unknown_choice", "expected one of [relu, relu6, tanh"),
    ],
)
def test_hydra_config_errors_exit_1_without_traceback(results, name, needle):
    runs, _ = results
    _, proc, out, cwd = runs[name]
    assert proc.returncode == 1, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (out / "best.pt").exists() and _written(out, cwd) == []
