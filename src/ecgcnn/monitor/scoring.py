"""Beat-by-beat QRS detection scoring (sensitivity and positive predictivity), as in EC57/bxb.

A detection matches a reference beat when they lie within ``tol`` samples of each other
(150 ms in EC57); each reference beat and each detection is used at most once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgcnn.data.beats import AAMI_MAP, CLASSES
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import score

#: Annotation symbols that are beats (MIT-BIH / EC57). Everything else ('+', '~', '|', '!',
#: 'x', '[', ']', ...) is a rhythm, noise, artefact or non-conducted-P note, not a QRS.
BEAT_SYMBOLS: frozenset[str] = frozenset(
    ["N", "L", "R", "e", "j", "A", "a", "J", "S", "V", "E", "F", "/", "f", "Q"]
)

#: EC57 matching window for QRS detection.
MATCH_TOLERANCE_S = 0.150


def reference_beats(ann_samples: np.ndarray, ann_symbols: np.ndarray) -> np.ndarray:
    """Sample indices of the annotations whose symbol is in :data:`BEAT_SYMBOLS`.

    Parameters
    ----------
    ann_samples : int array of annotation positions
    ann_symbols : str array of annotation symbols, same length

    Returns
    -------
    np.ndarray
        int64 array of beat positions, sorted.
    """
    samples = np.asarray(ann_samples, dtype=np.int64)
    symbols = np.asarray(ann_symbols)
    if samples.shape != symbols.shape:
        raise EcgError(
            f"annotations: {samples.size} samples but {symbols.size} symbols (must be equal)"
        )
    keep = np.isin(symbols, list(BEAT_SYMBOLS))
    return np.sort(samples[keep])


def vf_episodes(ann_samples: np.ndarray, ann_symbols: np.ndarray) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes ``[start, stop)`` from '[' and ']' annotations.

    EC57 does not score QRS detection inside these episodes (flutter waves are annotated
    '!', which is not a beat). An episode still open at the end of the record runs to the end
    (``stop`` = a very large number).
    """
    episodes: list[tuple[int, int]] = []
    start = None
    for s, sym in zip(np.asarray(ann_samples).tolist(), np.asarray(ann_symbols).tolist()):
        if sym == "[" and start is None:
            start = int(s)
        elif sym == "]" and start is not None:
            episodes.append((start, int(s) + 1))
            start = None
    if start is not None:
        episodes.append((start, np.iinfo(np.int64).max))
    return episodes


def match_beats(ref: np.ndarray, det: np.ndarray, tol: int) -> tuple[int, int, int, np.ndarray]:
    """One-to-one matching of detections to reference beats within ``tol`` samples.

    A two-pointer sweep in time order: each reference beat, earliest first, takes the earliest
    unused detection in ``[ref - tol, ref + tol]``. Since every window has the same width, this
    greedy rule matches as many pairs as any one-to-one assignment can (the interval-scheduling
    argument: a detection left of the current window is out of reach of every later beat too),
    so TP is maximal and no detection counts twice. When two beats compete for one detection,
    the earlier beat gets it, which may not be the nearer one: the counts are the same either way.

    Parameters
    ----------
    ref : reference beat positions (samples), any order
    det : detected beat positions (samples), any order
    tol : largest accepted distance in samples (inclusive)

    Returns
    -------
    tp : matched pairs
    fn : reference beats without a detection
    fp : detections without a reference beat
    pairs : int64 array (tp, 2) of matched ``(ref, det)`` positions, sorted by ``ref``
    """
    if tol < 0:
        raise EcgError(f"match_beats: tol must be >= 0 samples, got {tol}")
    r = np.sort(np.asarray(ref, dtype=np.int64).ravel()).tolist()
    d = np.sort(np.asarray(det, dtype=np.int64).ravel()).tolist()
    pairs = []
    j = 0
    for rv in r:
        while j < len(d) and d[j] < rv - tol:
            j += 1
        if j < len(d) and d[j] <= rv + tol:
            pairs.append((rv, d[j]))
            j += 1
    tp = len(pairs)
    out = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return tp, len(r) - tp, len(d) - tp, out


@dataclass
class QrsScore:
    """Counts and figures of one comparison (sum them over records for gross figures)."""

    tp: int
    fn: int
    fp: int

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN); nan without reference beats."""
        n = self.tp + self.fn
        return self.tp / n if n else float("nan")

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP); nan without detections."""
        n = self.tp + self.fp
        return self.tp / n if n else float("nan")

    def __add__(self, other: QrsScore) -> QrsScore:
        return QrsScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def _mask_outside(x: np.ndarray, start: int, stop: int | None, skip) -> np.ndarray:
    keep = x >= start
    if stop is not None:
        keep &= x < stop
    for a, b in skip:
        keep &= ~((x >= a) & (x < b))
    return x[keep]


def qrs_se_ppv(
    ref: np.ndarray,
    det: np.ndarray,
    fs: float,
    tol_s: float = MATCH_TOLERANCE_S,
    start: int = 0,
    stop: int | None = None,
    skip: list[tuple[int, int]] | tuple = (),
) -> QrsScore:
    """Score detections against reference beats: TP, FN, FP (and Se, +P as properties).

    Parameters
    ----------
    ref : reference beat positions in samples (see :func:`reference_beats`)
    det : detected R-peak positions in samples
    fs : sampling rate in Hz (converts ``tol_s`` to samples)
    tol_s : matching window in seconds (EC57: 0.150)
    start, stop : score only beats and detections in ``[start, stop)`` (e.g. ``start`` = a
        detector's learning period)
    skip : ``[a, b)`` sample ranges left out of the scoring on both sides (e.g. the VF
        episodes of :func:`vf_episodes`, as EC57 does)

    Returns
    -------
    QrsScore
    """
    if fs <= 0:
        raise EcgError(f"qrs_se_ppv: fs must be > 0 Hz, got {fs}")
    r = _mask_outside(np.asarray(ref, dtype=np.int64), start, stop, skip)
    d = _mask_outside(np.asarray(det, dtype=np.int64), start, stop, skip)
    tp, fn, fp, _ = match_beats(r, d, round(tol_s * fs))
    return QrsScore(tp, fn, fp)


def score_stream(
    ann_samples,
    ann_symbols,
    peaks,
    beat_samples,
    beat_pred,
    fs: float,
    start: int = 0,
    exclude=(),
    stop: int | None = None,
    shutdown=(),
) -> dict:
    """Score the detector and the end-to-end classification against reference annotations.

    QRS: every detected R peak against every reference beat, EC57 150 ms window, both on the
    whole scored part and without ventricular flutter episodes (as EC57 does).

    Classification (AAMI VEB/SVEB with :func:`ecgcnn.evaluation.aami.score`): each classified
    beat matched to a reference beat takes the reference label. Following EC57/bxb:
    a reference beat with no classified beat (missed by the detector, or too near the record
    edge for a window) is scored as predicted N, so a missed V or S beat is a false negative
    exactly as bxb's ``Vo``/``So`` (``VFN = Vn+Vs+Vf+Vq+Vo``); a classified beat with no
    reference beat is scored as reference N, so one called V or S is a false positive as
    bxb's ``Ov``/``Os`` (``VFP = Nv+Sv+Ov``) and one called N/F/Q is a true negative as in
    bxb's ``VTN``; extra beats inside ventricular flutter episodes are not counted (bxb's
    ``*``). Se and +P are therefore bxb's; the one difference is that a missed
    N/F/Q beat adds to TN here (bxb leaves ``No`` out of TN), so Spe and Acc read slightly
    high when the detector misses beats. Counts of missed and extra beats are reported.

    Parameters
    ----------
    ann_samples, ann_symbols : reference annotations
    peaks : every detected R peak
    beat_samples, beat_pred : classified beats and their class indices (``CLASSES`` order)
    fs : sampling rate
    start, stop : score only beats in ``[start, stop)`` (bxb ``-f``, ``-t``)
    exclude : reference beat samples to leave out (e.g. beats that were training data)
    shutdown : ``[a, b)`` spans the analyzer declared unreadable: detections and reference
        beats there are left out of every figure (bxb's "missed in shutdown" are not misses),
        so the figures are those of the decided beats
    """
    ann_samples, ann_symbols = np.asarray(ann_samples), np.asarray(ann_symbols)
    ref = reference_beats(ann_samples, ann_symbols)
    vf = vf_episodes(ann_samples, ann_symbols)
    shutdown = [tuple(map(int, ab)) for ab in shutdown]
    if shutdown:
        sd = lambda v: np.asarray(v, np.int64)[~_in_spans(np.asarray(v, np.int64), shutdown)]
        exclude = np.concatenate([np.asarray(exclude, np.int64), np.setdiff1d(ref, sd(ref))])
        keep = ~_in_spans(np.asarray(beat_samples, np.int64), shutdown)
        beat_samples, beat_pred = np.asarray(beat_samples)[keep], np.asarray(beat_pred)[keep]
    whole = qrs_se_ppv(ref, peaks, fs, start=start, stop=stop, skip=shutdown)
    ec57 = qrs_se_ppv(ref, peaks, fs, start=start, stop=stop, skip=list(vf) + shutdown)
    end = np.iinfo(np.int64).max if stop is None else stop
    is_beat = np.isin(ann_symbols, list(AAMI_MAP))
    r_smp, r_sym = ann_samples[is_beat], ann_symbols[is_beat]
    lut = {s: CLASSES.index(c) for s, c in AAMI_MAP.items()}
    r_cls = dict(zip(r_smp.tolist(), (lut[s] for s in r_sym.tolist())))
    keep_r = r_smp[(r_smp >= start) & (r_smp < end)]
    b_smp = np.asarray(beat_samples, dtype=np.int64)
    b_cls = dict(zip(b_smp.tolist(), np.asarray(beat_pred).tolist()))
    keep_b = b_smp[(b_smp >= start) & (b_smp < end)]
    _, _, _, pairs = match_beats(keep_r, keep_b, round(MATCH_TOLERANCE_S * fs))
    excl = set(np.asarray(exclude, dtype=np.int64).tolist())
    matched_r, matched_b = set(pairs[:, 0].tolist()), set(pairs[:, 1].tolist())
    y_true, y_pred = [], []
    for rv, dv in pairs.tolist():
        if rv not in excl:
            y_true.append(r_cls[rv])
            y_pred.append(b_cls[dv])
    missed = [r_cls[v] for v in keep_r.tolist() if v not in matched_r and v not in excl]
    # bxb does not count test beats inside reference-marked VF (its pseudo-label '*').
    in_vf = lambda v: any(a <= v < b for a, b in vf)
    extra = [b_cls[v] for v in keep_b.tolist() if v not in matched_b and not in_vf(v)]
    y_true += missed + [0] * len(extra)
    y_pred += [0] * len(missed) + extra
    out = score(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64))
    count = lambda ks: {c: int(sum(k == i for k in ks)) for i, c in enumerate(CLASSES)}
    out["missed_reference_by_class"] = count(missed)  # bxb's "o" column
    out["extra_detections_by_predicted_class"] = count(extra)  # bxb's "O" row
    qrs = {
        k: {"tp": s.tp, "fn": s.fn, "fp": s.fp, "se": s.se, "ppv": s.ppv}
        for k, s in (("whole", whole), ("ec57_no_vf", ec57))
    }
    return {
        "qrs": qrs,
        "classification": out,
        "from_s": start / fs,
        "to_s": None if stop is None else stop / fs,
    }


def _in_spans(v: np.ndarray, spans) -> np.ndarray:
    out = np.zeros(len(v), bool)
    for a, b in spans:
        out |= (v >= a) & (v < b)
    return out
