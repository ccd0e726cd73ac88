"""ecgcnn-monitor: alarm rules on class sequences, streamed windows equal to extract_beats,
chunk invariance, signal-quality gating, end-to-end scoring conventions, CLI errors, and one
real record end to end (slow, needs $ECGCNN_DATA_DIR)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from ecgcnn.config import AlarmConfig, DataConfig
from ecgcnn.data.beats import CLASSES, RR_FEATURES, extract_beats, rr_features
from ecgcnn.data.io import Record
from ecgcnn.errors import EcgError
from ecgcnn.monitor.alarms import AlarmEngine
from ecgcnn.monitor.models import load_classifier
from ecgcnn.monitor.scoring import score_stream
from ecgcnn.monitor.session import monitor
from ecgcnn.monitor.stream import BeatStream, replay

FS = 360.0


# ----------------------------------------------------------------------------- helpers
def ecg(
    beats: list[tuple[float, str]],
    seconds: float,
    seed: int = 0,
    flat: tuple[float, float] | None = None,
    clip: tuple[float, float] | None = None,
):
    """Synthetic raw lead: narrow N and wide, tall V complexes on wander and noise (mV)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    x = 0.3 + 0.1 * np.sin(2 * np.pi * 0.2 * t) + rng.normal(0, 0.01, n)
    for tb, kind in beats:
        w = slice(max(0, int((tb - 0.4) * FS)), min(n, int((tb + 0.7) * FS)))
        tt = t[w]
        if kind == "V":
            x[w] += 1.6 * np.exp(-0.5 * ((tt - tb) / 0.035) ** 2)
            x[w] -= 0.3 * np.exp(-0.5 * ((tt - tb - 0.3) / 0.06) ** 2)
        else:
            x[w] += np.exp(-0.5 * ((tt - tb) / 0.010) ** 2)
            x[w] += 0.25 * np.exp(-0.5 * ((tt - tb - 0.25) / 0.04) ** 2)
    if flat:  # lead off: a constant value
        x[int(flat[0] * FS) : int(flat[1] * FS)] = 0.0
    if clip:  # amplifier stuck at its rail
        x[int(clip[0] * FS) : int(clip[1] * FS)] = 3.0
    return x.astype(np.float32)


def schedule(
    seconds: float,
    rr: float = 0.8,
    vt_at: float | None = None,
    vt_beats: int = 4,
    skip: tuple[float, float] | None = None,
) -> list[tuple[float, str]]:
    beats, t = [], 0.6
    while t < seconds - 1.0:
        if vt_at is not None and abs(t - vt_at) < rr / 2:
            for k in range(vt_beats):
                beats.append((t + 0.45 * k, "V"))
            t += 0.45 * (vt_beats - 1) + 1.0
            continue
        if skip is None or not skip[0] <= t < skip[1]:
            beats.append((t, "N"))
        t += rr
    return beats


def width_classifier(x: np.ndarray, rr: np.ndarray) -> np.ndarray:
    """Stub classifier: wide complexes are V, narrow ones N (no model needed)."""
    v = x[:, 0] - np.median(x[:, 0], axis=1, keepdims=True)
    width = (v > 0.5 * v.max(axis=1, keepdims=True)).sum(axis=1)
    p = np.zeros((len(x), len(CLASSES)), np.float32)
    p[np.arange(len(x)), np.where(width > 9, CLASSES.index("V"), 0)] = 1.0
    return p


def data_cfg(**beat):
    cfg = OmegaConf.structured(DataConfig)
    return OmegaConf.merge(cfg, {"beat": beat}) if beat else cfg


def alarm_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(AlarmConfig), kw)


def feed(engine: AlarmEngine, classes: str, rr: float = 0.8, start: float = 1.0):
    """Beats at a fixed RR with the given class letters; returns the alarms."""
    samples = np.round((start + rr * np.arange(len(classes))) * FS).astype(int)
    k = [CLASSES.index(c) for c in classes]
    return engine.push_beats(samples, k, int(samples[-1]) + 2000)


def rules(alarms) -> list[str]:
    return [a["rule"] for a in alarms]


# ----------------------------------------------------------------------------- alarm rules
def test_vt_run_is_one_high_alarm_at_its_third_beat():
    eng = AlarmEngine(alarm_cfg(), FS)
    out = feed(eng, "N" * 10 + "VVVVV" + "N" * 10)
    vt = [a for a in out if a["rule"] == "vt"]
    assert len(vt) == 1 and vt[0]["severity"] == "high"
    assert vt[0]["t_start"] == pytest.approx(1.0 + 0.8 * 10, abs=1e-3)  # first V
    assert vt[0]["t"] == pytest.approx(1.0 + 0.8 * 12, abs=1e-3)  # third V
    assert "v_couplet" not in rules(out)  # a run that becomes VT is not also a couplet
    assert rules(out).count("v_beat") == 1  # refractory: one low alarm for the V beats


def test_couplet_bigeminy_trigeminy_svt():
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNNVVNNNN")
    assert rules(out).count("v_couplet") == 1 and "vt" not in rules(out)
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNN" + "NV" * 5 + "NNNN")
    assert rules(out).count("bigeminy") == 1 and "trigeminy" not in rules(out)
    big = next(a for a in out if a["rule"] == "bigeminy")
    assert big["t"] == pytest.approx(1.0 + 0.8 * 9, abs=1e-3)  # 3rd cycle completes at beat 10
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNN" + "NNV" * 4 + "NNNN")
    assert rules(out).count("trigeminy") == 1 and "bigeminy" not in rules(out)
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNNSSNNNN")
    assert "svt" not in rules(out)
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNNSSSSNNNN")
    assert rules(out).count("svt") == 1


def test_refractory_period_and_disabled_rule():
    # Two VT runs 12 beats (9.6 s) apart: one alarm with a 30 s refractory period, two with 5 s.
    seq = "N" * 5 + "VVV" + "N" * 12 + "VVV" + "N" * 5
    assert rules(feed(AlarmEngine(alarm_cfg(), FS), seq)).count("vt") == 1
    eng = AlarmEngine(alarm_cfg(vt={"refractory_s": 5.0}), FS)
    assert rules(feed(eng, seq)).count("vt") == 2
    eng = AlarmEngine(alarm_cfg(vt={"enabled": False}), FS)
    assert "vt" not in rules(feed(eng, seq))
    with pytest.raises(ValidationError, match="'urgent', expected one of \\[low, medium, high\\]"):
        alarm_cfg(vt={"severity": "urgent"})  # refused when the config is made


def test_pause_brady_tachy_from_rr():
    out = feed(AlarmEngine(alarm_cfg(), FS), "NNNN", rr=0.8) + feed(
        AlarmEngine(alarm_cfg(), FS), "NN", rr=2.5
    )
    assert rules(out) == ["pause"] and out[0]["rr_s"] == pytest.approx(2.5, abs=1e-2)
    out = feed(AlarmEngine(alarm_cfg(), FS), "N" * 12, rr=1.7)  # 35 bpm, no pause (< 2 s)
    assert rules(out) == ["brady"]
    assert out[0]["t"] == pytest.approx(1.0 + 1.7 * 8, abs=1e-3)  # after 8 RR intervals
    out = feed(AlarmEngine(alarm_cfg(), FS), "N" * 12, rr=0.35)  # 171 bpm
    assert rules(out) == ["tachy"]
    assert rules(feed(AlarmEngine(alarm_cfg(), FS), "N" * 12, rr=0.9)) == []


def test_flat_line_suppresses_pause_and_brady():
    eng = AlarmEngine(alarm_cfg(), FS)
    x = ecg(schedule(40.0, rr=1.45), 40.0, flat=(15.0, 25.0))
    alarms = eng.push_signal(x, 0)
    assert rules(alarms) == ["flat_line"]
    assert alarms[0]["t_start"] == pytest.approx(15.0, abs=0.5)
    # Beats at 41 bpm; none during the flat line: the 10 s gap is no RR interval.
    r = [t for t, _ in schedule(40.0, rr=1.45) if not 15.0 <= t < 25.0]
    out = eng.push_beats(np.round(np.array(r) * FS).astype(int), [0] * len(r), len(x))
    assert "pause" not in rules(out) and "brady" not in rules(out)


# ----------------------------------------------------------------------------- stream
def _stream(x, cfg=None, chunk_s=1.0, classifier=width_classifier, alarms=None):
    st = BeatStream(cfg or data_cfg(), FS, 1)
    return replay(x, FS, st, classifier, chunk_s, alarms=alarms), st


@pytest.mark.parametrize(
    "kind,template",
    [
        ("bandpass", "none"),
        ("median+bandpass", "none"),
        ("bandpass", "add"),
        ("bandpass", "replace"),
    ],
)
def test_streamed_windows_equal_extract_beats(kind, template):
    x = ecg(schedule(75.0, rr=0.75, vt_at=30.0), 75.0, seed=3)
    cfg = OmegaConf.merge(
        data_cfg(), {"filter": {"kind": kind}, "beat": {"template": template, "template_window": 8}}
    )
    st = BeatStream(cfg, FS, 1)
    xs, rrs, smp = [], [], []
    for s in range(0, x.size, 360):
        b = st.push(x[s : s + 360])
        xs.append(b.x), rrs.append(b.rr), smp.append(b.sample)
    b = st.flush()
    xs.append(b.x), rrs.append(b.rr), smp.append(b.sample)
    xs, rrs, smp = np.concatenate(xs), np.concatenate(rrs), np.concatenate(smp)
    peaks = np.asarray(st.peaks)
    rec = Record("s", x[:, None], FS, ["MLII"], peaks, np.array(["N"] * len(peaks)))
    off, dropped = extract_beats(rec, cfg)
    assert np.array_equal(off.sample, smp) and dropped == st.dropped == 1  # first beat at 0.6 s
    # Away from the record edges the segment filter is what differs (margin 4 s).
    away = (smp > 6 * FS) & (smp < x.size - 6 * FS)
    assert away.sum() > 70
    assert np.abs(off.x[away] - xs[away]).max() < 1e-3
    assert np.abs(off.x - xs).max() < 1e-3  # at the edges the segment stops where offline does
    np.testing.assert_allclose(rrs, rr_features(peaks, FS, 10, 300)[np.isin(peaks, smp)], rtol=1e-6)
    assert rrs.shape[1] == off.rr.shape[1]
    assert xs.shape[1] == st.channels == {"none": 2, "add": 4, "replace": 2}[template]


def test_synthetic_vt_run_raises_exactly_one_vt_alarm():
    beats = schedule(40.0, vt_at=20.0)
    x = ecg(beats, 40.0)
    eng = AlarmEngine(alarm_cfg(), FS)
    res, st = _stream(x, alarms=eng)
    truth = np.array([round(t * FS) for t, _ in beats])
    assert len(res.peaks) == len(truth)
    assert np.abs(res.peaks - truth).max() <= 0.03 * FS
    pred = res.probs.argmax(1)
    v_true = [round(t * FS) for t, k in beats if k == "V"]
    near_v = np.abs(res.sample[:, None] - np.array(v_true)[None]).min(1) <= 0.03 * FS
    assert np.array_equal(pred == CLASSES.index("V"), near_v) and near_v.sum() == 4
    vt = [a for a in res.alarms if a["rule"] == "vt"]
    assert len(vt) == 1
    assert vt[0]["t_start"] == pytest.approx(v_true[0] / FS, abs=0.03)
    assert vt[0]["t"] == pytest.approx(v_true[2] / FS, abs=0.03)
    # Raised once the third V beat's windows, filter margin and next beat were in.
    assert v_true[2] / FS + st.delay_samples / FS <= vt[0]["t_raised"] <= v_true[2] / FS + 7.0
    assert "pause" not in rules(res.alarms) and "flat_line" not in rules(res.alarms)


def test_chunk_size_changes_nothing():
    x = ecg(schedule(50.0, vt_at=25.0), 50.0, seed=1)
    runs = {}
    for c in (0.25, 1.0, 10.0):
        res, _ = _stream(x, chunk_s=c, alarms=AlarmEngine(alarm_cfg(), FS))
        runs[c] = res
    ref = runs[1.0]
    for c in (0.25, 10.0):
        r = runs[c]
        assert np.array_equal(r.peaks, ref.peaks) and np.array_equal(r.sample, ref.sample)
        assert np.array_equal(r.probs, ref.probs)
        drop = lambda al: [{k: v for k, v in a.items() if k != "t_raised"} for a in al]
        assert drop(r.alarms) == drop(ref.alarms)


def test_flat_line_and_saturation_raise_quality_alarms_only():
    # A 10 s lead-off at 41 bpm: a real monitor would see a 12 s "pause" and 5 bpm.
    x = ecg(schedule(45.0, rr=1.45), 45.0, flat=(15.0, 25.0))
    res, _ = _stream(x, alarms=AlarmEngine(alarm_cfg(), FS))
    assert rules(res.alarms) == ["flat_line"]
    # Control: the same gap without beats but with live signal is a pause.
    x = ecg(schedule(45.0, rr=1.45, skip=(15.0, 25.0)), 45.0)
    res, _ = _stream(x, alarms=AlarmEngine(alarm_cfg(), FS))
    assert "pause" in rules(res.alarms) and "flat_line" not in rules(res.alarms)
    x = ecg(schedule(30.0), 30.0, clip=(12.0, 12.5))
    res, _ = _stream(x, alarms=AlarmEngine(alarm_cfg(), FS))
    sat = [a for a in res.alarms if a["rule"] == "saturation"]
    assert len(sat) == 1 and sat[0]["t_start"] == pytest.approx(12.0, abs=0.01)
    assert not {"pause", "brady", "flat_line"} & set(rules(res.alarms))


# ----------------------------------------------------------------------------- scoring
def test_score_stream_follows_bxb_for_missed_and_extra_beats():
    ann = np.array([1000, 2000, 3000, 4000, 5000])
    sym = np.array(["N", "V", "A", "V", "+"])  # '+' is a rhythm note, not a beat
    det = np.array([1005, 2003, 4001, 6000])  # the S beat at 3000 is missed
    pred = np.array([CLASSES.index(c) for c in "VVNV"])  # N called V; extra beat at 6000 is V
    s = score_stream(ann, sym, det, det, pred, FS)
    assert (s["qrs"]["whole"]["tp"], s["qrs"]["whole"]["fn"], s["qrs"]["whole"]["fp"]) == (3, 1, 1)
    veb, sveb = s["classification"]["VEB"], s["classification"]["SVEB"]
    assert (veb["TP"], veb["FN"], veb["FP"]) == (1, 1, 2)  # Vv; Vn; Nv + Ov
    assert (sveb["TP"], sveb["FN"], sveb["FP"]) == (0, 1, 0)  # the missed S is an FN (So)
    assert s["classification"]["missed_reference_by_class"]["S"] == 1
    assert s["classification"]["extra_detections_by_predicted_class"]["V"] == 1
    s = score_stream(ann, sym, det, det, pred, FS, start=1500, exclude=[2000])
    assert s["classification"]["VEB"]["TP"] == 0 and s["classification"]["n_beats"] == 3
    # Inside reference-marked ventricular flutter ('[' .. ']') extra beats are not counted.
    vf_ann, vf_sym = np.append(ann, [5500, 6500]), np.append(sym, ["[", "]"])
    s = score_stream(vf_ann, vf_sym, det, det, pred, FS)
    assert s["classification"]["VEB"]["FP"] == 1  # only Nv
    assert s["qrs"]["ec57_no_vf"]["fp"] == 0 and s["qrs"]["whole"]["fp"] == 1


# ----------------------------------------------------------------------------- app
def test_monitor_app_on_a_csv_stream(tmp_path):
    x = ecg(schedule(40.0, vt_at=20.0), 40.0)
    csv = tmp_path / "ecg.csv"
    np.savetxt(
        csv, np.stack([np.arange(x.size), x], 1), delimiter=",", header="i,mlii", comments=""
    )
    cfg = compose(
        "monitor",
        [f"input={csv}", "fs=360", "columns=[1]", "plot.start_s=15", "plot.duration_s=15"],
    )
    s = monitor(cfg, tmp_path / "out", classifier=width_classifier, data_cfg=data_cfg())
    assert s["alarms_by_rule"]["vt"] == 1 and s["score"] is None
    assert s["class_counts"]["V"] == 4
    # The first (0.6 s) and last (> 38.8 s) beats lie within a trio window of the edges.
    assert s["beats_dropped_at_edges"] == 2
    assert s["beats_classified"] == s["beats_detected"] - 2
    # trio window (432) + its moving mean (6 + 1) + backward-filter margin (4 s)
    assert s["delay_s"]["windows_and_filter_margin"] == pytest.approx(
        (432 + 7 + 1440) / FS, abs=1e-3
    )
    lines = [json.loads(v) for v in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "beat" for e in lines) == s["beats_classified"]
    assert [e["rule"] for e in lines if e["type"] == "alarm"].count("vt") == 1
    assert (tmp_path / "out" / "monitor.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "monitor_summary.json").read_text())
    assert saved["class_counts"] == s["class_counts"]


def test_bad_inputs_are_one_line_errors(tmp_path, synth_dir):
    with pytest.raises(EcgError, match="checkpoint: .*nope.pt: file not found"):
        monitor(compose("monitor", ["checkpoint=nope.pt", "record=100"]), tmp_path)
    csv = tmp_path / "x.csv"
    np.savetxt(csv, np.zeros((100, 1)), delimiter=",")
    with pytest.raises(EcgError, match="^fs: required with input="):
        monitor(
            compose("monitor", ["checkpoint=x", f"input={csv}"]),
            tmp_path,
            classifier=width_classifier,
            data_cfg=data_cfg(),
        )
    with pytest.raises(EcgError, match="s9.hea"):
        monitor(
            compose("monitor", ["checkpoint=x", "record=s9", f"data.root={synth_dir}"]),
            tmp_path,
            classifier=width_classifier,
            data_cfg=data_cfg(),
        )
    with pytest.raises(EcgError, match="record / input"):
        monitor(
            compose("monitor", ["checkpoint=x"]),
            tmp_path,
            classifier=width_classifier,
            data_cfg=data_cfg(),
        )
    with pytest.raises(EcgError, match="normalize"):
        BeatStream(data_cfg(normalize="record"), FS, 1)
    with pytest.raises(EcgError, match="^fs: stream at 250"):
        BeatStream(data_cfg(), 250.0, 1)


def test_monitor_config_composes_and_checks_types():
    cfg = compose("monitor", ["checkpoint=m.pt", "record=208", "alarms.pause_s=2.5"])
    assert cfg.alarms.pause_s == 2.5 and cfg.alarms.vt.severity == "high"
    assert cfg.chunk_s == 1.0 and cfg.realtime is False and list(cfg.columns) == [0]
    with pytest.raises(Exception, match="pause_s"):
        compose("monitor", ["alarms.pause_s=long"])


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_real_record_end_to_end(mitdb, tmp_path):
    import torch

    from ecgcnn.personalize.patient_specific import finetune_patient

    torch.set_num_threads(1)
    ft = compose(
        "finetune",
        [
            "record=119",
            "trainer.max_epochs=3",
            "report=false",
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
    )
    finetune_patient(ft, tmp_path / "model")
    ck = tmp_path / "model" / "model.pt"
    out = tmp_path / "mon"
    s = monitor(
        compose(
            "monitor", [f"checkpoint={ck}", "record=119", f"data.root={mitdb}", "plot.start_s=300"]
        ),
        out,
    )
    assert (out / "events.jsonl").is_file() and (out / "monitor_summary.json").is_file()
    q = s["score"]["qrs"]["whole"]
    assert q["se"] >= 0.99 and q["ppv"] >= 0.99
    assert s["beats_classified"] >= 1980  # 1987 reference beats
    assert s["score"]["classification"]["VEB"]["Se"] > 0.9  # 119: bigeminy / trigeminy PVCs
    # Both engines (eager fused model, ONNX Runtime on its in-memory export) give the
    # probabilities of the CNN as trained.
    fused, _, _ = load_classifier(ck, "onnx")
    plain, _, _ = load_classifier(ck, "torch")
    rng = np.random.default_rng(0)
    xb = rng.normal(size=(64, 2, 128)).astype(np.float32)
    rb = rng.random((64, len(RR_FEATURES))).astype(np.float32) + 0.5
    np.testing.assert_allclose(fused(xb, rb), plain(xb, rb), atol=1e-5)
    # the finetune default trains two views: the monitor averages them (also=[model_add.pt]),
    # cutting each model's channels from one running-template stream
    from ecgcnn.monitor.models import averaged as _averaged
    from ecgcnn.training.checkpoint import checkpoint_data_config

    ck_add = tmp_path / "model" / "model_add.pt"
    mc = compose(
        "monitor",
        [
            f"checkpoint={ck}",
            f"also=[{ck_add}]",
            "record=119",
            f"data.root={mitdb}",
            "max_duration_s=120",
            "plot.enabled=false",
        ],
    )
    clf, ckd, classes = load_classifier(ck, "torch")
    clf_add, _, _ = load_classifier(ck_add, "torch")
    both, dcfg = _averaged(mc, clf, checkpoint_data_config(ckd, mc.data), classes)
    assert dcfg.beat.template == "add"
    x4 = rng.normal(size=(64, 4, 128)).astype(np.float32)
    np.testing.assert_allclose(both(x4, rb), (clf(x4[:, :2], rb) + clf_add(x4, rb)) / 2, atol=1e-6)
    s2 = monitor(mc, tmp_path / "mon2")
    assert s2["beats_classified"] > 100
    # deployed: each view exported (TorchScript, ONNX), run in their own runtimes: the same
    # beats, classes and alarms as the two checkpoints
    from ecgcnn.export import export_model

    ts = export_model(ck, tmp_path / "exp_none", "torchscript")["model"]
    ox = export_model(ck_add, tmp_path / "exp_add", "onnx")["model"]
    s3 = monitor(
        OmegaConf.merge(mc, {"checkpoint": str(ts), "also": [str(ox)]}),
        tmp_path / "mon3",
    )
    assert s3["class_counts"] == s2["class_counts"] and s3["alarms_by_rule"] == s2["alarms_by_rule"]

    def beats(d):
        ev = [json.loads(line) for line in (d / "events.jsonl").read_text().splitlines()]
        return [(e["sample"], e["class"]) for e in ev if e["type"] == "beat"]

    assert beats(tmp_path / "mon3") == beats(tmp_path / "mon2")
