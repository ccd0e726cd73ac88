"""Abnormal-beat synthesis (ABS) filters after Kiranyaz, Ince, Hamila & Gabbouj, "Personalized
Monitoring and Advance Warning System for Cardiac Arrhythmias", Sci Rep 7:9270 (2017).

A patient's abnormal beat ``y`` is modelled as the output of a linear degradation system fed
with that patient's average normal beat ``x``: ``y = h * x``. One FIR filter ``h`` is fitted per
abnormal beat of the library patients (Tikhonov-regularised least squares); applying the
library to a *new* person's normal beats gives that person's potential abnormal beats.

Every channel of the beat windows (beat, beat trio) gets its own filter, so the trio channel
is synthesized the same way as the beat channel (it then carries the library beat's
prematurity, consistent with the RR ratios stored with the filter).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.linalg as sla

from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.errors import EcgError

#: Scale-free RR features of the source abnormal beat, kept with its filter and given to the
#: synthetic beats (the seconds-valued ones are rebuilt from the person's own RR).
RR_RATIOS: tuple[str, ...] = tuple(
    f for f in ("pre_local", "post_local", "local_cv", "pre_prev") if f in RR_FEATURES
)
_RATIO_IDX = [RR_FEATURES.index(f) for f in RR_RATIOS]


# ----------------------------------------------------------------------------- core
def convolution_matrix(x: np.ndarray, taps: int) -> np.ndarray:
    """Matrix ``X`` (L, taps) with ``X @ h == apply_fir(x, h)`` for a centered (non-causal) FIR.

    ``X[n, k] = x[n + c - k]`` with ``c = taps // 2`` and zeros outside the window, i.e. the
    'same' part of the full convolution (``np.convolve(x, h, "same")`` for odd ``taps``).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or taps < 1 or taps % 2 == 0:
        raise EcgError(
            f"abs.taps: need a 1-D beat and an odd filter length, got "
            f"x.shape={x.shape}, taps={taps}"
        )
    c = taps // 2
    n = len(x)
    col = np.zeros(n)
    col[: max(0, n - c)] = x[c:]
    row = np.zeros(taps)
    m = min(taps, c + 1)
    row[:m] = x[c::-1][:m]
    return sla.toeplitz(col, row)


def fit_fir(x_normal: np.ndarray, y_abnormal: np.ndarray, taps: int, ridge: float) -> np.ndarray:
    """Regularised least-squares FIR filter ``h`` (taps,) with ``apply_fir(x_normal, h) ~ y``.

    Solves ``(XᵀX + λI) h = Xᵀy`` (scipy.linalg.solve, symmetric positive definite). ``λ`` is
    ``ridge`` times the mean diagonal of ``XᵀX`` so the setting does not depend on the beat's
    amplitude (mV) or length: ``ridge = 0.01`` damps directions carrying < 1 % of the energy.
    """
    x = np.asarray(x_normal, dtype=np.float64)
    y = np.asarray(y_abnormal, dtype=np.float64)
    if x.shape != y.shape:
        raise EcgError(f"fit_fir: normal beat {x.shape} and abnormal beat {y.shape} differ")
    if ridge < 0:
        raise EcgError(f"abs.ridge: must be >= 0, got {ridge}")
    X = convolution_matrix(x, taps)
    g = X.T @ X
    lam = ridge * np.trace(g) / taps
    if lam == 0.0:
        return sla.lstsq(X, y)[0]
    return sla.solve(g + lam * np.eye(taps), X.T @ y, assume_a="pos")


def apply_fir(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Filter beat(s) ``x`` (..., L) with centered FIR(s) ``h`` (..., taps); leading axes broadcast.

    Written as a gather + product instead of a scipy call per beat so that thousands of
    (beat, filter) pairs go through in one vectorised step.
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    taps, n = h.shape[-1], x.shape[-1]
    c = taps // 2
    pad = np.zeros(x.shape[:-1] + (n + 2 * c,))
    pad[..., c : c + n] = x
    # window j of pad, reversed, against h: y[n] = sum_k h[k] x[n + c - k]
    idx = np.arange(n)[:, None] + (2 * c - np.arange(taps))[None, :]  # (L, taps)
    return np.einsum("...lk,...k->...l", pad[..., idx], h)


# ----------------------------------------------------------------------------- library
@dataclass
class FilterLibrary:
    """ABS filters, one row per abnormal library beat.

    Attributes
    ----------
    h : float32 (n, channels, taps) one FIR per channel
    y : int64 (n,) class index into ``CLASSES`` (S or V)
    record : (n,) source record (the library patient)
    sample : int64 (n,) R-peak sample of the source abnormal beat
    rr_ratio : float32 (n, len(RR_RATIOS)) the source beat's scale-free RR features
    residual : float32 (n,) relative fit error ||y - h*x|| / ||y|| on the beat channel
    """

    h: np.ndarray
    y: np.ndarray
    record: np.ndarray
    sample: np.ndarray
    rr_ratio: np.ndarray
    residual: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx) -> FilterLibrary:
        return FilterLibrary(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def counts(self) -> dict[str, int]:
        return {
            c: int((self.y == CLASSES.index(c)).sum())
            for c in CLASSES
            if (self.y == CLASSES.index(c)).any()
        }


def average_normal(beats: BeatSet) -> np.ndarray:
    """Mean window (channels, L) of the N beats of ``beats``; no N beat is an error."""
    normal = beats.y == CLASSES.index("N")
    if not normal.any():
        raise EcgError(
            f"records {sorted(set(beats.record.tolist()))}: no normal (N) beat to average"
        )
    return beats.x[normal].mean(axis=0)


def build_library(
    beats: dict[str, BeatSet],
    records: list[str],
    exclude: str | None,
    taps: int,
    ridge: float,
    per_patient: int,
    seed: int,
    classes: tuple[str, ...] = ("S", "V"),
    max_residual: float = 1.0,
) -> FilterLibrary:
    """Fit ABS filters on ``records`` minus ``exclude`` (the test person: leave-one-out).

    Parameters
    ----------
    beats : record -> prepared beats
    records : library patients
    exclude : the person the library is for; never contributes a filter
    taps, ridge : FIR length (odd) and relative Tikhonov weight (see :func:`fit_fir`)
    per_patient : at most this many abnormal beats per class and patient (drawn with ``seed``)
    classes : abnormal classes that get filters
    max_residual : filters whose relative fit error on the beat channel exceeds this are
        dropped (the degradation model does not explain that beat, so it would synthesize a
        beat unlike the one it stands for); 1.0 keeps all (a ridge fit never does worse than
        h = 0, whose error is 1)

    Returns
    -------
    FilterLibrary; every filter maps its own patient's average normal beat to one of that
    patient's abnormal beats.
    """
    rng = np.random.default_rng(seed)
    rows = {f.name: [] for f in fields(FilterLibrary)}
    for rec in records:
        if rec == exclude:
            continue
        if rec not in beats:
            raise EcgError(f"zeroshot.library_records: record {rec} has no prepared beats")
        b = beats[rec]
        if not (b.y == CLASSES.index("N")).any():
            continue  # a patient without normal beats has no degradation to learn from
        xn = average_normal(b)
        for cls in classes:
            idx = np.flatnonzero(b.y == CLASSES.index(cls))
            if len(idx) > per_patient:
                idx = np.sort(rng.choice(idx, size=per_patient, replace=False))
            for i in idx:
                hs = [fit_fir(xn[ch], b.x[i, ch], taps, ridge) for ch in range(b.x.shape[1])]
                fit = apply_fir(xn[0], hs[0])
                err = np.linalg.norm(fit - b.x[i, 0]) / max(np.linalg.norm(b.x[i, 0]), 1e-9)
                rows["h"].append(np.stack(hs))
                rows["y"].append(CLASSES.index(cls))
                rows["record"].append(rec)
                rows["sample"].append(b.sample[i])
                rows["rr_ratio"].append(b.rr[i, _RATIO_IDX])
                rows["residual"].append(err)
    if not 0.0 < max_residual:
        raise EcgError(f"abs.max_residual: must be > 0, got {max_residual}")
    keep = np.asarray(rows["residual"]) <= max_residual
    rows = {k: [v for v, ok in zip(vals, keep) if ok] for k, vals in rows.items()}
    if not rows["y"]:
        raise EcgError(
            f"zeroshot.library_records: no {'/'.join(classes)} beat outside "
            f"record {exclude} with an ABS fit error <= {max_residual}"
        )
    lib = FilterLibrary(
        h=np.asarray(rows["h"], np.float32),
        y=np.asarray(rows["y"], np.int64),
        record=np.asarray(rows["record"], dtype="<U8"),
        sample=np.asarray(rows["sample"], np.int64),
        rr_ratio=np.asarray(rows["rr_ratio"], np.float32),
        residual=np.asarray(rows["residual"], np.float32),
    )
    if exclude is not None and (lib.record == exclude).any():  # the leave-one-out promise
        raise EcgError(f"ABS library: record {exclude} contributed filters to its own library")
    return lib


# ----------------------------------------------------------------------------- synthesis
def synthesize(
    normals: BeatSet,
    lib: FilterLibrary,
    n_per_class: dict[str, int],
    seed: int,
    from_average: float = 0.5,
    scale: float = 0.0,
    noise: float = 0.0,
    shift: int = 0,
    rr_mode: str = "source",
) -> BeatSet:
    """A person's potential abnormal beats: the library's filters applied to their normal beats.

    Parameters
    ----------
    normals : the person's real normal beats (only N; the caller guarantees where they come from)
    lib : ABS filters (from other patients)
    n_per_class : class name -> number of synthetic beats; filters of a class are used in turn
        (a random permutation, repeated), so each filter contributes about equally
    from_average : fraction of synthetic beats made from the person's average normal beat; the
        rest start from one of their individual normal beats (beat-to-beat variety)
    scale, noise, shift : augmentation of the synthetic windows: amplitude factor 1 ± scale,
        Gaussian noise std (mV), circular shift of the beat channel by up to ``shift`` samples
    rr_mode : ``source``: every scale-free RR feature is the source beat's; ``ectopic``:
        prematurity (``pre_local``, ``post_local``) is the source beat's, the rhythm context is
        the person's: one premature beat in their own rhythm, so ``pre_prev = pre_local`` and
        ``local_cv`` is their normal beat's with one interval of ``pre_local`` mixed in

    Returns
    -------
    BeatSet with ``record = "~<source record>"``, ``symbol = "~S"``/``"~V"`` and ``sample = -1``:
    a synthetic beat can never be mistaken for a real beat of any record. RR features are the
    person's own (local and long-term RR of a random normal beat of theirs) scaled by the
    filter's recorded ratios: ``pre_rr = local_rr * pre_local`` etc.; the other scale-free
    features (``RR_RATIOS``) are the source beat's.
    """
    if (normals.y != CLASSES.index("N")).any():
        raise EcgError("synthesize: the person's template beats must all be normal (N)")
    if not 0.0 <= from_average <= 1.0:
        raise EcgError(f"synth.from_average: must be in [0, 1], got {from_average}")
    rng = np.random.default_rng(seed)
    avg = average_normal(normals)
    parts = []
    for cls, n in n_per_class.items():
        if n <= 0:
            continue
        pool = np.flatnonzero(lib.y == CLASSES.index(cls))
        if len(pool) == 0:
            raise EcgError(f"synth.n_per_class: the ABS library has no {cls} filter")
        fi = np.concatenate([rng.permutation(pool) for _ in range(-(-n // len(pool)))])[:n]
        src = rng.integers(0, len(normals), n)
        templ = np.where((rng.random(n) < from_average)[:, None, None], avg[None], normals.x[src])
        x = apply_fir(templ, lib.h[fi]).astype(np.float32)  # (n, C, L)
        if scale > 0:
            x *= (1 + scale * rng.uniform(-1, 1, (n, 1, 1))).astype(np.float32)
        if noise > 0:
            x += rng.normal(0, noise, x.shape).astype(np.float32)
        if shift > 0:
            for i, s in enumerate(rng.integers(-shift, shift + 1, n)):
                x[i, 0] = np.roll(x[i, 0], s)
        rr = normals.rr[rng.integers(0, len(normals), n)].copy()  # the person's RR context
        own_cv = rr[:, RR_FEATURES.index("local_cv")].copy() if "local_cv" in RR_FEATURES else None
        rr[:, _RATIO_IDX] = lib.rr_ratio[fi]
        col = {f: i for i, f in enumerate(RR_FEATURES)}
        if rr_mode == "ectopic":
            p = rr[:, col["pre_local"]]
            if "pre_prev" in col:
                rr[:, col["pre_prev"]] = p
            if own_cv is not None:
                # one of m ~ rr_local (10) intervals replaced by p (in units of the mean):
                # variance grows by (1 - p)^2 (m - 1) / m^2, the mean drops by (1 - p) / m
                m = 10.0
                var = own_cv**2 + (1 - p) ** 2 * (m - 1) / m**2
                rr[:, col["local_cv"]] = np.sqrt(var) / (1 - (1 - p) / m)
        elif rr_mode != "source":
            raise EcgError(f"synth.rr_mode: unknown '{rr_mode}' (source | ectopic)")
        local, long = rr[:, col["local_rr"]], rr[:, col["long_rr"]]
        rr[:, col["pre_rr"]] = local * rr[:, col["pre_local"]]
        rr[:, col["post_rr"]] = local * rr[:, col["post_local"]]
        rr[:, col["pre_long"]] = rr[:, col["pre_rr"]] / long
        parts.append(
            BeatSet(
                x=x,
                rr=rr.astype(np.float32),
                y=np.full(n, CLASSES.index(cls), np.int64),
                sample=np.full(n, -1, np.int64),
                record=np.char.add("~", lib.record[fi]).astype("<U8"),
                symbol=np.full(n, f"~{cls}", dtype="<U2"),
            )
        )
    return BeatSet.concat(parts)
