"""ecgcnn-analyze: a whole recording through the monitor's stream in large blocks. Block size
changes nothing, positions go out at the record's own rate (128 and 360 Hz), a lead-off is
signal loss with no beat classified inside it, and (slow, real 119) the batch path gives the
beats and classes of the streaming monitor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import wfdb
from conftest import compose
from test_monitor import data_cfg, ecg, schedule, width_classifier

from ecgcnn.data.beats import CLASSES
from ecgcnn.errors import EcgError
from ecgcnn.monitor.analyze import analyze


def write(tmp_path, x, fs, beats, name="h1"):
    d = tmp_path / "rec"
    d.mkdir(exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=x[:, None].astype(float),
        fmt=["16"],
        adc_gain=[1000.0],
        baseline=[0],
        write_dir=str(d),
    )
    smp = np.round(np.array([t for t, _ in beats]) * fs).astype(int)
    wfdb.wrann(name, "atr", smp, symbol=[k for _, k in beats], write_dir=str(d))
    return d / name, smp


def run(tmp_path, record, out="out", **over):
    cfg = compose("analyze", [f"record={record}", *[f"{k}={v}" for k, v in over.items()]])
    return analyze(
        cfg, tmp_path / out, classifier=width_classifier, data_cfg=data_cfg(), classes=list(CLASSES)
    )


def annotations(path):
    a = wfdb.rdann(str(path.with_suffix("")), path.suffix[1:])
    return a.sample, a.symbol, a.fs


def test_block_size_changes_nothing(tmp_path):
    beats = schedule(180.0, vt_at=90.0)
    rec, _ = write(tmp_path, ecg(beats, 180.0, seed=2), 360, beats)
    one = run(tmp_path, rec, "one", block_s=600)
    small = run(tmp_path, rec, "small", block_s=7.3)  # a record 25 blocks long
    a, b = (
        annotations(tmp_path / "one" / "h1.ecgcnn"),
        annotations(tmp_path / "small" / "h1.ecgcnn"),
    )
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and len(a[0]) == one["beats_classified"]
    assert one["class_counts"] == small["class_counts"] and one["class_counts"]["V"] == 4
    assert one["alarms_by_rule"] == small["alarms_by_rule"] and one["alarms_by_rule"]["vt"] == 1
    assert one["episodes"] == small["episodes"] and one["trend"] == small["trend"]
    ev = [json.loads(v) for v in (tmp_path / "one" / "events.jsonl").read_text().splitlines()]
    assert [e["rule"] for e in ev] == [e["rule"] for e in one["episodes"]]
    assert (tmp_path / "one" / "report.md").is_file() and (tmp_path / "one" / "trend.png").is_file()
    with pytest.raises(EcgError, match="already exists"):
        run(tmp_path, rec, "one")


@pytest.mark.parametrize("fs", [128, 360])
def test_positions_at_the_records_own_rate(tmp_path, fs):
    beats = schedule(120.0, rr=0.85)
    t = np.arange(int(120.0 * fs)) / fs
    # the synthetic lead at 360 Hz, sampled at fs (the same waveform)
    x = np.interp(t, np.arange(int(120.0 * 360)) / 360.0, ecg(beats, 120.0, seed=4))
    rec, ref = write(tmp_path, x.astype(np.float32), fs, beats)
    s = run(tmp_path, rec)
    smp, sym, afs = annotations(tmp_path / "out" / "h1.ecgcnn")
    assert afs == fs and s["fs"] == fs
    # every beat but those within a trio window (1.2 s) of the edges is annotated, each
    # within one sample (two at 128 Hz, after the round trip through 360 Hz) of its R
    inner = ref[(ref >= 1.21 * fs) & (ref <= len(x) - 1.21 * fs)]
    assert len(smp) == len(inner)
    assert np.abs(smp - inner).max() <= (2 if fs == 128 else 1)
    assert set(sym) == {"N"}
    q = s["score"]["qrs"]["whole"]
    assert q["fn"] == 0 and q["fp"] == 0  # the edge beats are detected, not classified


def test_flat_segment_is_signal_loss_with_nothing_classified(tmp_path):
    beats = schedule(900.0, rr=0.8)
    x = ecg(beats, 900.0, seed=5, flat=(120.0, 720.0))  # a 10-minute lead-off
    kept = [(t, k) for t, k in beats if not 120.0 <= t < 720.0]
    rec, _ = write(tmp_path, x, 360, kept)
    s = run(tmp_path, rec, block_s=50)
    loss = s["signal_loss"]
    assert len(loss) == 1 and abs(loss[0]["t_start"] - 120.0) <= 0.5
    assert abs(loss[0]["t_stop"] - 720.0) <= 0.5 and 598 <= s["signal_loss_s"] <= 601
    smp, _, _ = annotations(tmp_path / "out" / "h1.ecgcnn")
    assert not ((smp >= 120 * 360) & (smp < 720 * 360)).any()
    assert s["alarms_by_rule"]["flat_line"] == 1
    assert s["alarms_by_rule"]["pause"] == 0 and s["alarms_by_rule"]["brady"] == 0
    assert s["beats_classified"] >= len(kept) - 4  # the beats around the gap's steps at most
    hour = s["trend"][0]
    assert hour["N"] == s["beats_classified"] and 70 <= hour["hr_bpm"] <= 80  # 75 bpm


@pytest.mark.slow
def test_batch_equals_stream_on_a_real_record(mitdb, tmp_path):
    import torch

    from ecgcnn.monitor.session import monitor
    from ecgcnn.personalize.patient_specific import finetune_patient

    torch.set_num_threads(1)
    ft = compose(
        "finetune",
        [
            "record=119",
            "trainer.max_epochs=1",
            "report=false",
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
    )
    finetune_patient(ft, tmp_path / "model")
    ck, ck_add = tmp_path / "model" / "model.pt", tmp_path / "model" / "model_add.pt"
    m = monitor(
        compose(
            "monitor",
            [
                f"checkpoint={ck}",
                f"also=[{ck_add}]",
                "record=119",
                f"data.root={mitdb}",
                "plot.enabled=false",
            ],
        ),
        tmp_path / "mon",
    )
    a = analyze(
        compose(
            "analyze",
            [f"checkpoint={ck}", f"also=[{ck_add}]", f"record={mitdb / '119'}", "report=false"],
        ),
        tmp_path / "an",
    )
    ev = [json.loads(v) for v in (tmp_path / "mon" / "events.jsonl").read_text().splitlines()]
    streamed = [(e["sample"], e["class"]) for e in ev if e["type"] == "beat"]
    smp, sym, fs = annotations(tmp_path / "an" / "119.ecgcnn")
    assert fs == 360 and len(streamed) > 1900
    assert list(zip(smp.tolist(), sym)) == streamed
    assert a["class_counts"] == m["class_counts"]
    q = a["score"]["qrs"]["whole"]
    assert q["se"] >= 0.99 and q["ppv"] >= 0.99


@pytest.mark.slow
def test_fresh_install_analyzes_with_the_shipped_model(mitdb, tmp_path):
    """No checkpoint given: the console script runs the shipped generic model end to end."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ecgcnn.apps.analyze import main; main()",
            f"record={mitdb / '100'}",
            f"hydra.run.dir={out}",
            "report=false",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    sample, sym, fs = annotations(out / "100.ecgcnn")
    beats = [s for s, y in zip(sample, sym, strict=True) if y != "~"]  # '~': shutdown edges
    assert fs == 360 and len(beats) == summary["beats_classified"] > 2000  # 100: 2273 beats
    assert "global_v1.pt" in json.dumps(summary)
