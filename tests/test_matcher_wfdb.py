"""The project's beat matcher (``monitor.scoring.match_beats``) against wfdb-python's own
``wfdb.processing.compare_annotations`` on real MIT-BIH records."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb.processing as wp

from ecgcnn.data.io import read_record
from ecgcnn.monitor.qrs import detect
from ecgcnn.monitor.scoring import MATCH_TOLERANCE_S, match_beats, reference_beats

RECORDS = ["105", "203", "207"]  # noise, irregular rhythm, flutter: detectors err there


def _ref(mitdb, name):
    rec = read_record(mitdb, name, leads=["MLII"])
    return rec, reference_beats(rec.ann_samples, rec.ann_symbols), round(MATCH_TOLERANCE_S * rec.fs)


@pytest.mark.slow
@pytest.mark.parametrize("name", RECORDS)
def test_same_counts_as_wfdb_on_the_streaming_detector(mitdb, name):
    rec, ref, tol = _ref(mitdb, name)
    det = detect(rec.signal[:, 0], rec.fs)
    tp, fn, fp, _ = match_beats(ref, det, tol)
    c = wp.compare_annotations(ref, det, tol)
    assert (tp, fn, fp) == (c.tp, c.fn, c.fp)
    assert fn + fp > 0  # these records do make the detector err: the comparison has content


@pytest.mark.slow
def test_jittered_detections(mitdb):
    """Detections moved by up to a third of the window, 2 % dropped, 50 spurious: both matchers
    agree. Moved by up to the whole window plus a little, wfdb's nearest-first comparitor pairs
    fewer beats than a one-to-one maximal matching can; ours finds at least as many, with the
    same bookkeeping (every beat matched or missed, every detection matched or extra)."""
    rng = np.random.default_rng(0)
    rec, ref, tol = _ref(mitdb, "100")
    for spread, same in ((tol // 3, True), (tol + 10, False)):
        keep = rng.random(len(ref)) > 0.02
        det = ref[keep] + rng.integers(-spread, spread, keep.sum())
        det = np.sort(np.concatenate([det, rng.integers(0, rec.n_samples, 50)]))
        tp, fn, fp, _ = match_beats(ref, det, tol)
        c = wp.compare_annotations(ref, det, tol)
        assert tp + fn == len(ref) and tp + fp == len(det)
        if same:
            assert (tp, fn, fp) == (c.tp, c.fn, c.fp)
        else:
            assert tp > c.tp
