"""The shared training loop and ecgcnn-train: smoke run, resume after a kill, determinism,
the patient-specific common set, augmentation, balanced sampling, every loss."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose
from omegaconf import OmegaConf

from ecgcnn.apps.evaluate import evaluate
from ecgcnn.apps.train import train
from ecgcnn.config import AugmentConfig, OptimConfig, TrainerConfig
from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.data.cache import load_beats
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.training import loop as loop_mod
from ecgcnn.training.augment import augment_batch
from ecgcnn.training.checkpoint import load_checkpoint
from ecgcnn.training.loop import (
    class_weights,
    fit,
    predict,
    select_device,
    validation_split,
)
from ecgcnn.training.losses import LOSSES

TWO = ['split.train_records=["101","106"]', 'split.test_records=["100","103"]']


# ----------------------------------------------------------------------------- helpers
def fake_beats(n: int = 400, seed: int = 0, v_frac: float = 0.2) -> BeatSet:
    """Separable fake beats: V windows carry a wide bump, N windows a narrow one."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < v_frac, CLASSES.index("V"), CLASSES.index("N")).astype(np.int64)
    t = np.arange(128)
    width = np.where(y == CLASSES.index("V"), 12.0, 3.0)[:, None]
    beat = np.exp(-0.5 * ((t[None, :] - 64) / width) ** 2)
    x = np.stack([beat, 0.5 * beat], axis=1) + rng.normal(0, 0.05, (n, 2, 128))
    rr = rng.normal(1, 0.1, (n, len(RR_FEATURES)))
    return BeatSet(
        x=x.astype(np.float32),
        rr=rr.astype(np.float32),
        y=y,
        sample=np.arange(n, dtype=np.int64) * 300,
        record=np.full(n, "f"),
        symbol=np.where(y == 0, "N", "V"),
    )


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    mcfg = compose("train").model
    return build_model(mcfg, 2, 128, len(RR_FEATURES), len(CLASSES))


def trainer_cfg(**kw):
    base = OmegaConf.structured(TrainerConfig)
    return OmegaConf.merge(
        base,
        {
            "device": "cpu",
            "progress": False,
            "num_threads": 1,
            "batch_size": 32,
            "max_epochs": 3,
            "class_weighting": "none",
            "early_stopping_patience": 10,
            **kw,
        },
    )


def optim_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(OptimConfig), kw)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def synth_train(synth_split):
    """Train.yaml overrides for two synthetic records: s1 (N + every 5th V) trains, s2 tests."""
    return [*synth_split, "trainer.progress=false", "trainer.num_threads=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One beat cache for the real-data tests of this module."""
    return tmp_path_factory.mktemp("beat_cache")


def real(mitdb: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "split=inter_patient",
        *TWO,
        f"data.root={mitdb}",
        f"data.cache_dir={cache}",
        "trainer.progress=false",
        *extra,
    ]


# ----------------------------------------------------------------------------- unit facts
def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device("auto") == torch.device("cpu")
        with pytest.raises(EcgError, match="trainer.device"):
            select_device("cuda")
    with pytest.raises(EcgError, match="trainer.device: unknown device 'tpu'"):
        select_device("tpu")


def test_class_weights_by_hand():
    y = np.array([0, 0, 0, 2])
    assert class_weights(y, "none", 5) is None
    # inverse: 1/3 and 1, scaled so the average beat weighs 1: 4 / (3 * 1/3 + 1) = 2
    assert torch.allclose(class_weights(y, "inverse", 5), torch.tensor([2 / 3, 0, 2, 0, 0]))
    s = 4 / (3 * 3**-0.5 + 1)
    assert torch.allclose(class_weights(y, "sqrt", 5), torch.tensor([s * 3**-0.5, 0, s, 0, 0]))
    with pytest.raises(EcgError, match="trainer.class_weighting"):
        class_weights(y, "bogus", 5)


def test_validation_split_is_stratified_disjoint_and_seeded():
    b = fake_beats(400, v_frac=0.2)
    n_v = int((b.y == 2).sum())
    tr, va = validation_split(b, 0.1, seed=3)
    assert len(tr) + len(va) == 400
    assert not set(tr.keys()) & set(va.keys())
    assert va.counts()["V"] == round(0.1 * n_v) and va.counts()["N"] == round(0.1 * (400 - n_v))
    _, va2 = validation_split(b, 0.1, seed=3)
    assert np.array_equal(va.sample, va2.sample)
    assert not np.array_equal(va.sample, validation_split(b, 0.1, seed=4)[1].sample)
    assert validation_split(b, 0.0, 0) == (b, None)
    with pytest.raises(EcgError, match="trainer.val_fraction"):
        validation_split(b, 1.0, 0)


def test_predict_gives_probabilities_in_order():
    b = fake_beats(50)
    m = tiny_model()
    p = predict(m, b, torch.device("cpu"), batch_size=7)
    assert p.shape == (50, 5) and np.allclose(p.sum(1), 1, atol=1e-5)
    p_rev = predict(m, b.subset(np.arange(50)[::-1]), torch.device("cpu"))
    assert np.allclose(p_rev[::-1], p, atol=1e-6)
    assert predict(m, b.subset(np.zeros(50, bool)), torch.device("cpu")).shape == (0, 5)


# ----------------------------------------------------------------------------- augmentation
def test_augment_disabled_is_identity_enabled_changes_values_not_shape():
    x = torch.randn(8, 2, 128)
    x0 = x.clone()
    gen = torch.Generator().manual_seed(0)
    off = OmegaConf.structured(AugmentConfig(enabled=False))
    assert augment_batch(x, off, gen) is x
    on = OmegaConf.structured(AugmentConfig(enabled=True, motion=0.1))
    out = augment_batch(x, on, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.allclose(out, x)
    assert torch.equal(out, augment_batch(x, on, torch.Generator().manual_seed(0)))  # resumable
    assert torch.equal(x, x0)  # input untouched


def test_augment_scale_only_is_a_bounded_per_beat_gain():
    x = torch.randn(16, 2, 128)
    cfg = OmegaConf.structured(
        AugmentConfig(enabled=True, scale=0.1, wander=0, noise=0, motion=0, shift=0)
    )
    out = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    gain = out / x  # one gain per beat, both channels
    assert torch.allclose(gain, gain[:, :1, :1].expand_as(gain), atol=1e-5)
    assert (gain - 1).abs().max() <= 0.1 + 1e-6


def test_training_with_augmentation_runs_and_keeps_labels(tmp_path, monkeypatch):
    seen = []
    real_batch = loop_mod.BeatDataset.batch

    def spy(self, idx, device):
        out = real_batch(self, idx, device)
        seen.append(out[2].clone())
        return out

    b = fake_beats(200)
    m_off, m_on = tiny_model(), tiny_model()
    fit(m_off, b, None, optim_cfg(), trainer_cfg(max_epochs=1))
    monkeypatch.setattr(loop_mod.BeatDataset, "batch", spy)
    res = fit(m_on, b, None, optim_cfg(), trainer_cfg(max_epochs=1, augment={"enabled": True}))
    assert res.epochs_run == 1 and np.isfinite(res.history[0]["train_loss"])
    # same shuffling, labels untouched; the weights differ because the inputs did
    assert sorted(torch.cat(seen).tolist()) == sorted(b.y.tolist())
    assert not state_equal(m_off.state_dict(), m_on.state_dict())


# ----------------------------------------------------------------------------- losses, sampling
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_loss_trains_and_learns(loss):
    b = fake_beats(300)
    m = tiny_model()
    res = fit(m, b, None, optim_cfg(lr=3e-3), trainer_cfg(max_epochs=10, loss=loss))
    assert res.epochs_run == 10 and np.isfinite(res.best_metric)
    acc = (predict(m, b, torch.device("cpu")).argmax(1) == b.y).mean()
    always_n = (b.y == CLASSES.index("N")).mean()
    assert acc > always_n + 0.05  # separable data: clearly better than calling every beat N


def test_balanced_sampling_draws_classes_equally(monkeypatch):
    drawn = []
    real_batch = loop_mod.BeatDataset.batch

    def spy(self, idx, device):
        out = real_batch(self, idx, device)
        drawn.append(out[2].clone())
        return out

    monkeypatch.setattr(loop_mod.BeatDataset, "batch", spy)
    b = fake_beats(2000, v_frac=0.1)
    fit(tiny_model(), b, None, optim_cfg(), trainer_cfg(max_epochs=1, balanced_sampling=True))
    y = torch.cat(drawn)
    assert len(y) == 2000
    assert abs(float((y == 2).float().mean()) - 0.5) < 0.05  # 10% V in the data, ~50% drawn


# ----------------------------------------------------------------------------- resume (fit level)
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "plateau"])
def test_fit_interrupted_after_epoch_2_resumes_to_the_same_weights(
    tmp_path, monkeypatch, scheduler
):
    b = fake_beats(300)
    tr, va = validation_split(b, 0.2, 0)
    oc = optim_cfg(name="sgd", lr=0.05, scheduler=scheduler, step_size=1)
    tc = trainer_cfg(max_epochs=4)
    a = tiny_model()
    fit(a, tr, va, oc, tc, out_dir=tmp_path / "a")

    real_write = loop_mod._write_metrics_csv

    def crash_after_two(path, history):
        real_write(path, history)
        if len(history) == 2:
            raise KeyboardInterrupt  # the process dies right after epoch 2 is on disk

    monkeypatch.setattr(loop_mod, "_write_metrics_csv", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), tr, va, oc, tc, out_dir=tmp_path / "b")
    monkeypatch.setattr(loop_mod, "_write_metrics_csv", real_write)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    b_model = tiny_model(seed=99)  # the resumed run must not depend on the fresh init
    fit(b_model, tr, va, oc, OmegaConf.merge(tc, {"resume": True}), out_dir=tmp_path / "b")
    assert state_equal(a.state_dict(), b_model.state_dict())
    for name in ("best.pt", "last.pt"):
        assert state_equal(
            load_checkpoint(tmp_path / "a" / name)["model"],
            load_checkpoint(tmp_path / "b" / name)["model"],
        )
    assert read_csv(tmp_path / "a" / "metrics.csv") == read_csv(tmp_path / "b" / "metrics.csv")


# ----------------------------------------------------------------------------- train() on synthetic
def test_train_resume_with_more_epochs_equals_uninterrupted(tmp_path, synth_train):
    a = train(compose("train", synth_train + ["trainer.max_epochs=3"]), tmp_path / "a")
    train(compose("train", synth_train + ["trainer.max_epochs=2"]), tmp_path / "b")
    b = train(
        compose("train", synth_train + ["trainer.max_epochs=3", "trainer.resume=true"]),
        tmp_path / "b",
    )
    assert state_equal(a["state_dict"], b["state_dict"])
    rows_a, rows_b = (
        read_csv(tmp_path / "a" / "metrics.csv"),
        read_csv(tmp_path / "b" / "metrics.csv"),
    )
    assert len(rows_a) == 3 and rows_a == rows_b
    assert a["epochs_run"] == b["epochs_run"] == 3
    assert state_equal(
        load_checkpoint(tmp_path / "a" / "best.pt")["model"],
        load_checkpoint(tmp_path / "b" / "best.pt")["model"],
    )


def test_same_seed_same_weights_whatever_ran_before(tmp_path, synth_train):
    cfg = compose("train", synth_train + ["trainer.max_epochs=1"])
    a = train(cfg, tmp_path / "a")
    torch.rand(1000)  # anything else drawing from the global RNG in between
    b = train(cfg, tmp_path / "b")
    assert state_equal(a["state_dict"], b["state_dict"])
    c = train(
        compose("train", synth_train + ["trainer.max_epochs=1", "trainer.seed=1"]), tmp_path / "c"
    )
    assert not state_equal(a["state_dict"], c["state_dict"])


def test_train_writes_its_files_and_summary(tmp_path, synth_train):
    s = train(compose("train", synth_train + ["trainer.max_epochs=2"]), tmp_path)
    for f in ("best.pt", "last.pt", "metrics.csv", "train_summary.json"):
        assert (tmp_path / f).is_file(), f
    on_disk = json.loads((tmp_path / "train_summary.json").read_text())
    assert on_disk == {k: v for k, v in s.items() if k != "state_dict"}
    beats = load_beats(compose("train", synth_train).data, records=["s1"]).beats["s1"]
    assert on_disk["train_beats"] + on_disk["val_beats"] == len(beats)
    assert on_disk["train_counts"]["V"] + round(0.1 * beats.counts()["V"]) == beats.counts()["V"]
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["classes"] == list(CLASSES) and ck["model_args"]["in_channels"] == 2
    assert ck["config"]["trainer"]["max_epochs"] == 2 and ck["data"]["records"] == ["s1", "s2"]


def test_train_refuses_split_records_outside_data_records(tmp_path, synth_train):
    cfg = compose("train", synth_train + ['data.records=["s2"]'])
    with pytest.raises(EcgError, match=r"data.records: .*\['s1'\]"):
        train(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mitdb, cache) -> Path:
    """Two identical one-epoch runs (a, b) on 101+106, each evaluated on 100+103 from the same
    checkpoint path (so even the "checkpoint" field of metrics.json must agree)."""
    d = tmp_path_factory.mktemp("two_runs")
    for run in ("a", "b"):
        s = train(compose("train", real(mitdb, cache, "trainer.max_epochs=1")), d / run)
        (d / run / "summary.json").write_text(
            json.dumps({k: v for k, v in s.items() if k != "state_dict"})
        )
        ck = d / "ck.pt"
        ck.write_bytes((d / run / "best.pt").read_bytes())
        evaluate(
            compose(
                "eval",
                [
                    f"checkpoint={ck}",
                    *TWO,
                    f"data.root={mitdb}",
                    f"data.cache_dir={cache}",
                    "device=cpu",
                ],
            ),
            d / f"eval_{run}",
        )
    return d


@pytest.mark.slow
def test_smoke_train_one_epoch_then_evaluate(two_runs, mitdb, cache):
    d = two_runs
    for f in ("best.pt", "last.pt", "metrics.csv", "train_summary.json"):
        assert (d / "a" / f).is_file(), f
    s = json.loads((d / "a" / "summary.json").read_text())
    data = load_beats(
        compose("train", real(mitdb, cache)).data, records=["100", "101", "103", "106"]
    )
    n_train = len(data.beats["101"]) + len(data.beats["106"])
    assert s["train_beats"] + s["val_beats"] == n_train and s["epochs_run"] == 1
    assert len(read_csv(d / "a" / "metrics.csv")) == 1

    on_disk = json.loads((d / "eval_a" / "metrics.json").read_text())
    for key in ("VEB", "SVEB", "confusion", "n_beats", "per_record"):
        assert key in on_disk, key
    for block in ("VEB", "SVEB"):
        assert {"Se", "PPV", "Spe", "Acc", "TP", "FN", "FP", "TN"} <= set(on_disk[block])
    assert on_disk["n_beats"] == len(data.beats["100"]) + len(data.beats["103"])
    assert sum(map(sum, on_disk["confusion"])) == on_disk["n_beats"]
    assert set(on_disk["per_record"]) == {"100", "103"}
    assert (d / "eval_a" / "report.html").is_file()


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_metrics(two_runs):
    d = two_runs
    assert (d / "eval_a" / "metrics.json").read_bytes() == (
        d / "eval_b" / "metrics.json"
    ).read_bytes()
    assert state_equal(
        load_checkpoint(d / "a" / "last.pt")["model"], load_checkpoint(d / "b" / "last.pt")["model"]
    )
    assert read_csv(d / "a" / "metrics.csv") == read_csv(d / "b" / "metrics.csv")


@pytest.mark.slow
def test_patient_specific_common_model_trains_on_245_beats_minus_validation(tmp_path, mitdb, cache):
    cfg = compose(
        "train",
        [
            "split=patient_specific",
            'split.records=["100","101"]',
            "train_on=common",
            f"data.root={mitdb}",
            f"data.cache_dir={cache}",
            "trainer.max_epochs=1",
            "trainer.progress=false",
        ],
    )
    s = train(cfg, tmp_path)
    # Kiranyaz 2016: 75 N, 75 S, 75 V, 13 F, 7 Q; val_fraction 0.1 per class, rounded
    assert s["train_beats"] + s["val_beats"] == 245
    assert s["val_beats"] == 8 + 8 + 8 + 1 + 1
    assert s["train_counts"] == {"N": 67, "S": 67, "V": 67, "F": 12, "Q": 6}


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, mitdb, cache):
    # warm the cache in-process so both subprocesses only read it
    load_beats(compose("train", real(mitdb, cache)).data, records=["101", "106"])
    args = real(
        mitdb,
        cache,
        "trainer.max_epochs=4",
        "trainer.num_threads=1",
        "trainer.early_stopping_patience=0",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def launch(run_dir: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ecgcnn.apps.train", *args, *extra, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    whole = launch(tmp_path / "whole")
    killed = launch(tmp_path / "killed")
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    epoch = -1
    while time.monotonic() < deadline and killed.poll() is None:
        if last.is_file():
            epoch = load_checkpoint(last)["epoch"]
            if epoch >= 1:
                break
        time.sleep(0.05)
    assert killed.poll() is None, "run ended before it could be killed"
    killed.kill()  # SIGKILL: no cleanup handlers run
    assert killed.wait() == -9
    assert 1 <= load_checkpoint(last)["epoch"] < 3
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgcnn.apps.train",
            *args,
            "trainer.resume=true",
            f"hydra.run.dir={tmp_path / 'killed'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode()
    for name in ("best.pt", "last.pt"):
        assert state_equal(
            load_checkpoint(tmp_path / "whole" / name)["model"],
            load_checkpoint(tmp_path / "killed" / name)["model"],
        ), name
    assert read_csv(tmp_path / "whole" / "metrics.csv") == read_csv(
        tmp_path / "killed" / "metrics.csv"
    )
    assert len(read_csv(tmp_path / "whole" / "metrics.csv")) == 4
    assert not (REPO / "outputs" / "killed").exists()
