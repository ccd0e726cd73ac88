"""The global inter-patient model: patient-wise DS1 validation, the folded decision rule, the
benchmark's quick mode and the shipped checkpoint against its card."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose
from omegaconf import OmegaConf

from ecgcnn.config import DataConfig
from ecgcnn.data.beats import RR_FEATURES, BeatSet
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.models.shipped import default_checkpoint, model_card
from ecgcnn.training import inter_patient
from ecgcnn.training.inter_patient import (
    calibrate_prior,
    cross_validate,
    ds1_folds,
    fold_prior,
    fold_rr_const,
    fold_rr_scale,
    rr_scaling,
    split_ds1,
)


def _beats(record: str, y, window=(1, 8)) -> BeatSet:
    n = len(y)
    return BeatSet(
        x=np.zeros((n, *window), np.float32),
        rr=np.ones((n, 9), np.float32),
        y=np.asarray(y, np.int64),
        sample=np.arange(n, dtype=np.int64) * 300,
        record=np.full(n, record, "<U8"),
        symbol=np.full(n, "N", "<U2"),
    )


def test_ds1_validation_holds_out_whole_records_and_never_touches_ds2():
    cfg = compose("inter_patient")
    ds1, ds2 = list(map(str, cfg.split.train_records)), list(map(str, cfg.split.test_records))
    assert set(map(str, cfg.val_records)) < set(ds1)  # empty: the shipped all-DS1 training
    val = ["116", "124", "201", "203", "220"]  # the earlier hold-out
    assert not set(ds1) & set(ds2) and len(ds1) == len(ds2) == 22
    beats = {r: _beats(r, [0, 0, 1]) for r in ds1}  # DS2 records are not even given
    train, held = split_ds1(beats, ds1, val, ds2)
    assert set(held.record) == set(val) and not set(train.record) & set(val)
    assert set(train.record) == set(ds1) - set(val)
    assert len(train) + len(held) == 3 * 22
    everything, none = split_ds1(beats, ds1, [], ds2)
    assert none is None and len(everything) == 3 * 22
    with pytest.raises(EcgError, match="not training"):
        split_ds1(beats, ds1, ["100"], ds2)  # a DS2 record as validation patient
    with pytest.raises(EcgError, match="both training and test"):
        split_ds1(beats, ds1, val, ds2 + ["101"])


def test_calibrated_prior_maximises_f1_and_folds_into_the_bias():
    # 4 N, 2 S beats. w=1: no beat called S (F1 0); w=2: both S beats (0.64 > 0.58,
    # 0.6 > 0.55) and no N beat (0.5 < 0.7): F1 1; w=4: also the third N beat (1.0 > 0.7): F1 0.8
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array(
        [
            [0.9, 0.05, 0.05, 0, 0],
            [0.8, 0.1, 0.1, 0, 0],
            [0.7, 0.25, 0.05, 0, 0],
            [0.9, 0.1, 0, 0, 0],
            [0.58, 0.32, 0.1, 0, 0],
            [0.55, 0.3, 0.15, 0, 0],
        ]
    )
    assert calibrate_prior(y, p, ("S",), grid=(1.0, 2.0, 4.0)) == {"S": 2.0}
    assert calibrate_prior(y, p, ("S",), grid=(1.0, 4.0)) == {"S": 4.0}
    model = build_model(compose("inter_patient").model, 4, 128, len(RR_FEATURES), 5).eval()
    x, rr = torch.randn(50, 4, 128), torch.rand(50, len(RR_FEATURES)) + 0.5
    p0 = torch.softmax(model(x, rr), 1).detach().numpy()
    fold_prior(model, {"S": 3.0, "V": 0.5})
    w = np.array([1, 3.0, 0.5, 1, 1])
    expect = (p0 * w) / (p0 * w).sum(1, keepdims=True)
    np.testing.assert_allclose(
        torch.softmax(model(x, rr), 1).detach().numpy(), expect, rtol=1e-4, atol=1e-6
    )


def test_constant_rr_features_are_folded_out_of_the_model():
    model = build_model(compose("inter_patient").model, 4, 128, len(RR_FEATURES), 5).eval()
    x, rr = torch.randn(20, 4, 128), torch.rand(20, len(RR_FEATURES)) + 0.5
    value = np.array([0.8, 0.9], np.float32)
    held = rr.clone()
    held[:, [0, 1]] = torch.from_numpy(value)
    before = model(x, held).detach()
    fold_rr_const(model, [0, 1], value)
    torch.testing.assert_close(model(x, rr).detach(), before, rtol=1e-5, atol=1e-5)


def test_standardized_rr_features_are_folded_into_the_first_layer():
    model = build_model(compose("inter_patient").model, 4, 128, len(RR_FEATURES), 5).eval()
    x, rr = torch.randn(20, 4, 128), torch.rand(20, len(RR_FEATURES)) + 0.5
    rr[:, 3] = 0.8  # a constant feature: std 1, so it is only shifted
    b = _beats("101", [0] * 20)
    b.rr = rr.numpy()
    mu, sd = rr_scaling(b, True)
    assert sd[3] == 1.0 and mu[3] == pytest.approx(0.8)
    np.testing.assert_allclose(mu, rr.numpy().mean(0), rtol=1e-6)
    scaled = (rr - torch.from_numpy(mu)) / torch.from_numpy(sd)
    before = model(x, scaled).detach()
    fold_rr_scale(model, mu, sd)
    torch.testing.assert_close(model(x, rr).detach(), before, rtol=1e-5, atol=1e-5)
    mu0, sd0 = rr_scaling(b, False)
    assert not mu0.any() and (sd0 == 1).all()


def test_ds1_folds_are_whole_disjoint_records_covering_ds1():
    ds1 = [str(r) for r in compose("inter_patient").split.train_records]
    folds = ds1_folds(ds1, 5)
    assert len(folds) == 5 and sorted(r for f in folds for r in f) == sorted(ds1)
    assert [len(f) for f in folds] == [5, 5, 4, 4, 4]
    assert folds[0] == ["101", "114", "122", "207", "223"]  # dealt from the sorted names
    with pytest.raises(EcgError, match="cv_folds"):
        ds1_folds(ds1, 1)
    with pytest.raises(EcgError, match="cv_folds"):
        ds1_folds(ds1, 23)


def test_cross_validation_predicts_each_record_from_a_model_that_never_saw_it(monkeypatch):
    records = ["101", "106", "108", "109"]
    cfg = compose(
        "inter_patient",
        [
            f"split.train_records=[{','.join(records)}]",
            "split.test_records=[100]",
            "cv_folds=2",
            "trainer.max_epochs=3",
        ],
    )
    beats = {r: _beats(r, [0, 0, 0, 1, 2], window=(4, 128)) for r in records}
    seen = []

    def fake_fit(model, train, val, optim_cfg, trainer_cfg, val_metric=None, **kw):
        seen.append((set(train.record), set(val.record)))
        assert trainer_cfg.early_stopping_patience >= trainer_cfg.max_epochs
        for e in range(trainer_cfg.max_epochs):  # epoch e: S called on every beat from e = 1
            p = np.zeros((len(val), 5))
            p[:, 1 if e == 1 else 0] = 1.0
            val_metric(p)

    monkeypatch.setattr(inter_patient, "fit", fake_fit)
    cv = cross_validate(cfg, beats)
    assert cv["folds"] == [["101", "108"], ["106", "109"]]
    assert seen == [({"106", "109"}, {"101", "108"}), ({"101", "108"}, {"106", "109"})]
    assert len(cv["proba"]) == 3 and all(p.shape == (20, 5) for p in cv["proba"])
    assert list(cv["record"]) == [r for r in records for _ in range(5)]
    # epoch 2 calls every beat S: SVEB F1 2 * 0.2 * 1 / 1.2 = 1/3 > 0 of the all-N epochs
    assert cv["epoch"] == 2 and cv["scores"]["SVEB"]["Se"] == 1.0
    assert cv["f1"][1] == pytest.approx(1 / 3) and cv["f1"][0] == cv["f1"][2] == 0.0


def test_fold_prior_refuses_an_unknown_class():
    model = build_model(compose("inter_patient").model, 4, 128, len(RR_FEATURES), 5)
    with pytest.raises(EcgError, match="prior: unknown classes"):
        fold_prior(model, {"X": 2.0})


@pytest.mark.slow
def test_benchmark_quick_mode_prints_its_json_line(mitdb, tmp_path):
    env = {**os.environ, "ECGCNN_DATA_DIR": str(mitdb)}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark_inter_patient.py"),
            "--quick",
            "--out",
            str(tmp_path / "run"),
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"wall_s", "DS2", "SVDB"} <= set(last)
    for where in ("DS2", "SVDB"):
        assert set(last[where]) == {"VEB", "SVEB"}
        assert set(last[where]["VEB"]) == {"Se", "PPV", "Spe", "Acc"}
    assert (tmp_path / "run" / "global.pt").is_file()


@pytest.mark.slow
def test_benchmark_cv_mode_reads_ds1_only_and_prints_its_json_line(mitdb, tmp_path):
    env = {**os.environ, "ECGCNN_DATA_DIR": str(mitdb)}
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark_inter_patient.py"), "--quick"]
    proc = subprocess.run(
        [*cmd, "--cv", "--out", str(tmp_path / "cv"), f"data.cache_dir={tmp_path / 'c'}"]
        + ["cv_folds=3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["cv"]["epoch"] == 1 and set(last["DS1_oof"]) == {"VEB", "SVEB"}
    oof = np.load(tmp_path / "cv" / "cv_oof.npz")
    assert oof["proba"].shape[:2] == (1, len(oof["y"]))
    assert set(oof["record"]) == {"118", "209", "220"}  # the quick DS1; DS2 (232) unread
    cached = {p.stem for p in (tmp_path / "c").rglob("*.npz")}
    assert cached == {"118", "209", "220"}


@pytest.mark.slow
def test_shipped_model_reproduces_its_card_on_ds2(mitdb, tmp_path):
    from ecgcnn.data.cache import load_beats
    from ecgcnn.evaluation.aami import score
    from ecgcnn.export.runtime import load_runtime
    from ecgcnn.training.checkpoint import load_checkpoint

    path = default_checkpoint()
    ck = load_checkpoint(path)
    card = model_card().read_text()
    figures = json.loads(re.search(r"```json\n(.*?)\n```", card, re.DOTALL).group(1))
    cfg = compose("inter_patient")
    # the checkpoint's own beat settings, with this machine's data and cache folders
    data_cfg = OmegaConf.merge(
        OmegaConf.structured(DataConfig),
        ck["data"],
        {"root": str(mitdb), "cache_dir": str(tmp_path)},
    )
    ds2 = [str(r) for r in cfg.split.test_records]
    beats = load_beats(data_cfg, records=ds2)
    bs = BeatSet.concat([beats.beats[r] for r in ds2])
    logits = load_runtime(path)(bs.x, bs.rr)  # the deployed (fused) engine, as the monitor runs
    got = score(bs.y, np.asarray(logits).argmax(1))
    for kind in ("VEB", "SVEB"):
        for m in ("Se", "PPV", "Spe", "Acc"):
            assert got[kind][m] == pytest.approx(figures["DS2"][kind][m], abs=2e-3), (kind, m)
    assert ck["data"]["leads"] == ["MLII"] and ck["rr_features"] == list(RR_FEATURES)
    assert set(ck["inter_patient"]["val_records"]) <= set(map(str, cfg.split.train_records))


def test_default_checkpoint_names_the_missing_file(monkeypatch, tmp_path):
    from ecgcnn.models import shipped

    monkeypatch.setattr(shipped, "GENERIC_DIR", tmp_path)
    with pytest.raises(EcgError, match="global_v1.pt"):
        shipped.default_checkpoint()
    assert Path(shipped.GENERIC_DIR) == tmp_path
