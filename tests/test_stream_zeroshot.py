"""The stream computes every input a zero-shot model needs (running amplitude scale, template
view) with the functions the offline path uses (``synthesis.normalize``), so a zero-shot model
classifies the streamed beats as it scores the same beats offline (slow: real 119)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose
from test_monitor import FS, data_cfg, ecg, schedule

from ecgcnn.data.beats import RR_FEATURES, extract_beats
from ecgcnn.data.io import Record
from ecgcnn.monitor.stream import BeatStream, replay
from ecgcnn.synthesis.normalize import running_scale, running_template

ZS = {
    "beat_scale": "running",
    "scale_window": 12,
    "template": "add",
    "template_window": 9,
    "template_gate": 0.9,
}


def offline_input(x_plain: np.ndarray, rr: np.ndarray, zs: dict) -> np.ndarray:
    """``synthesis.normalize`` on the whole record's beats: scale, then the template view."""
    x = running_scale(x_plain, zs["scale_window"])
    ok = rr[:, RR_FEATURES.index("pre_local")] >= zs["template_gate"]
    diff = x - running_template(x, zs["template_window"], eligible=ok)
    return np.concatenate([x, diff], axis=1) if zs["template"] == "add" else diff


def streamed(x, cfg, zs, chunk: int):
    st = BeatStream(cfg, FS, 1, zeroshot=zs)
    out = [st.push(x[s : s + chunk]) for s in range(0, x.size, chunk)] + [st.flush()]
    return st, np.concatenate([b.x for b in out]), np.concatenate([b.rr for b in out])


def test_stream_computes_the_zero_shot_input_as_offline():
    x = ecg(schedule(90.0, rr=0.75, vt_at=45.0), 90.0, seed=6)
    x[int(50 * FS) :] *= 0.5  # amplitude drift: what the running scale is for
    st, xs, _ = streamed(x, data_cfg(), ZS, 360)
    _, xs2, _ = streamed(x, data_cfg(), ZS, 4321)
    assert np.array_equal(xs, xs2)  # chunk-invariant, scale and template included
    assert xs.shape[1] == st.channels == 4
    peaks = np.asarray(st.peaks)
    off, _ = extract_beats(
        Record("s", x[:, None], FS, ["MLII"], peaks, np.array(["N"] * len(peaks))), data_cfg()
    )
    want = offline_input(off.x, off.rr, ZS)
    assert np.abs(want - xs).max() < 2e-3  # the filter margin, scaled (amplitude ~0.5 mV)
    # the running scale is 1 / the recent median peak-to-peak: after the drop, beats are
    # back to the size they had before it
    ptp = np.ptp(xs[:, 0], axis=-1)
    assert abs(np.median(ptp[-20:]) - np.median(ptp[5:25])) < 0.05


@pytest.mark.slow
def test_zero_shot_model_streamed_gives_its_offline_classes(mitdb, tmp_path):
    import torch

    from ecgcnn.data.cache import load_beats
    from ecgcnn.data.io import read_record
    from ecgcnn.monitor.models import load_classifier
    from ecgcnn.personalize.zero_shot import run_patient
    from ecgcnn.training.checkpoint import checkpoint_data_config

    torch.set_num_threads(1)
    zcfg = compose(
        "zeroshot",
        [
            "record=119",
            "trainer.max_epochs=1",
            "figures=false",
            "library_records=[100,105,208]",
            "beat_scale=running",
            "scale_window=60",
            "template=[add]",
            "template_window=60",
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "trainer.progress=false",
        ],
    )
    beats = load_beats(zcfg.data, records=["100", "105", "119", "208"]).beats
    run_patient(zcfg, beats, "119", tmp_path / "zs", save_model=True)
    clf, ck, _ = load_classifier(tmp_path / "zs" / "best.pt", "torch")
    zs = ck["zeroshot"]
    assert zs["beat_scale"] == "running" and zs["template"] == "add"
    data = checkpoint_data_config(ck, zcfg.data)
    rec = read_record(mitdb, "119", annotator=None)
    st = BeatStream(data, rec.fs, 1, zeroshot=zs)
    res = replay(rec.signal, rec.fs, st, clf, chunk_s=1.0)
    assert len(res.sample) > 1900
    # offline: the same R peaks, extract_beats, the normalisation of synthesis.normalize
    peaks = np.asarray(st.peaks)
    off, _ = extract_beats(
        Record("119", rec.signal, rec.fs, ["MLII"], peaks, np.array(["N"] * len(peaks))), data
    )
    assert np.array_equal(off.sample, res.sample)
    p_off = clf(offline_input(off.x, off.rr, zs), off.rr)
    agree = (p_off.argmax(1) == res.probs.argmax(1)).mean()
    assert agree == 1.0, f"{100 * (1 - agree):.3f} % of beats change class"
    np.testing.assert_allclose(p_off, res.probs, atol=2e-3)
