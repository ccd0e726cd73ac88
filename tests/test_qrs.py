"""Streaming QRS detector and beat matching: accuracy on synthetic ECG, chunk invariance,
flat line, decision delay, and Se/+P on MIT-BIH record 100 (slow, needs $ECGCNN_DATA_DIR)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ecgcnn.errors import EcgError
from ecgcnn.monitor.qrs import StreamingQRSDetector, detect
from ecgcnn.monitor.scoring import (
    BEAT_SYMBOLS,
    match_beats,
    qrs_se_ppv,
    reference_beats,
    vf_episodes,
)

FS = 360.0


def _gauss(t: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2)


def synthetic_ecg(seconds: float = 90.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw-looking MLII: P-QRS-T beats at 60-150 bpm (irregular), baseline wander, noise.

    Returns the signal in mV and the R-peak sample positions.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    x = 0.4 + 0.3 * np.sin(2 * np.pi * 0.25 * t) + 0.15 * np.sin(2 * np.pi * 0.07 * t + 1.0)
    x += 0.02 * rng.standard_normal(n) + 0.03 * np.sin(2 * np.pi * 60.0 * t)
    peaks = []
    r = 0.7
    while True:
        # Heart rate drifts through 60-150 bpm; each RR also jitters by +-10 %.
        hr = 105 + 45 * np.sin(2 * np.pi * r / 70.0)
        rr = 60.0 / hr * rng.uniform(0.9, 1.1)
        if r + 0.6 > seconds:
            break
        amp = rng.uniform(0.9, 1.6)
        w = slice(max(0, int((r - 0.35) * FS)), min(n, int((r + 0.6) * FS)))
        tt = t[w]
        x[w] += 0.15 * _gauss(tt, r - 0.16, 0.025)  # P
        x[w] += -0.12 * amp * _gauss(tt, r - 0.025, 0.008)  # Q
        x[w] += amp * _gauss(tt, r, 0.010)  # R
        x[w] += -0.2 * amp * _gauss(tt, r + 0.028, 0.009)  # S
        x[w] += 0.3 * _gauss(tt, r + 0.12 + 0.1 * rr, 0.045)  # T (QT shortens with the rate)
        peaks.append(round(r * FS))
        r += rr
    return x.astype(np.float32), np.asarray(peaks, dtype=np.int64)


@pytest.fixture(scope="module")
def synth():
    return synthetic_ecg()


def _chunked(x: np.ndarray, sizes: list[int]) -> np.ndarray:
    det = StreamingQRSDetector(FS)
    out, s, k = [], 0, 0
    while s < x.size:
        step = sizes[k % len(sizes)]
        out += det.push(x[s : s + step])
        s, k = s + step, k + 1
    out += det.flush()
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------- detection
def test_synthetic_every_beat_within_30ms_no_false_detection(synth):
    x, peaks = synth
    det = detect(x, FS)
    tp, fn, fp, pairs = match_beats(peaks, det, tol=round(0.030 * FS))
    assert (fn, fp) == (0, 0)
    assert tp == peaks.size
    assert np.abs(pairs[:, 1] - pairs[:, 0]).max() <= 2  # the R apex itself, not just near it


def test_peaks_sorted_and_a_refractory_period_apart(synth):
    det = detect(synth[0], FS)
    assert np.all(np.diff(det) >= round(0.200 * FS))


@pytest.mark.parametrize("chunk_s", [0.25, 1.0, 10.0])
def test_chunk_invariance_synthetic(synth, chunk_s):
    x = synth[0]
    whole = detect(x, FS)
    assert np.array_equal(detect(x, FS, chunk=round(chunk_s * FS)), whole)


def test_chunk_invariance_ragged_chunks(synth):
    x = synth[0][: int(30 * FS)]
    whole = detect(x, FS)
    sizes = np.random.default_rng(1).integers(1, 400, size=97).tolist()
    assert np.array_equal(_chunked(x, sizes), whole)
    assert np.array_equal(_chunked(x[:4000], [1]), detect(x[:4000], FS))


def test_flat_line_gives_no_detections_inside(synth):
    x = synth[0].copy()
    a, b = int(30 * FS), int(45 * FS)
    x[a:b] = 0.0  # lead off: the amplifier output sits at one value
    det = detect(x, FS, chunk=90)
    assert not np.any((det > a + round(0.2 * FS)) & (det < b)), det[(det > a) & (det < b)]
    # and detection resumes after it
    assert np.sum(det > b + 5 * FS) >= 5


def test_all_flat_or_empty_stream():
    assert detect(np.full(int(20 * FS), 0.3), FS).size == 0
    assert detect(np.zeros(0), FS).size == 0
    det = StreamingQRSDetector(FS)
    assert det.push(np.zeros(0)) == [] and det.flush() == []


def test_emission_delay_within_attributes(synth):
    """Fed sample by sample, a peak comes out at most ``max_delay_samples`` after the R peak,
    and the beats accepted at once (after the learning period) within ``delay``."""
    x = synth[0][: int(20 * FS)]
    det = StreamingQRSDetector(FS)
    lags = []
    for s in range(x.size):
        lags += [(p, s - p) for p in det.push(x[s : s + 1])]
    assert np.array_equal(np.array([p for p, _ in lags]), detect(x, FS)[: len(lags)])
    lag = np.array([d for _, d in lags])
    assert lag.max() <= det.max_delay_samples
    after_learning = np.array([d for p, d in lags if p > det.learn])
    assert after_learning.max() <= det.delay
    assert det.delay == 152  # 200 ms lookahead + 150 ms integration + 15 + 11 samples


def test_bad_input_raises():
    det = StreamingQRSDetector(FS)
    with pytest.raises(EcgError, match="NaN"):
        det.push(np.array([0.0, np.nan]))
    with pytest.raises(EcgError, match="1-D"):
        det.push(np.zeros((4, 2)))
    det.flush()
    with pytest.raises(EcgError, match="flushed"):
        det.push(np.zeros(3))
    with pytest.raises(EcgError, match="band_hz"):
        StreamingQRSDetector(100.0, band_hz=(5.0, 60.0))


# ----------------------------------------------------------------------------- scoring
def test_match_beats_counts_known_case():
    ref = np.array([100, 400, 700, 1000])
    det = np.array([105, 390, 395, 760, 1300])
    tp, fn, fp, pairs = match_beats(ref, det, tol=54)
    # 100 and 400 match (400 to the earlier of its two detections, 390; 395 is extra);
    # 760 is 60 > 54 samples from 700; nothing near 1000; 1300 is extra.
    assert (tp, fn, fp) == (2, 2, 3)
    assert pairs.tolist() == [[100, 105], [400, 390]]


def test_match_beats_one_to_one_maximal():
    # One detection within reach of two beats counts once; the other beat is missed.
    tp, fn, fp, pairs = match_beats(np.array([100, 150]), np.array([140]), tol=54)
    assert (tp, fn, fp) == (1, 1, 0) and pairs.tolist() == [[100, 140]]
    # Closest-pair-first greedy would take 150-140 (10 samples) and then lose both 100 and 190.
    tp, fn, fp, pairs = match_beats(np.array([100, 150]), np.array([140, 190]), tol=54)
    assert (tp, fn, fp) == (2, 0, 0) and pairs.tolist() == [[100, 140], [150, 190]]
    assert match_beats(np.array([10]), np.array([64]), tol=54)[:3] == (1, 0, 0)  # inclusive
    assert match_beats(np.zeros(0), np.array([5]), tol=54)[:3] == (0, 0, 1)


def test_qrs_se_ppv_window_and_skip():
    ref = np.array([100, 500, 900, 1300, 1700])
    det = np.array([102, 498, 1100, 1302])
    s = qrs_se_ppv(ref, det, FS)
    assert (s.tp, s.fn, s.fp) == (3, 2, 1)
    assert s.se == pytest.approx(0.6) and s.ppv == pytest.approx(0.75)
    s = qrs_se_ppv(ref, det, FS, start=400, skip=[(1000, 1200)])
    assert (s.tp, s.fn, s.fp) == (2, 2, 0)
    assert (s + s).tp == 4


def test_reference_beats_and_vf_episodes():
    samples = np.array([10, 20, 30, 40, 50, 60, 70])
    symbols = np.array(["N", "+", "V", "[", "!", "]", "/"])
    assert reference_beats(samples, symbols).tolist() == [10, 30, 70]
    assert vf_episodes(samples, symbols) == [(40, 61)]
    assert BEAT_SYMBOLS == set("NLRejAaJSVEF/fQ")


# ----------------------------------------------------------------------------- MIT-BIH
def _data_dir() -> str:
    root = os.environ.get("ECGCNN_DATA_DIR")
    if not root:
        pytest.skip("ECGCNN_DATA_DIR is not set")
    return root


@pytest.mark.slow
@pytest.mark.needs_data
def test_record_100_se_ppv_and_chunk_invariance():
    from ecgcnn.data.io import read_record

    rec = read_record(_data_dir(), "100")
    x = rec.signal[:, 0]
    ref = reference_beats(rec.ann_samples, rec.ann_symbols)
    det = detect(x, rec.fs, chunk=round(rec.fs))
    s = qrs_se_ppv(ref, det, rec.fs)
    assert s.se >= 0.995 and s.ppv >= 0.995, s
    five = x[: int(300 * rec.fs)]
    whole = detect(five, rec.fs)
    for chunk_s in (0.25, 1.0, 10.0):
        assert np.array_equal(detect(five, rec.fs, chunk=round(chunk_s * rec.fs)), whole)
    assert np.array_equal(det[det < five.size - rec.fs], whole[whole < five.size - rec.fs])
