"""ecgcnn-finetune: patient split, summary arithmetic, multirun through the joblib and
submitit_local launchers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ecgcnn.apps.finetune import finetune_patient, summarize
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import score

pytestmark = pytest.mark.slow

FAST = ["trainer.max_epochs=2", "report=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_one_patient_split_and_metrics(mitdb, cache, tmp_path):
    cfg = compose(
        "finetune",
        ["record=119", f"data.root={mitdb}", f"data.cache_dir={cache}", "split.minutes=3", *FAST],
    )
    m = finetune_patient(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["record"] == "119" and saved["minutes"] == 3.0
    assert (tmp_path / "model.pt").is_file()
    # the test part holds every beat of 119 from minute 3 on, minus common-set beats
    from ecgcnn.data.cache import load_beats
    from ecgcnn.data.splits import draw_common_set

    beats = load_beats(cfg.data, records=list(cfg.split.common_records)).beats
    common = draw_common_set(
        beats, list(cfg.split.common_records), dict(cfg.split.common_counts), cfg.split.common_seed
    )
    b119 = beats["119"]
    after = b119.sample >= 3 * 60 * 360
    in_common = np.isin(b119.keys(), common.keys())
    assert m["n_beats"] == int((after & ~in_common).sum())
    before = int((~after).sum())
    assert sum(m["train_counts"].values()) == 245 + before - int((~after & in_common).sum())
    assert sum(sum(r) for r in m["confusion"]) == m["n_beats"]

    # two views (configs/finetune.yaml): the plain model is model.pt, the template one
    # model_add.pt; each checkpoint names its input, and the patient's classes are the argmax
    # of their averaged probabilities
    import torch

    from ecgcnn.apps.evaluate import checkpoint_data_config, load_model
    from ecgcnn.data.splits import patient_specific
    from ecgcnn.training.loop import predict

    assert m["views"] == ["none", "add"]
    probs = 0
    for name, view in (("model.pt", "none"), ("model_add.pt", "add")):
        model, ck = load_model(tmp_path / name)
        assert ck["view"] == view and ck["data"]["beat"]["template"] == view
        assert model.in_channels == (2 if view == "none" else 4)
        dc = checkpoint_data_config(ck, cfg.data)
        recs = sorted(set(cfg.split.common_records) | {"119"})
        split = OmegaConf.merge(cfg.split, {"records": ["119"]})
        test = patient_specific(load_beats(dc, records=recs).beats, split, 360.0)[1]["119"].test
        p = predict(model, test, torch.device("cpu"))
        assert score(test.y, p.argmax(1))["confusion"] == m["view_confusion"][view]
        probs = probs + p
    assert score(test.y, probs.argmax(1))["confusion"] == m["confusion"]
    # scores.npz: the averaged probabilities per test beat, what the summary's sweep reads
    with np.load(tmp_path / "scores.npz") as z:
        assert np.array_equal(z["y"], test.y) and np.array_equal(z["sample"], test.sample)
        np.testing.assert_allclose(z["proba"], probs / 2, atol=1e-6)
        np.testing.assert_allclose(z["proba_add"], p, atol=1e-6)

    # a common model of the other view is refused, naming the file
    bad = compose(
        "finetune",
        [
            "record=119",
            f"data.root={mitdb}",
            f"data.cache_dir={cache}",
            "split.minutes=3",
            *FAST,
            f"init_from=[{tmp_path / 'model_add.pt'},{tmp_path / 'model.pt'}]",
        ],
    )
    with pytest.raises(EcgError, match="model_add.pt was trained on 'add' input"):
        finetune_patient(bad, tmp_path / "bad")


def test_summary_scores_each_view_alone(tmp_path):
    rng = np.random.default_rng(1)
    ys, preds = [], {"none": [], "add": []}
    for rec in ("100", "101"):
        y = rng.integers(0, 5, 300)
        view_pred = {v: np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, 300)) for v in preds}
        m = score(y, view_pred["none"], records=np.full(300, rec))
        m.update(
            record=rec,
            minutes=5.0,
            view_confusion={v: score(y, p)["confusion"] for v, p in view_pred.items()},
        )
        (tmp_path / f"{rec}_m5").mkdir()
        (tmp_path / f"{rec}_m5" / "metrics.json").write_text(json.dumps(m))
        ys.append(y)
        for v, got in preds.items():
            got.append(view_pred[v])
    s = summarize(tmp_path)
    for v, got in preds.items():
        ref = score(np.concatenate(ys), np.concatenate(got))
        for k in ("VEB", "SVEB"):
            assert s["by_view"][v][k] == pytest.approx(ref[k], nan_ok=True)
    assert "View 'add' alone: VEB Se" in (tmp_path / "report.md").read_text()


def test_summary_gross_equals_concatenated_confusions(tmp_path):
    rng = np.random.default_rng(0)
    all_true, all_pred = [], []
    for rec in ("100", "101", "105"):
        y = rng.integers(0, 5, 400)
        p = np.where(rng.random(400) < 0.8, y, rng.integers(0, 5, 400))
        m = score(y, p, records=np.full(400, rec))
        m.update(record=rec, minutes=5.0)
        (tmp_path / f"{rec}_m5").mkdir()
        (tmp_path / f"{rec}_m5" / "metrics.json").write_text(json.dumps(m))
        all_true.append(y)
        all_pred.append(p)
    s = summarize(tmp_path)
    ref = score(np.concatenate(all_true), np.concatenate(all_pred))
    for k in ("VEB", "SVEB"):
        for stat in ("Se", "PPV", "Spe", "Acc"):
            assert s[k][stat] == pytest.approx(ref[k][stat], abs=1e-12)
    assert s["confusion"] == ref["confusion"]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "report.html").is_file()


def test_summary_operating_points_from_scores(tmp_path):
    from ecgcnn.evaluation.aami import prior_sweep

    rng = np.random.default_rng(2)
    ys, ps = [], []
    for rec in ("100", "101"):
        y = rng.integers(0, 5, 500)
        p = rng.dirichlet(np.ones(5), 500) + 0.6 * np.eye(5)[y]
        m = score(y, p.argmax(1), records=np.full(500, rec))
        m.update(record=rec, minutes=5.0)
        d = tmp_path / f"{rec}_m5"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps(m))
        np.savez(d / "scores.npz", y=y, proba=p)
        ys.append(y)
        ps.append(p)
    s = summarize(tmp_path)
    assert s["prior_sweep"] == prior_sweep(np.concatenate(ys), np.concatenate(ps))
    for kind in ("VEB", "SVEB"):
        at1 = next(pt for pt in s["prior_sweep"][kind] if pt["w"] == 1.0)
        assert at1["Se"] == s[kind]["Se"] and at1["PPV"] == s[kind]["PPV"]
    assert (tmp_path / "operating_points.png").is_file()
    md = (tmp_path / "report.md").read_text()
    # the figure shows the operating points; the bullet list no longer prints them as numbers
    assert "(operating_points.png)" in md and "Se against +P" in md and "64: " not in md
    # a patient without scores.npz (an older run): no sweep, the rest of the summary as before
    (tmp_path / "101_m5" / "scores.npz").unlink()
    assert summarize(tmp_path, tmp_path / "again")["prior_sweep"] == {}


def _run(args, tmp_path, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ecgcnn.apps.finetune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        check=False,
    )


def test_two_patient_multirun_with_joblib(mitdb, cache, tmp_path):
    sweep = tmp_path / "sweep"
    r = _run(
        [
            "-m",
            "record=100,119",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
            f"data.root={mitdb}",
            f"data.cache_dir={cache}",
            *FAST,
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name for p in sweep.iterdir() if p.is_dir()} >= {"100_m5.0", "119_m5.0"}
    s = json.loads((sweep / "summary.json").read_text())
    assert s["n_patients"] == 2 and set(s["per_record"]) == {"100", "119"}
    assert "summary:" in r.stdout


def test_submitit_local_launcher_one_patient(mitdb, cache, tmp_path):
    sweep = tmp_path / "sweep"
    r = _run(
        [
            "-m",
            "record=100",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            f"hydra.sweep.dir={sweep}",
            f"data.root={mitdb}",
            f"data.cache_dir={cache}",
            *FAST,
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((sweep / "100_m5.0" / "metrics.json").read_text())
    assert m["record"] == "100" and m["n_beats"] > 1500
    assert (sweep / "summary.json").is_file()


def test_slurm_launcher_config_composes():
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from ecgcnn.apps import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hcompose("finetune", ["record=100", "hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 1


def test_unknown_patient_is_one_error_line(tmp_path, mitdb):
    r = _run(["record=999", f"data.root={mitdb}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: record: '999'") and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_detector_aligned_training_beats(mitdb, cache):
    from ecgcnn.data.cache import load_beats
    from ecgcnn.monitor.align import detector_aligned

    cfg = compose("finetune", ["record=208", f"data.root={mitdb}", f"data.cache_dir={cache}"])
    b = load_beats(cfg.data, records=["208"]).beats["208"]
    before = 5 * 60 * 360
    a = detector_aligned(b, cfg.data, "208", before)
    train, test = b.sample < before, b.sample >= before
    assert np.array_equal(a.x[test], b.x[test]) and np.array_equal(a.y, b.y)
    moved = np.abs(a.x[train] - b.x[train]).max(axis=(1, 2)) > 1e-6
    # the detector's fiducial differs from the annotation on many (mostly ventricular) beats
    assert 0.05 < moved.mean() < 1.0
    v = b.y[train] == 2
    assert moved[v].mean() > moved[~v].mean()


def test_finetune_with_detector_peaks(mitdb, cache, tmp_path):
    cfg = compose(
        "finetune",
        [
            "record=119",
            f"data.root={mitdb}",
            f"data.cache_dir={cache}",
            "train_peaks=detector",
            *FAST,
        ],
    )
    m = finetune_patient(cfg, tmp_path)
    assert m["n_beats"] > 1500 and (tmp_path / "model.pt").is_file()
    with pytest.raises(ConfigCompositionException, match="train_peaks=nowhere"):
        compose("finetune", ["record=119", "train_peaks=nowhere", *FAST])


def test_synthetic_abnormal_beats_use_other_patients_first_minutes_only(monkeypatch):
    """ABS augmentation of a patient's training set: filters only from the other patients'
    beats before the split boundary, synthesized from the patient's own early N beats."""
    from test_zeroshot import fake_record

    from ecgcnn.apps.finetune import synthetic_beats
    from ecgcnn.data.beats import CLASSES
    from ecgcnn.synthesis import abs_filters

    seen = {}
    real_build = abs_filters.build_library

    def spy(lib_beats, records, exclude, *args):
        seen.update(lib_beats)
        return real_build(lib_beats, records, exclude, *args)

    monkeypatch.setattr(abs_filters, "build_library", spy)
    recs = ["100", "101", "103"]
    beats = {r: fake_record(r, seed=i) for i, r in enumerate(recs)}
    boundary = 100 * 288  # the first 100 beats of each fake record
    cfg = compose(
        "finetune",
        [
            "record=101",
            f"split.minutes={boundary / 360 / 60}",
            f"split.records=[{','.join(recs)}]",
            "synth.n_per_class=12",
            "abs.per_patient=50",
        ],
    )
    own = beats["101"].subset(beats["101"].sample < boundary)
    syn = synthetic_beats(cfg, beats, "101", own)
    assert syn.counts()["S"] == syn.counts()["V"] == 12
    assert set(syn.record.tolist()) <= {"~100", "~103"} and (syn.sample == -1).all()
    assert sorted(seen) == ["100", "103"]  # never the patient
    assert all((b.sample < boundary).all() and len(b) == 100 for b in seen.values())
    with pytest.raises(Exception, match="no N beat"):
        synthetic_beats(cfg, beats, "101", own.subset(own.y != CLASSES.index("N")))
