"""AAMI EC57 beat-class scoring: VEB and SVEB gross, per-record and average statistics.

Classes are the five AAMI EC57 heartbeat classes, coded as integers in this order::

    0 N  normal (and bundle branch block, escape) beats
    1 S  supraventricular ectopic beats (SVEB)
    2 V  ventricular ectopic beats (VEB)
    3 F  fusion of ventricular and normal beats
    4 Q  unclassifiable (and, in MIT-BIH, paced) beats

Counting rules
--------------
The rules are those of the reference implementation of the ANSI/AAMI EC57 beat-by-beat
comparison, ``bxb`` (G. B. Moody, WFDB software package, PhysioNet, ``app/bxb.c``,
``print_results``), restricted to beats that both annotators label (our classifier labels
exactly the reference beats, so bxb's unmatched "O" and shutdown "X" pseudo-beats never occur).
Writing ``Xy`` for the number of beats with reference class X and predicted class y:

VEB (positive class V)
    TP = Vv;  FN = Vn + Vs + Vf + Vq;  FP = Nv + Sv;
    TN = every beat with reference in {N, S, F, Q} and prediction in {n, s, f, q}.
    Fv and Qv are counted as neither FP nor TN: EC57 does not penalise calling a fusion
    beat (or an unclassifiable beat) ventricular (bxb: ``VFP = Nv + Sv + Ov + Xv``).
SVEB (positive class S)
    TP = Ss;  FN = Sn + Sv + Sf + Sq;  FP = Ns + Vs + Fs;
    TN = every beat with reference in {N, V, F, Q} and prediction in {n, v, f, q}.
    Qs is counted as neither FP nor TN (bxb: ``SFP = Ns + Vs + Fs + Os + Xs``). bxb itself
    reports no SVEB TN or specificity; the TN above is the same construction as bxb's VEB TN
    (``VTN``), mirrored to the S column, so Spe = 1 - FPR with the same exclusions.

Se = TP/(TP+FN), PPV (+P) = TP/(TP+FP), Spe = TN/(TN+FP), Acc = (TP+TN)/(TP+TN+FP+FN).
These are the gross-statistics formulas that de Chazal et al. (IEEE TBME 51(7):1196-1206, 2004)
and Kiranyaz et al. (IEEE TBME 63(3):664-675, 2016) report against. A statistic whose
denominator is zero is ``None`` (bxb prints "-"), never NaN: e.g. a record without S beats
has SVEB Se None.

Gross statistics come from the summed confusion matrix, which is the matrix of all test beats
concatenated; "average" statistics are the unweighted mean of the per-record figures, skipping
records where a figure is undefined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from ecgcnn.data.beats import CLASSES
from ecgcnn.errors import EcgError

N, S, V, F, Q = range(5)
METRICS = ("Se", "PPV", "Spe", "Acc")
COUNTS = ("TP", "FN", "FP", "TN")

# Reference rows and predicted columns that make up the true negatives (see module docstring).
_VEB_TN = [N, S, F, Q]
_SVEB_TN = [N, V, F, Q]


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _check_cm(cm: np.ndarray, where: str = "confusion matrix") -> np.ndarray:
    cm = np.asarray(cm)
    if cm.shape != (len(CLASSES), len(CLASSES)):
        raise EcgError(f"{where}: shape {cm.shape}, expected (5, 5) for classes {CLASSES}")
    if not np.issubdtype(cm.dtype, np.integer) and not np.all(np.mod(cm, 1) == 0):
        raise EcgError(f"{where}: counts must be whole numbers")
    if np.any(cm < 0):
        raise EcgError(f"{where}: counts must be non-negative")
    return cm.astype(np.int64)


def _check_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise EcgError(f"{name}: expected a 1-D array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise EcgError(f"{name}: class indices must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise EcgError(f"{name}: class indices must lie in 0..4 ({'/'.join(CLASSES)})")
    return y.astype(np.int64)


def confusion(y_true, y_pred, n_classes: int = 5) -> np.ndarray:
    """Confusion matrix with rows = reference class, columns = predicted class.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_beats,)
        Reference and predicted AAMI class indices (0..4 = N, S, V, F, Q).
    n_classes : int
        Number of classes; must be 5 (the AAMI EC57 classes).

    Returns
    -------
    numpy.ndarray of int64, shape (5, 5)
        ``cm[i, j]`` = number of beats of reference class i predicted as class j; classes
        absent from both arrays still get their row and column.
    """
    if n_classes != len(CLASSES):
        raise EcgError(f"n_classes: {n_classes}, AAMI EC57 scoring needs exactly 5")
    y_true = _check_labels(y_true, "y_true")
    y_pred = _check_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise EcgError(f"y_pred: {y_pred.size} beats but y_true has {y_true.size}")
    if y_true.size == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).astype(np.int64)


def _stats(tp: int, fn: int, fp: int, tn: int) -> dict:
    return {
        "Se": _ratio(tp, tp + fn),
        "PPV": _ratio(tp, tp + fp),
        "Spe": _ratio(tn, tn + fp),
        "Acc": _ratio(tp + tn, tp + tn + fp + fn),
        "TP": tp,
        "FN": fn,
        "FP": fp,
        "TN": tn,
    }


def veb_sveb(cm) -> dict:
    """VEB and SVEB statistics of a 5x5 confusion matrix, by the AAMI EC57 counting rules.

    Rules (see the module docstring for the source, WFDB ``bxb``):
    VEB: TP = Vv, FN = V row minus Vv, FP = Nv + Sv (Fv and Qv not counted at all),
    TN = rows {N,S,F,Q} x columns {N,S,F,Q}.
    SVEB: TP = Ss, FN = S row minus Ss, FP = Ns + Vs + Fs (Qs not counted at all),
    TN = rows {N,V,F,Q} x columns {N,V,F,Q}.

    Parameters
    ----------
    cm : array_like of int, shape (5, 5)
        Rows = reference class, columns = predicted class, order N, S, V, F, Q.

    Returns
    -------
    dict
        ``{"VEB": {...}, "SVEB": {...}}``, each with ``Se``, ``PPV``, ``Spe``, ``Acc``
        (fractions in [0, 1], or ``None`` when the denominator is zero) and the integer
        counts ``TP``, ``FN``, ``FP``, ``TN``.
    """
    cm = _check_cm(cm)
    v_tp = int(cm[V, V])
    v_fn = int(cm[V].sum() - v_tp)
    v_fp = int(cm[N, V] + cm[S, V])
    v_tn = int(cm[np.ix_(_VEB_TN, _VEB_TN)].sum())
    s_tp = int(cm[S, S])
    s_fn = int(cm[S].sum() - s_tp)
    s_fp = int(cm[N, S] + cm[V, S] + cm[F, S])
    s_tn = int(cm[np.ix_(_SVEB_TN, _SVEB_TN)].sum())
    return {"VEB": _stats(v_tp, v_fn, v_fp, v_tn), "SVEB": _stats(s_tp, s_fn, s_fp, s_tn)}


def _block(cm: np.ndarray) -> dict:
    """Counts, confusion and VEB/SVEB statistics of one confusion matrix."""
    n = int(cm.sum())
    out = {"n_beats": n, "confusion": cm.tolist()}
    out.update(veb_sveb(cm))
    out["overall_accuracy"] = _ratio(int(np.trace(cm)), n)
    return out


def _mean_skip_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def combine(per_record: Mapping[str, np.ndarray]) -> dict:
    """Build the metrics payload from per-record confusion matrices.

    Parameters
    ----------
    per_record : mapping of str to array_like, shape (5, 5)
        Record name -> confusion matrix of that record's test beats.

    Returns
    -------
    dict
        The same payload as :func:`score` with ``records`` given: gross statistics of the
        summed matrix, ``per_record`` blocks (sorted by record name) and ``average``.
    """
    if not per_record:
        raise EcgError("per_record: no records to combine")
    cms = {str(name): _check_cm(cm, f"per_record[{name!r}]") for name, cm in per_record.items()}
    payload = _gross(sum(cms.values()))
    records = {name: _block(cms[name]) for name in sorted(cms)}
    for block in records.values():
        del block["overall_accuracy"]
    payload["per_record"] = records
    payload["average"] = {
        kind: {m: _mean_skip_none([r[kind][m] for r in records.values()]) for m in METRICS}
        for kind in ("VEB", "SVEB")
    }
    return payload


def _gross(cm: np.ndarray) -> dict:
    block = _block(cm)
    return {
        "classes": list(CLASSES),
        "confusion": block["confusion"],
        "n_beats": block["n_beats"],
        "VEB": block["VEB"],
        "SVEB": block["SVEB"],
        "overall_accuracy": block["overall_accuracy"],
    }


def score(y_true, y_pred, records=None) -> dict:
    """Score beat predictions the AAMI EC57 way; returns the ``metrics.json`` payload.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n_beats,)
        Reference and predicted class indices (0..4 = N, S, V, F, Q).
    records : array_like of str, shape (n_beats,), optional
        Record name of each beat. When given, the payload also holds ``per_record`` blocks
        and the ``average`` over records.

    Returns
    -------
    dict
        JSON-serialisable: ``classes``, ``confusion`` (5x5 list of ints), ``n_beats``,
        ``VEB`` and ``SVEB`` (``Se``, ``PPV``, ``Spe``, ``Acc`` as fractions or None, plus
        ``TP``/``FN``/``FP``/``TN``), ``overall_accuracy``; with ``records`` also
        ``per_record`` (name -> ``n_beats``, ``confusion``, ``VEB``, ``SVEB``) and
        ``average`` (``VEB``/``SVEB`` means over records, skipping None).
    """
    cm = confusion(y_true, y_pred)
    if records is None:
        return _gross(cm)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    records = np.asarray(records).astype(str)
    if records.shape != y_true.shape:
        raise EcgError(f"records: {records.size} names but {y_true.size} beats")
    per_record = {
        name: confusion(y_true[records == name], y_pred[records == name])
        for name in np.unique(records)
    }
    return combine(per_record)


#: Multipliers of one class's probability in :func:`prior_sweep` (1/16 ... 64).
PRIOR_WEIGHTS: tuple[float, ...] = tuple(2.0**k for k in range(-4, 7))


def prior_sweep(y_true, proba, weights: Sequence[float] = PRIOR_WEIGHTS) -> dict:
    """Operating points of a classifier's probabilities: for each weight ``w``, the gross VEB
    statistics when every beat's V probability is multiplied by ``w`` before the argmax (a
    shift of the V prior; ``w = 1`` is the plain argmax), and the same for SVEB with S.

    Parameters
    ----------
    y_true : array_like of int, shape (n_beats,)
        Reference classes (0..4 = N, S, V, F, Q).
    proba : array_like of float, shape (n_beats, 5)
        Class probabilities (or any non-negative scores) in the order of ``CLASSES``.
    weights : the multipliers, each > 0

    Returns
    -------
    dict
        ``{"VEB": [{"w", "Se", "PPV", "Spe", "Acc"}, ...], "SVEB": [...]}``, one point per
        weight, in the order of ``weights``.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape != (len(y), len(CLASSES)):
        raise EcgError(f"proba: shape {p.shape}, expected ({len(y)}, {len(CLASSES)})")
    if any(not w > 0 for w in weights):
        raise EcgError(f"weights: each must be > 0, got {list(weights)}")
    out = {}
    for kind, cls in (("VEB", V), ("SVEB", S)):
        points = []
        for w in weights:
            scaled = p.copy()
            scaled[:, cls] *= w
            st = veb_sveb(confusion(y, scaled.argmax(1)))[kind]
            points.append({"w": float(w), **{m: st[m] for m in METRICS}})
        out[kind] = points
    return out
