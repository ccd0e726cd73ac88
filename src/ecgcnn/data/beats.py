"""Beats: AAMI EC57 labels, RR features and fixed windows around each annotated R peak."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.ndimage as ndi

from ecgcnn.data.io import Record
from ecgcnn.data.preprocess import apply_filter, resample, resample_samples
from ecgcnn.errors import EcgError, check_settings

CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")

#: MIT-BIH beat symbol -> AAMI EC57 class (ANSI/AAMI EC57:1998, as used by de Chazal 2004).
AAMI_MAP: dict[str, str] = {
    **dict.fromkeys(["N", "L", "R", "e", "j"], "N"),
    **dict.fromkeys(["A", "a", "J", "S"], "S"),
    **dict.fromkeys(["V", "E"], "V"),
    "F": "F",
    **dict.fromkeys(["/", "f", "Q"], "Q"),
}

RR_FEATURES: tuple[str, ...] = (
    "pre_rr",  # s, this R peak minus the previous one
    "post_rr",  # s, next R peak minus this one (needs the next beat: one-beat delay online)
    "local_rr",  # s, mean of the last `rr_local` RR intervals up to this beat (causal)
    "long_rr",  # s, mean of the last `rr_long` RR intervals (the patient's running average)
    "pre_local",  # pre_rr / local_rr: prematurity, the main SVEB cue
    "post_local",  # post_rr / local_rr: compensatory pause after V and many S beats
    "pre_long",  # pre_rr / long_rr
    "local_cv",  # std / mean of the last `rr_local` RR intervals: irregular rhythm (AF) vs ectopy
    "pre_prev",  # pre_rr / the previous beat's pre_rr: abrupt prematurity
)

NORMALIZE = ("none", "beat_zscore", "beat_minmax", "record")
#: ``data.beat.template``: the plain windows, plus (add) or instead of (replace) each window
#: minus its running template (:func:`running_median` of the recent non-premature beats).
TEMPLATES = ("none", "add", "replace")


def check_data_config(d) -> None:
    """Refuse out-of-range ``data`` settings (``DataConfig``) before any record is read."""
    b = d.beat
    check_settings(
        [
            ("data.fs", d.fs, d.fs > 0, "> 0 Hz"),
            ("data.leads", list(d.leads), len(d.leads) > 0, "at least one lead name"),
            ("data.beat.before", b.before, b.before >= 0, ">= 0 samples"),
            ("data.beat.after", b.after, b.after > 0, "> 0 samples"),
            ("data.beat.length", b.length, b.length >= 2, ">= 2 samples"),
            ("data.beat.trio_before", b.trio_before, not b.trio or b.trio_before >= 0, ">= 0"),
            ("data.beat.trio_after", b.trio_after, not b.trio or b.trio_after > 0, "> 0"),
            ("data.beat.rr_local", b.rr_local, b.rr_local >= 1, ">= 1 beat"),
            ("data.beat.rr_long", b.rr_long, b.rr_long >= 1, ">= 1 beat"),
            ("data.beat.template_window", b.template_window, b.template_window >= 1, ">= 1"),
        ]
    )


@dataclass
class BeatSet:
    """Beats of one or more records, all arrays aligned on the first axis.

    Attributes
    ----------
    x : float32 (n, channels, length) windows; channels = leads x (beat [, trio])
    rr : float32 (n, len(RR_FEATURES)) RR features
    y : int64 (n,) index into ``CLASSES``
    sample : int64 (n,) R-peak sample at the model's rate
    record : (n,) record name per beat
    symbol : (n,) original MIT-BIH beat symbol
    """

    x: np.ndarray
    rr: np.ndarray
    y: np.ndarray
    sample: np.ndarray
    record: np.ndarray
    symbol: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx) -> BeatSet:
        return BeatSet(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(sets: list[BeatSet]) -> BeatSet:
        if not sets:
            raise EcgError("no beats: the selected records and split give an empty beat set")
        return BeatSet(
            **{f.name: np.concatenate([getattr(s, f.name) for s in sets]) for f in fields(BeatSet)}
        )

    def counts(self) -> dict[str, int]:
        binc = np.bincount(self.y, minlength=len(CLASSES))
        return {c: int(binc[i]) for i, c in enumerate(CLASSES)}

    def keys(self) -> np.ndarray:
        """Identity of each beat (record, sample) as strings, to test set membership."""
        return np.char.add(np.char.add(self.record.astype(str), ":"), self.sample.astype(str))


def rr_features(r: np.ndarray, fs: float, n_local: int, n_long: int) -> np.ndarray:
    """RR features for R peaks ``r`` (sorted samples) of one record.

    The first beat has no previous RR and the last no next RR: they borrow the neighbouring
    interval so every beat has features (those edge beats are usually dropped by the window).

    Returns
    -------
    float32 (n, len(RR_FEATURES)) array, columns as ``RR_FEATURES``.
    """
    n = len(r)
    if n < 2:
        raise EcgError(f"need at least 2 beats for RR features, got {n}")
    d = np.diff(r).astype(np.float64) / fs
    pre = np.concatenate([[d[0]], d])
    post = np.concatenate([d, [d[-1]]])

    def causal_mean(v: np.ndarray, k: int) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(v)])
        i = np.arange(1, len(v) + 1)
        lo = np.maximum(0, i - k)
        return (c[i] - c[lo]) / (i - lo)

    local = causal_mean(pre, n_local)
    long = causal_mean(pre, n_long)
    local_sq = causal_mean(pre**2, n_local)
    cv = np.sqrt(np.maximum(local_sq - local**2, 0.0)) / local
    prev = np.concatenate([[pre[0]], pre[:-1]])
    out = np.stack(
        [pre, post, local, long, pre / local, post / local, pre / long, cv, pre / prev], axis=1
    )
    return out.astype(np.float32)


def _windows(
    x: np.ndarray, centers: np.ndarray, before: int, after: int, length: int
) -> np.ndarray:
    """Windows [c - before, c + after) of a 1-D signal, linearly interpolated to ``length`` samples.

    Written by hand because it vectorizes over all beats at once (one gather), where calling
    scipy's resampler per beat costs a Python call each.
    """
    pos = centers[:, None] - before + np.linspace(0.0, before + after - 1, length)[None, :]
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, len(x) - 1)
    return x[i0] * (1 - frac) + x[i1] * frac


def running_median(
    x: np.ndarray,
    window: int,
    eligible: np.ndarray | None = None,
    history: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, ...)`` beats in time order -> for each beat the element-wise median of the last
    ``window`` eligible beats before it (not itself; causal, label-free). A beat with no
    eligible beat before it is its own reference. ``eligible``: boolean ``(n,)``, None = all.
    ``history``: eligible beats that came before ``x`` (a stream keeps the last ``window``), so
    that block by block gives the values of one call on the whole record."""
    if window < 1:
        raise EcgError(f"template window: need at least 1 beat, got {window}")
    if eligible is None:
        eligible = np.ones(len(x), bool)
    if len(eligible) != len(x):
        raise EcgError(f"template: {len(eligible)} eligibility flags for {len(x)} beats")
    h = 0 if history is None else min(len(history), window)
    if h:
        src_x = np.concatenate([history[len(history) - h :], x])
    else:
        src_x = x
    pool = np.concatenate([np.arange(h), h + np.flatnonzero(eligible)])
    if not len(pool):
        return x.copy()
    hi = np.searchsorted(pool, h + np.arange(len(x)))  # eligible beats before i: pool[:hi]
    idx = hi[:, None] - window + np.arange(window)[None, :]  # (n, window) into pool
    ok = idx >= 0
    src = pool[np.clip(idx, 0, None)]  # where not ok: a placeholder, masked below
    out = np.empty_like(x)
    full = ok.all(axis=1)  # a whole window of eligible beats before it
    whole = np.flatnonzero(full)
    for lo in range(0, len(whole), 512):  # bounded memory: (512, ..., window) at a time
        rows = whole[lo : lo + 512]
        # the window axis last and contiguous: numpy's partition along a strided axis is ~1.6x
        # slower (the values, and so the medians, are the same)
        out[rows] = median_last(np.ascontiguousarray(np.moveaxis(src_x[src[rows]], 1, -1)))
    for i in np.flatnonzero(~full):
        members = src[i][ok[i]]
        out[i] = np.median(src_x[members], axis=0) if len(members) else x[i]
    return out


def median_last(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)``, the same values, 2-5x faster on short axes: one partition
    at the lower middle (numpy partitions at both middles for an even length), the upper
    middle is the smallest value above it."""
    n = a.shape[-1]
    k = (n - 1) // 2
    p = np.partition(a, k, axis=-1)
    if n % 2:
        return p[..., k]
    return (p[..., k] + p[..., k + 1 :].min(axis=-1)) / 2


def template_mode(b) -> str:
    """``data.beat.template`` of beat settings ``b`` (``none`` when absent)."""
    return getattr(b, "template", "none")


def with_template(x: np.ndarray, rr: np.ndarray, b) -> np.ndarray:
    """Windows ``(n, C, T)`` of one record in time order as ``data.beat.template`` wants them:
    unchanged (none), followed by (add) or replaced by (replace) their differences from the
    running template; ``rr``: the beats' RR features (``pre_local`` gates the template)."""
    if template_mode(b) == "none":
        return x
    eligible = rr[:, RR_FEATURES.index("pre_local")] >= b.template_gate
    diffs = (x - running_median(x, int(b.template_window), eligible)).astype(np.float32)
    return np.concatenate([x, diffs], axis=1) if b.template == "add" else diffs


def plain_channels(data_cfg) -> int:
    """Channels of the plain windows: a beat window (and a trio window) per lead."""
    return len(data_cfg.leads) * (2 if data_cfg.beat.trio else 1)


def view_slice(prepared: str, view: str, plain_channels: int) -> slice:
    """The channels of input ``view`` (a ``TEMPLATES`` value) in windows prepared with
    ``data.beat.template = prepared``. ``add`` holds the others: its first ``plain_channels``
    channels are the plain windows, the rest their template differences."""
    if view == prepared:
        return slice(None)
    if prepared != "add" or view not in TEMPLATES:
        raise EcgError(
            f"views: '{view}' cannot be cut from beats prepared with "
            f"data.beat.template={prepared} (prepare with 'add')"
        )
    return slice(0, plain_channels) if view == "none" else slice(plain_channels, None)


def select_view(beats: BeatSet, prepared: str, view: str, plain_channels: int) -> BeatSet:
    """The beats as a model of input ``view`` sees them (see :func:`view_slice`)."""
    ch = view_slice(prepared, view, plain_channels)
    if ch == slice(None):
        return beats
    return BeatSet(
        **{
            f.name: getattr(beats, f.name)[:, ch] if f.name == "x" else getattr(beats, f.name)
            for f in fields(BeatSet)
        }
    )


def extract_beats(rec: Record, cfg) -> tuple[BeatSet, int]:
    """Filter a record and cut one window (plus optional trio) per AAMI-labelled beat.

    Parameters
    ----------
    rec : the record (any rate; resampled to ``cfg.fs`` when ``cfg.resample``)
    cfg : ``DataConfig``

    Returns
    -------
    (beats, dropped) where ``dropped`` counts beats too close to a record edge for a full window.
    """
    b = cfg.beat
    if b.before < 0 or b.after <= 0 or b.before + b.after < 2 or b.length < 2:
        raise EcgError(
            f"data.beat: window before={b.before}, after={b.after}, length={b.length} is empty"
        )
    sig, fs = rec.signal, rec.fs
    samples = rec.ann_samples
    if fs != cfg.fs:
        if not cfg.resample:
            raise EcgError(
                f"record {rec.name}: sampling rate {fs} Hz, expected {cfg.fs} Hz "
                "(data.resample=false refuses to resample)"
            )
        sig = resample(sig, fs, cfg.fs)
        samples = resample_samples(samples, fs, cfg.fs)
        fs = cfg.fs
    is_beat = np.isin(rec.ann_symbols, list(AAMI_MAP))
    if not is_beat.any():
        raise EcgError(f"record {rec.name}: annotation file has no beat annotations")
    r = samples[is_beat]
    sym = rec.ann_symbols[is_beat]
    rr = rr_features(r, fs, b.rr_local, b.rr_long)

    sig = apply_filter(sig, fs, cfg.filter)
    if b.normalize == "record":
        # Robust per-record scale: the median |R amplitude| maps to 1, so gain differences
        # between patients do not dominate while beat-to-beat amplitude changes survive.
        amp = np.median(np.abs(sig[np.clip(r, 0, len(sig) - 1)]), axis=0)
        sig = sig / np.where(amp > 1e-6, amp, 1.0)

    reach_before = max(b.before, b.trio_before if b.trio else 0)
    reach_after = max(b.after, b.trio_after if b.trio else 0)
    keep = (r - reach_before >= 0) & (r + reach_after <= len(sig))
    dropped = int((~keep).sum())
    rk = r[keep]

    chans = []
    for j in range(sig.shape[1]):
        lead = np.ascontiguousarray(sig[:, j], dtype=np.float32)
        chans.append(_windows(lead, rk, b.before, b.after, b.length))
        if b.trio:
            # Cheap anti-alias before the ~7x decimation of the trio window.
            k = max(1, int((b.trio_before + b.trio_after) / b.length))
            smooth = ndi.uniform_filter1d(lead, k, mode="nearest")
            chans.append(_windows(smooth, rk, b.trio_before, b.trio_after, b.length))
    x = np.stack(chans, axis=1).astype(np.float32)  # (n, leads x (1 + trio), length)
    if b.normalize == "beat_zscore":
        x = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6)
    elif b.normalize == "beat_minmax":
        lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
        x = (x - lo) / (hi - lo + 1e-6)

    x = with_template(x, rr[keep], b)

    lut = {s: CLASSES.index(c) for s, c in AAMI_MAP.items()}
    y = np.array([lut[s] for s in sym[keep]], dtype=np.int64)
    beats = BeatSet(
        x=x,
        rr=rr[keep],
        y=y,
        sample=rk.astype(np.int64),
        record=np.full(len(rk), rec.name, dtype="<U8"),
        symbol=sym[keep].astype("<U2"),
    )
    return beats, dropped


def class_counts_with_dropped(rec: Record) -> dict[str, int]:
    """AAMI class counts of every beat annotation of a record (kept or not)."""
    counts = dict.fromkeys(CLASSES, 0)
    for s in rec.ann_symbols:
        c = AAMI_MAP.get(str(s))
        if c:
            counts[c] += 1
    return counts
