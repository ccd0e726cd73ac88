"""Every console script, given each kind of bad input, prints one line naming the file or setting
and the problem, exits non-zero, writes no partial output and overwrites nothing.

The apps run in-process (``main()`` with ``sys.argv`` set, exactly what the console script
calls) so that the whole matrix stays fast; tests/test_cli_errors.py runs some cases as real
subprocesses.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from ecgcnn.data.beats import CLASSES, RR_FEATURES
from ecgcnn.models import CNN1D, ConvSpec
from ecgcnn.training.checkpoint import save_checkpoint

pytestmark = pytest.mark.slow

SENTINEL = "previous result\n"


# ----------------------------------------------------------------------------- bad data
def _corrupt(root: Path, kind: str) -> None:
    """Make record 100 of ``root`` bad in one way."""
    hea, dat = root / "100.hea", root / "100.dat"
    for p in (hea, dat, root / "100.atr"):
        real = p.resolve()
        p.unlink()
        shutil.copy(real, p)
    if kind == "missing_dat":
        dat.unlink()
    elif kind == "truncated":
        dat.write_bytes(dat.read_bytes()[:3000])
    elif kind == "header":
        hea.write_text("100 two 360\nnot a signal line\n")
    elif kind == "fs":
        hea.write_text(hea.read_text().replace("100 2 360 650000", "100 2 250 650000", 1))
    elif kind == "nan":
        raw = bytearray(dat.read_bytes())
        raw[3000:3300] = bytes([0x00, 0x88, 0x00]) * 100  # format 212 invalid sample -2048 x 2
        dat.write_bytes(bytes(raw))
    elif kind == "flat":
        dat.write_bytes(bytes(dat.stat().st_size))
    elif kind == "nobeats":
        (root / "100.atr").unlink()
        wfdb.wrann(
            "100",
            "atr",
            np.array([10, 5000]),
            symbol=["+", "~"],
            aux_note=["(N", ""],
            write_dir=str(root),
        )
    else:  # pragma: no cover
        raise ValueError(kind)


@pytest.fixture(scope="module")
def good_root(mitdb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    for p in mitdb.iterdir():
        (root / p.name).symlink_to(p)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def bad_root(good_root: Path, tmp: Path, kind: str) -> Path:
    root = tmp / f"db_{kind}"
    root.mkdir()
    for p in good_root.iterdir():
        (root / p.name).symlink_to(p.resolve())
    _corrupt(root, kind)
    return root


DATA_KINDS = {
    "missing_dat": "100.dat: signal file of record 100 not found",
    "truncated": "100.dat: truncated signal file",
    "header": "100.hea: header does not parse",
    "fs": "250",
    "nan": "NaN",
    "flat": "flat line",
    "nobeats": "no beat annotations",
}


# ----------------------------------------------------------------------------- checkpoints
def _model():
    return CNN1D(2, 128, len(RR_FEATURES), len(CLASSES), [ConvSpec(8, 5), ConvSpec(8, 5)], [8])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    from omegaconf import OmegaConf

    from ecgcnn.config import DataConfig

    d = tmp_path_factory.mktemp("ckpt")
    m = _model()
    payload = {
        "model": m.state_dict(),
        "model_args": m.model_args,
        "classes": list(CLASSES),
        "epoch": 0,
        "best_metric": 0.0,
        "config": {},
        "data": OmegaConf.to_container(OmegaConf.structured(DataConfig)),
    }
    save_checkpoint(payload, d / "good.pt")
    raw = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    other = CNN1D(2, 128, len(RR_FEATURES), len(CLASSES), [ConvSpec(16, 7)], [4])
    save_checkpoint({**payload, "model": other.state_dict()}, d / "shape.pt")
    (d / "garbage.pt").write_bytes(b"this is not a checkpoint at all\n" * 10)
    torch.save({"weights": torch.zeros(3)}, d / "notckpt.pt")
    return {k: d / f"{k}.pt" for k in ("good", "truncated", "shape", "garbage", "notckpt")}


CKPT_KINDS = {
    "truncated": "truncated.pt",
    "shape": "shape.pt",
    "garbage": "garbage.pt",
    "notckpt": "notckpt.pt",
}


# ----------------------------------------------------------------------------- apps
def run_app(module: str, args: list[str], out: Path, capfd) -> tuple[int, str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(SENTINEL)  # an earlier result that must survive
    mod = importlib.import_module(f"ecgcnn.apps.{module}")
    old = sys.argv
    sys.argv = [module, *args, f"hydra.run.dir={out}"]
    try:
        mod.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capfd.readouterr().err


def assert_clean_failure(code: int, err: str, out: Path, expect: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [
        ln
        for ln in err.replace("\r", "\n").splitlines()
        if ln.strip() and not ln.lstrip().startswith(("prepare", "["))
    ]
    assert lines and lines[-1].startswith("error:"), err
    assert sum(ln.startswith("error:") for ln in lines) == 1, err
    assert expect in lines[-1], (expect, lines[-1])
    assert (out / "metrics.json").read_text() == SENTINEL
    left = {p.name for p in out.iterdir()} - {".hydra", "metrics.json"}
    left = {n for n in left if not n.endswith(".log")}
    assert not left, f"partial output written: {left}"


# app -> (base overrides, {data kind supported}, record override template)
APPS = {
    "prepare": ["data.records=[100]", "use_cache=false", "progress=false"],
    "train": [
        "split=inter_patient",
        "split.train_records=[100]",
        "split.test_records=[101]",
        "trainer.max_epochs=1",
        "trainer.progress=false",
    ],
    "finetune": ["record=100", "trainer.max_epochs=1", "report=false"],
    "zeroshot": [
        "record=100",
        "library_records=[100,101,105,106]",
        "trainer.max_epochs=1",
        "figures=false",
    ],
}
CKPT_APPS = {
    "evaluate": ["split=inter_patient", "split.train_records=[101]", "split.test_records=[100]"],
    "monitor": ["record=100", "max_duration_s=60", "plot.enabled=false"],
    "export": ["format=onnx"],
}


@pytest.mark.parametrize("kind", sorted(DATA_KINDS))
@pytest.mark.parametrize("app", sorted(APPS) + ["evaluate", "monitor"])
def test_bad_record_files(app, kind, good_root, cache, checkpoints, tmp_path, capfd):
    if app == "monitor" and kind == "nobeats":
        pytest.skip("the monitor needs no reference annotations: a record without beats is valid")
    root = bad_root(good_root, tmp_path, kind)
    args = APPS.get(app) or CKPT_APPS[app] + [f"checkpoint={checkpoints['good']}"]
    args = [*args, f"data.root={root}", f"data.cache_dir={cache}"]
    if kind == "fs":
        args.append("data.resample=false")
    code, err = run_app(app, args, tmp_path / "out", capfd)
    assert_clean_failure(code, err, tmp_path / "out", DATA_KINDS[kind])


@pytest.mark.parametrize("app", sorted(APPS) + ["evaluate", "monitor"])
def test_unknown_record(app, good_root, cache, checkpoints, tmp_path, capfd):
    args = APPS.get(app) or CKPT_APPS[app] + [f"checkpoint={checkpoints['good']}"]
    args = [a.replace("100", "999") for a in args]
    code, err = run_app(
        app, [*args, f"data.root={good_root}", f"data.cache_dir={cache}"], tmp_path / "out", capfd
    )
    assert_clean_failure(code, err, tmp_path / "out", "999")


SETTINGS = {
    "negative_minutes": (["finetune", "zeroshot"], "split.minutes=-5", "minutes"),
    "zero_window": (
        ["prepare", "train", "finetune", "zeroshot"],
        "data.beat.length=0",
        "data.beat",
    ),
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_bad_settings(case, good_root, cache, tmp_path, capfd):
    apps, override, expect = SETTINGS[case]
    for app in apps:
        o = override
        if app == "zeroshot" and case == "negative_minutes":
            o = "minutes=-5"
        out = tmp_path / app
        code, err = run_app(
            app, [*APPS[app], o, f"data.root={good_root}", f"data.cache_dir={cache}"], out, capfd
        )
        assert_clean_failure(code, err, out, expect)


@pytest.mark.parametrize("kind", sorted(CKPT_KINDS))
@pytest.mark.parametrize("app", sorted(CKPT_APPS) + ["finetune"])
def test_bad_checkpoints(app, kind, good_root, cache, checkpoints, tmp_path, capfd):
    path = checkpoints[kind]
    if app == "finetune":
        args = [*APPS["finetune"], f"init_from=[{path},{path}]"]  # one per view
    else:
        args = [*CKPT_APPS[app], f"checkpoint={path}"]
    if app != "export":
        args += [f"data.root={good_root}", f"data.cache_dir={cache}"]
    code, err = run_app(app, args, tmp_path / "out", capfd)
    assert_clean_failure(code, err, tmp_path / "out", path.name)
