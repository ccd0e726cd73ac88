"""Training beats centred where the monitor will centre them: on the streaming detector's R peaks.

Models learn windows centred on the reference annotations, while the monitor centres windows on
its own detector's R point; for ventricular beats the two can differ by tens of milliseconds
(record 208: up to 31 samples). A deployed monitor collects its training beats on its own
detections with expert labels, so ``detector_aligned`` re-cuts a patient's training beats that way.
"""

from __future__ import annotations

import numpy as np

from ecgcnn.data.beats import AAMI_MAP, BeatSet, extract_beats
from ecgcnn.data.io import read_record, resolve_root
from ecgcnn.monitor.qrs import detect
from ecgcnn.monitor.scoring import match_beats


def detector_aligned(beats: BeatSet, data_cfg, record: str, before: int) -> BeatSet:
    """``beats`` of ``record`` with the beats whose R peak lies before sample ``before`` re-cut
    around the matched streaming-detector peak (within 150 ms; labels from the reference).

    Beats the detector misses keep their annotation-centred window; beats at or after
    ``before`` (the test part) are returned unchanged, so scoring stays on reference positions.
    """
    rec = read_record(resolve_root(data_cfg.root), record, leads=list(data_cfg.leads))
    det = detect(rec.signal[:, 0], rec.fs)
    is_beat = np.isin(rec.ann_symbols, list(AAMI_MAP))
    ref = rec.ann_samples[is_beat]
    _, _, _, pairs = match_beats(ref, det, round(0.15 * rec.fs))
    moved = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    pos = np.array([moved.get(v, v) for v in ref.tolist()], dtype=np.int64)
    order = np.argsort(pos, kind="stable")
    rec.ann_samples, rec.ann_symbols = pos[order], rec.ann_symbols[is_beat][order]
    recut, _ = extract_beats(rec, data_cfg)
    back = dict(zip(pos.tolist(), ref.tolist()))  # detector position -> reference position
    index = {v: i for i, v in enumerate(beats.sample.tolist())}
    x, rr = beats.x.copy(), beats.rr.copy()
    for j, v in enumerate(recut.sample.tolist()):
        i = index.get(back.get(v, -1))
        if i is not None and beats.sample[i] < before:
            x[i], rr[i] = recut.x[j], recut.rr[j]
    return BeatSet(
        x=x, rr=rr, y=beats.y, sample=beats.sample, record=beats.record, symbol=beats.symbol
    )
