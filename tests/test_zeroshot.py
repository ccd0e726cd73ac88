"""Zero-shot ABS: FIR fitting, leave-one-out library, training-set guard, metrics, one real patient."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose

import ecgcnn.apps.zeroshot as app
from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.errors import EcgError
from ecgcnn.synthesis import apply_fir, build_library, convolution_matrix, fit_fir, synthesize
from ecgcnn.synthesis.normalize import (
    normalize_person,
    running_scale,
    running_template,
    unit_scale,
)
from ecgcnn.synthesis.zeroshot import (
    alarm_stats,
    binary_counts,
    binary_rates,
    check_training_set,
    person_split,
    person_threshold,
    rr_columns,
)

N, S, V, F, Q = range(5)


def beat_shape(length: int = 128, width: float = 3.0, r: int = 46) -> np.ndarray:
    """P wave, QRS and T wave as Gaussians on a 128-sample window (R at index 46)."""
    t = np.arange(length)
    return (
        0.15 * np.exp(-0.5 * ((t - r + 20) / 4) ** 2)
        + np.exp(-0.5 * ((t - r) / width) ** 2)
        - 0.2 * np.exp(-0.5 * ((t - r - 5) / 2) ** 2)
        + 0.3 * np.exp(-0.5 * ((t - r - 50) / 10) ** 2)
    )


def test_apply_fir_is_centered_convolution():
    rng = np.random.default_rng(0)
    x, h = rng.normal(size=128), rng.normal(size=31)
    assert np.allclose(apply_fir(x, h), np.convolve(x, h, "same"), atol=1e-12)
    assert np.allclose(convolution_matrix(x, 31) @ h, np.convolve(x, h, "same"), atol=1e-12)
    with pytest.raises(EcgError, match="odd"):
        convolution_matrix(x, 30)


def test_fit_fir_recovers_known_degradation():
    x = beat_shape()
    # a known degradation: widening (smoothing) + delay of 3 samples + gain 1.8, 21 taps
    k = np.arange(21) - 10
    h_true = 1.8 * np.exp(-0.5 * ((k - 3) / 2.0) ** 2)
    h_true /= h_true.sum() / 1.8
    y = apply_fir(x, h_true)
    h = fit_fir(x, y, taps=21, ridge=1e-10)
    assert np.max(np.abs(h - h_true)) < 1e-3 * np.max(np.abs(h_true))
    assert np.linalg.norm(apply_fir(x, h) - y) / np.linalg.norm(y) < 1e-6
    # a longer filter than the truth puts (almost) nothing in its outer taps
    h_long = fit_fir(x, y, taps=31, ridge=1e-10)
    assert np.max(np.abs(h_long[5:26] - h_true)) < 1e-2 * np.max(np.abs(h_true))
    assert np.max(np.abs(np.r_[h_long[:5], h_long[26:]])) < 1e-2 * np.max(np.abs(h_true))
    # ridge shrinks the filter
    assert np.linalg.norm(fit_fir(x, y, 21, ridge=10.0)) < np.linalg.norm(h)


def fake_record(name: str, n: int = 200, seed: int = 0, abnormal_every: int = 5) -> BeatSet:
    """Beats of one fake record, one R peak per 0.8 s; every 5th beat S or V (wide)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.int64)
    y[abnormal_every - 1 :: abnormal_every] = S
    y[abnormal_every - 1 :: 2 * abnormal_every] = V
    x = np.stack([beat_shape(width=8.0 if c == V else 3.0) for c in y])
    x = np.stack([x, 0.5 * x], axis=1).astype(np.float32) + rng.normal(0, 0.01, (n, 2, 128))
    col = {f: i for i, f in enumerate(RR_FEATURES)}
    rr = np.ones((n, len(RR_FEATURES)), np.float32)
    rr[:, [col["pre_rr"], col["post_rr"], col["local_rr"], col["long_rr"]]] = 0.8
    rr[y != N, col["pre_local"]] = 0.7
    rr[y != N, col["post_local"]] = 1.3
    sym = np.array([{N: "N", S: "A", V: "V"}[c] for c in y], dtype="<U2")
    return BeatSet(
        x=x.astype(np.float32),
        rr=rr,
        y=y,
        sample=np.arange(n) * 288,
        record=np.full(n, name, dtype="<U8"),
        symbol=sym,
    )


def test_leave_one_out_library_and_training_set():
    beats = {r: fake_record(r, seed=i) for i, r in enumerate(["r1", "r2", "r3"])}
    person = "r2"
    lib = build_library(
        beats, ["r1", "r2", "r3"], person, taps=15, ridge=0.01, per_patient=6, seed=0
    )
    assert set(lib.record.tolist()) == {"r1", "r3"}
    assert lib.counts() == {"S": 12, "V": 12}  # capped at 6 per class and patient
    # every filter points at a real abnormal beat of its own record
    for rec, smp, c in zip(lib.record, lib.sample, lib.y):
        src = beats[rec]
        assert src.y[np.flatnonzero(src.sample == smp)[0]] == c
    assert np.allclose(lib.rr_ratio[:, :2], [0.7, 1.3])

    boundary = 100 * 288  # first 100 beats are "the first minutes"
    normals, test = person_split(beats[person], minutes=boundary / 60 / 360, fs=360.0)
    assert (normals.y == N).all() and (normals.sample < boundary).all()
    assert len(normals) == 80 and len(test) == 100  # 20 of the first 100 beats are S/V
    synth = synthesize(normals, lib, {"S": 30, "V": 30}, seed=0, scale=0.1, noise=0.01, shift=2)
    assert synth.counts()["S"] == 30 and synth.counts()["V"] == 30
    assert not np.isin(synth.record, ["~r2", "r2"]).any()
    assert set(synth.record.tolist()) <= {"~r1", "~r3"} and (synth.sample == -1).all()
    # RR context: the person's local RR scaled by the filter's ratios
    col = {f: i for i, f in enumerate(RR_FEATURES)}
    assert np.allclose(synth.rr[:, col["pre_rr"]], 0.8 * 0.7)
    assert np.allclose(synth.rr[:, col["post_rr"]], 0.8 * 1.3)
    assert np.allclose(synth.rr[:, col["pre_local"]], 0.7)
    assert np.allclose(synth.rr[:, col["local_rr"]], 0.8)
    train = BeatSet.concat([normals, synth])
    check_training_set(train, person, boundary, lib)

    own = beats[person]
    real_s = own.subset(np.flatnonzero(own.y == S)[:1])  # an early S beat of the person
    with pytest.raises(EcgError, match="not normal"):
        check_training_set(BeatSet.concat([train, real_s]), person, boundary, lib)
    late_n = own.subset(np.flatnonzero((own.y == N) & (own.sample >= boundary))[:1])
    with pytest.raises(EcgError, match="not normal beats of the first"):
        check_training_set(BeatSet.concat([train, late_n]), person, boundary, lib)
    other = beats["r1"].subset([0])
    with pytest.raises(EcgError, match="other records"):
        check_training_set(BeatSet.concat([train, other]), person, boundary, lib)
    own_lib = build_library(beats, ["r1", "r2"], None, 15, 0.01, 2, 0)
    with pytest.raises(EcgError, match="holds filters fitted on r2"):
        check_training_set(train, person, boundary, own_lib)
    with pytest.raises(EcgError, match="must all be normal"):
        synthesize(own.subset(np.arange(10)), lib, {"S": 5}, seed=0)


def test_filter_rejection_and_ectopic_rr_context():
    beats = {r: fake_record(r, seed=i) for i, r in enumerate(["r1", "r2", "r3"])}
    full = build_library(beats, ["r1", "r2", "r3"], "r2", 15, 0.01, 6, 0)
    cut = float(np.median(full.residual))
    kept = build_library(beats, ["r1", "r2", "r3"], "r2", 15, 0.01, 6, 0, max_residual=cut)
    assert len(kept) == int((full.residual <= cut).sum()) and (kept.residual <= cut).all()
    with pytest.raises(EcgError, match="fit error"):
        build_library(beats, ["r1", "r2", "r3"], "r2", 15, 0.01, 6, 0, max_residual=1e-9)
    normals = beats["r2"].subset(beats["r2"].y == N)
    col = {f: i for i, f in enumerate(RR_FEATURES)}
    normals.rr[:, col["local_cv"]] = 0.05
    syn = synthesize(normals, full, {"S": 20}, seed=0, rr_mode="ectopic")
    p = syn.rr[:, col["pre_local"]]
    assert np.allclose(p, 0.7) and np.allclose(syn.rr[:, col["pre_prev"]], p)
    # one interval of 0.7 among 10 of mean 1 (cv 0.05): sqrt(0.05^2 + 0.09*9/100) / 0.97
    assert np.allclose(syn.rr[:, col["local_cv"]], np.sqrt(0.0025 + 0.0081) / 0.97, atol=1e-6)
    with pytest.raises(EcgError, match="rr_mode"):
        synthesize(normals, full, {"S": 2}, seed=0, rr_mode="odd")


def test_person_threshold_masking_and_scaling():
    p = np.linspace(0.0, 0.99, 100)  # held-out normal beats of the person
    assert person_threshold(p, 0.5, 0.0) == 0.5
    assert person_threshold(p, 0.5, 0.02) == pytest.approx(np.quantile(p, 0.98))
    assert person_threshold(p * 0.1, 0.5, 0.02) == 0.5  # raised, never lowered
    assert person_threshold(np.zeros(0), 0.5, 0.02) == 0.5
    with pytest.raises(EcgError, match="threshold_fpr"):
        person_threshold(p, 0.5, 1.0)
    assert rr_columns(["pre_rr", "local_cv"]) == [0, RR_FEATURES.index("local_cv")]
    with pytest.raises(EcgError, match="rr_drop"):
        rr_columns(["pre_rrr"])
    x = np.stack([beat_shape(), 3 * beat_shape()])[:, None, :]
    u = unit_scale(x)
    assert np.allclose(u.std(-1), 1.0, atol=1e-5) and np.allclose(u[0], u[1], atol=1e-5)


def test_running_scale_removes_drift_keeps_relative_size_and_is_causal():
    beat = beat_shape()
    drift = np.linspace(1.0, 0.4, 200)  # a person's beats shrink to 40 % over the recording
    x = np.stack([np.stack([beat, beat]) * g for g in drift]).astype(np.float32)  # (200, 2, T)
    x[150] *= 2.0  # one beat twice as large as its neighbours (a V-like outlier)
    y = running_scale(x, window=20)
    ptp = np.ptp(y[:, 0], axis=-1)
    normal = np.delete(ptp, 150)
    assert normal.max() / normal.min() < 1.1  # drift 2.5x -> within 10 % (median lags)
    assert ptp[150] / np.median(ptp[140:150]) > 1.9  # the outlier still stands out
    # causal: a beat's scale does not depend on later beats
    z = x.copy()
    z[120:] *= 5.0
    assert np.allclose(running_scale(z, 20)[:120], y[:120])
    # synthetic beats: one scale, the median amplitude of the reference (normal) beats
    r = running_scale(x[:10], 20, ref=x[:50])
    assert np.allclose(r, x[:10] / np.median(np.ptp(x[:50, 0], axis=-1)), atol=1e-5)


def test_running_template_follows_drift_not_ectopy_and_is_causal():
    t = np.linspace(0, 1, 64)
    beat = beat_shape()[:64]
    # the normal shape changes slowly (a widening T wave); beat 150 is an ectopic shape
    x = np.stack(
        [np.stack([beat + 0.3 * k / 200 * np.sin(3 * np.pi * t)] * 2) for k in range(200)]
    ).astype(np.float32)  # (200, 2, 64)
    x[150] = -x[150]
    ref = running_template(x, window=20)
    diff = np.abs(x - ref).max(axis=(1, 2))
    assert np.delete(diff, 150)[1:].max() < 0.05  # drift: tiny against the recent beats
    assert diff[150] > 10 * np.delete(diff, 150)[1:].max()  # the ectopic beat stands out
    assert np.allclose(ref[151], np.median(x[131:151], axis=0))  # its window: 20 beats before
    z = x.copy()
    z[120:] *= 5.0
    assert np.allclose(running_template(z, 20)[:121], ref[:121])  # causal (beat 120 incl.)
    # history: the first test beat's template is the median of the last training beats
    h = running_template(x[100:], 20, history=x[:100])
    assert np.allclose(h, ref[100:])
    # the person's arrays: 'add' appends the differences, 'replace' keeps only them,
    # synthetic beats are referenced to the median of the training normals
    n, s_, te = normalize_person(x[:60], x[150:152], x[60:], "none", 60, "add", 20)
    assert n.shape == (60, 4, 64) and np.allclose(n[:, :2], x[:60])
    assert np.allclose(s_[:, 2:], x[150:152] - np.median(x[:60], axis=0), atol=1e-6)
    _, _, te2 = normalize_person(x[:60], x[150:152], x[60:], "none", 60, "replace", 20)
    assert te2.shape == (140, 2, 64) and np.allclose(te2, te[:, 2:])
    assert np.allclose(te2, x[60:] - ref[60:], atol=1e-6)
    with pytest.raises(EcgError, match="template"):
        normalize_person(x, x, x, "none", 60, "diff", 20)


def test_binary_metrics_and_alarms_by_hand():
    #          N  N  S  V  N  F  V  V  N  Q
    y = np.array([0, 0, 1, 2, 0, 3, 2, 2, 0, 4])
    fl = np.array([0, 1, 0, 0, 0, 1, 1, 1, 0, 1], bool)
    c = binary_counts(y, fl)
    assert c == {"TP": 2, "FN": 2, "FP": 1, "TN": 3}  # F and Q not scored
    m = binary_rates(c)
    assert m["Se"] == 0.5 and m["Spe"] == 0.75 and m["PPV"] == 2 / 3
    assert m["F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2)) and m["Acc"] == 5 / 8
    beats = BeatSet(
        x=np.zeros((10, 1, 4), np.float32),
        rr=np.zeros((10, len(RR_FEATURES)), np.float32),
        y=y,
        sample=np.arange(10) * 3600,
        record=np.full(10, "p", "<U8"),
        symbol=np.full(10, "N", "<U2"),
    )  # one beat every 10 s at 360 Hz
    a = alarm_stats(beats, fl, fs=360.0, hours=0.5, refractory_s=15.0)
    # abnormal beats S, V, V, V: hits 0 0 1 1 -> first hit is the 3rd abnormal beat
    assert a["detected_first3"] is True and a["first_detected_index"] == 3
    assert a["triplets_detected"] == 1.0 and a["p_detect_first3_model"] == 1 - 0.5**3
    # flags at 10 s (N: false alarm), 50 s (F: alarm), 60 s (< 15 s after the last alarm:
    # none), 70 s (V: alarm), 90 s (Q: alarm)
    assert a["alarms"] == 4 and a["false_alarms"] == 1 and a["false_alarms_per_hour"] == 2.0


def test_config_composes_with_schema():
    cfg = compose("zeroshot", ["record=208"])
    assert cfg.record == "208" and cfg.model.name == "kiranyaz2016" and len(cfg.records) == 34
    assert not {"105", "114", "201", "202", "207", "209", "213", "222", "223", "234"} & set(
        cfg.records
    )
    assert len(cfg.library_records) == 44 and cfg.trainer.num_threads == 1
    with pytest.raises(Exception, match="abs.tapz"):
        compose("zeroshot", ["abs.tapz=3"])
    with pytest.raises(Exception, match="taps"):
        compose("zeroshot", ["abs.taps=many"])


@pytest.mark.slow
def test_one_real_patient_end_to_end(mitdb, tmp_path):
    lib = ["100", "106", "119", "208", "232"]
    cfg = compose(
        "zeroshot",
        [
            "record=119",
            f"library_records=[{','.join(lib)}]",
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "trainer.max_epochs=3",
            "synth.n_per_class=150",
            "save_model=false",
        ],
    )
    m = app.run(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["record"] == "119" and (tmp_path / "out" / "beats.png").is_file()
    b = saved["binary"]
    # record 119 after 5 min: only N and V beats; every scored beat is counted once
    counts = saved["test"]["counts"]
    assert b["TP"] + b["FN"] == counts["S"] + counts["V"] > 300
    assert b["FP"] + b["TN"] == counts["N"] > 1000
    assert all(0.0 <= b[k] <= 1.0 for k in ("Se", "Spe", "PPV", "F1", "Acc"))
    assert "119" not in saved["train"]["library_records"]
    assert saved["train"]["synthetic"]["S"] == saved["train"]["synthetic"]["V"] == 150
    # default: two views (windows, windows minus their running template), 3 models each
    assert saved["train"]["views"] == ["none", "replace"] and saved["train"]["ensemble"] == 6
    assert 0.40 < saved["alarm"]["hours"] < 0.42  # 30:06 min record minus 5 min
    assert m["binary"] == b
    # per-beat scores: the ensemble average and each view's own average (both views weigh alike)
    sc = np.load(tmp_path / "out" / "scores.npz")
    assert len(sc["p_abnormal"]) == saved["test"]["beats"]
    assert np.allclose(sc["p_abnormal"], (sc["p_view_none"] + sc["p_view_replace"]) / 2)
    assert CLASSES[N] == "N"


@pytest.mark.slow
def test_same_seed_same_scores_whatever_ran_before(mitdb, tmp_path):
    """A person's scores depend on the seed only, not on what this process drew before (in a
    multirun or joblib worker, other persons are trained first in the same process)."""
    import torch

    cfg = compose(
        "zeroshot",
        [
            "record=119",
            "library_records=[100,106,208]",
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "trainer.max_epochs=2",
            "ensemble=1",
            "template=[none]",
            "synth.n_per_class=100",
            "save_model=false",
            "figures=false",
        ],
    )
    scores = []
    for i, prior in enumerate((1, 2)):
        torch.manual_seed(prior)
        np.random.seed(prior)
        torch.rand(1000)  # another state of the global generators
        app.run(cfg, tmp_path / f"out{i}")
        scores.append(np.load(tmp_path / f"out{i}" / "scores.npz")["p_abnormal"])
    assert np.array_equal(scores[0], scores[1])


def test_summary_gross_counts_and_first3(tmp_path):
    """summary.json: gross binary figures from the summed counts, first-3 over the persons with
    abnormal test beats only, false alarms over the summed hours; one error line for a folder
    with none or with two results of the same record."""
    from ecgcnn.apps import write_json
    from ecgcnn.synthesis.report import summarize_dir

    def person(rec, c, abn, hit, fa, hours):
        se = c["TP"] / (c["TP"] + c["FN"]) if abn else None
        return {
            "record": rec,
            "binary": {**c, **binary_rates(c)},
            "test": {"counts": {"N": c["FP"] + c["TN"], "S": c["TP"] + c["FN"], "V": 0}},
            "alarm": {
                "abnormal_beats": abn,
                "detected_first3": hit if abn else None,
                "first_detected_index": 1 if hit else None,
                "p_detect_first3_model": None if se is None else 1 - (1 - se) ** 3,
                "triplets_detected": 1.0 if abn else None,
                "false_alarms": fa,
                "hours": hours,
                "false_alarms_per_hour": fa / hours,
                "normal_flagged_per_hour": c["FP"] / hours,
            },
        }

    runs = [
        person("100", {"TP": 8, "FN": 2, "FP": 5, "TN": 985}, 10, True, 3, 0.5),
        person("101", {"TP": 1, "FN": 3, "FP": 0, "TN": 996}, 4, False, 0, 0.5),
        person("115", {"TP": 0, "FN": 0, "FP": 10, "TN": 990}, 0, None, 4, 0.5),
    ]
    for r in runs:
        write_json(tmp_path / r["record"] / "metrics.json", r)
    png = b"\x89PNG\r\n\x1a\n fake"
    (tmp_path / "101" / "beats.png").write_bytes(png)  # one person's figure
    s = summarize_dir(tmp_path)
    assert {k: s["binary_gross"][k] for k in ("TP", "FN", "FP", "TN")} == {
        "TP": 9,
        "FN": 5,
        "FP": 15,
        "TN": 2971,
    }
    assert s["binary_gross"]["F1"] == pytest.approx(18 / (18 + 15 + 5))
    assert s["patients_with_abnormal_test_beats"] == 2 and s["p_detect_first3"] == 0.5
    assert s["missed_first3"] == ["101"]
    assert s["p_detect_first3_model"] == pytest.approx((1 - 0.2**3 + 1 - 0.75**3) / 2)
    assert s["false_alarms_per_hour"] == pytest.approx(7 / 1.5)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "summary.png").is_file()
    # the person's figure is linked from report.md and embedded in report.html
    import base64

    assert "](101/beats.png)" in (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert base64.b64encode(png).decode() in page and "Record 100</h2>" not in page
    assert json.loads((tmp_path / "summary.json").read_text())["patients"] == 3
    write_json(tmp_path / "again" / "100" / "metrics.json", runs[0])
    with pytest.raises(EcgError, match="several metrics.json for the same record"):
        summarize_dir(tmp_path)
    with pytest.raises(EcgError, match="no metrics.json"):
        summarize_dir(tmp_path / "empty")
