"""Streaming beat extraction and classification: raw chunks in, classified beats out.

:class:`BeatStream` turns a live ECG (chunks of raw samples, no annotations) into the same
beat windows and RR features that :func:`ecgcnn.data.beats.extract_beats` cuts offline around
the same R peaks, so a model trained on annotated beats sees what it was trained on:

* R peaks come from :class:`~ecgcnn.monitor.qrs.StreamingQRSDetector` on the raw first lead;
* the zero-phase filter (``sosfiltfilt``, non-causal) is applied to a segment of the ring
  buffer reaching ``margin`` samples beyond the beat's windows on both sides. The offline
  filter's output at a sample depends on samples ``Δt`` away with a weight that decays like
  the band-pass's slowest pole (0.5 Hz: about ``exp(-2.2 Δt/s)``), so a 4 s margin keeps the
  difference to the whole-record filter below 1e-3 mV (measured on MIT-BIH). The segment of
  a beat depends on its R peak only, never on how the stream was chunked, so the output is
  the same for every chunk size. At the record start and end the segment stops at the
  record's edge, exactly where the offline filter does;
* a beat leaves once its windows, the right filter margin and the next R peak (for
  ``post_rr``) have arrived: the structural delay is about ``reach_after + margin`` (5.2 s with
  the default trio window and margin), or the next beat's detection if that comes later;
* RR features are ``rr_features`` of the detected R peaks (causal local and long means; the
  first beat borrows the next interval, the last one the previous, as offline).

:func:`~ecgcnn.monitor.replay.replay` (re-exported here) drives a stream chunk by chunk
through a classifier and an optional alarm engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ecgcnn.data.beats import (
    NORMALIZE,
    RR_FEATURES,
    _windows,
    plain_channels,
    rr_features,
    running_median,
    template_mode,
)
from ecgcnn.errors import EcgError
from ecgcnn.monitor.filtering import StreamFilter
from ecgcnn.monitor.qrs import StreamingQRSDetector
from ecgcnn.monitor.replay import StreamResult, replay, softmax  # noqa: F401  (re-exported)
from ecgcnn.synthesis.normalize import (
    BEAT_SCALES,
    beat_ptp,
    running_scale,
    unit_scale,
)

#: ``classifier(beats (B, C, T) float32, rr (B, n_rr) float32) -> probabilities (B, K)``.
Classifier = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class BeatBatch:
    """Beats that became ready together (aligned on the first axis)."""

    sample: np.ndarray  # int64 (n,) R-peak sample
    x: np.ndarray  # float32 (n, C, T) windows, as extract_beats
    rr: np.ndarray  # float32 (n, 7) RR features, as rr_features
    ready: np.ndarray  # int64 (n,) stream length when the beat was emitted

    def __len__(self) -> int:
        return int(self.sample.shape[0])


#: The zero-shot input settings the stream computes (names as in ``ZeroShotConfig``).
_ZEROSHOT = ("beat_scale", "scale_window", "template", "template_window", "template_gate")


def _empty_batch(channels: int, length: int) -> BeatBatch:
    return BeatBatch(
        np.zeros(0, np.int64),
        np.zeros((0, channels, length), np.float32),
        np.zeros((0, len(RR_FEATURES)), np.float32),
        np.zeros(0, np.int64),
    )


def _plain(node) -> dict:
    from omegaconf import OmegaConf

    return (
        OmegaConf.to_container(node, resolve=True)
        if OmegaConf.is_config(node)
        else dict(vars(node) if not isinstance(node, dict) else node)
    )


class BeatStream:
    """Online R-peak detection plus beat windows and RR features equal to ``extract_beats``.

    The one implementation of the beat pipeline: ``ecgcnn-monitor`` feeds it live chunks,
    ``ecgcnn-analyze`` a whole recording in large blocks, and the beats are the same (every
    stage is chunk-invariant).

    Parameters
    ----------
    data_cfg : ``DataConfig`` the model was trained with (``fs``, ``filter``, ``beat``, ``leads``;
        ``beat.beat_scale`` / ``beat.scale_window``: a zero-shot model's running amplitude scale)
    fs : sampling rate of the stream in Hz (must equal ``data_cfg.fs``)
    n_leads : leads per sample; R peaks are detected on the first
    margin_s : backward-filter margin beyond each filter block (see ``monitor.filtering``)
    detector : keyword arguments for :class:`StreamingQRSDetector`
    block_s : filter grid block
    zeroshot : a zero-shot checkpoint's input settings (``ZeroShotConfig`` names:
        ``beat_scale``, ``scale_window``, ``template`` (its view), ``template_window``,
        ``template_gate``), computed causally here as ``synthesis.normalize`` does offline

    Attributes
    ----------
    delay_samples : int
        Least wait after an R peak for its windows and their final filtered samples (the
        filter's margin beyond them); up to one filter block more, by where R falls on the grid.
    peaks : list[int]
        Every R peak detected so far.
    dropped : int
        Beats too close to the record start or end for a full window (as ``extract_beats``).
    """

    def __init__(
        self,
        data_cfg,
        fs: float,
        n_leads: int = 1,
        margin_s: float = 4.0,
        detector: dict | None = None,
        block_s: float = 1.0,
        zeroshot: dict | None = None,
    ) -> None:
        b = data_cfg.beat
        if float(fs) != float(data_cfg.fs):
            raise EcgError(
                f"fs: stream at {fs} Hz but the model expects {data_cfg.fs} Hz "
                "(the monitor does not resample a live stream)"
            )
        if b.normalize not in NORMALIZE or b.normalize == "record":
            raise EcgError(
                f"data.beat.normalize: '{b.normalize}' needs the whole record; the "
                "monitor supports none, beat_zscore and beat_minmax"
            )
        if margin_s < 0:
            raise EcgError(f"margin_s: must be >= 0 s, got {margin_s}")
        if len(data_cfg.leads) != n_leads:
            raise EcgError(
                f"leads: the model takes {len(data_cfg.leads)} lead(s) "
                f"{list(data_cfg.leads)}, the stream has {n_leads}"
            )
        # Plain copies: OmegaConf attribute access costs ~50 us, far more than a beat's maths.
        self.beat = SimpleNamespace(**_plain(b))
        if zeroshot:
            zs = _plain(zeroshot)
            self.beat.__dict__.update({k: zs[k] for k in _ZEROSHOT if k in zs})
        self.fs, self.n_leads = float(fs), int(n_leads)
        self.filter = StreamFilter(
            _plain(data_cfg.filter), self.fs, self.n_leads, block_s, margin_s
        )
        b = self.beat
        self.scale = getattr(b, "beat_scale", "none")
        if self.scale not in BEAT_SCALES:
            raise EcgError(
                f"data.beat.beat_scale: unknown '{self.scale}' ({' | '.join(BEAT_SCALES)})"
            )
        self.scale_window = int(getattr(b, "scale_window", 60))
        self.template = template_mode(b)
        self.template_window = int(getattr(b, "template_window", 30))
        if min(self.scale_window, self.template_window) < 1:
            raise EcgError("data.beat.scale_window / template_window: need at least 1 beat")
        self.before = max(b.before, b.trio_before if b.trio else 0)
        self.after = max(b.after, b.trio_after if b.trio else 0)
        # Same anti-alias width as extract_beats uses before decimating the trio window.
        self.trio_k = max(1, int((b.trio_before + b.trio_after) / b.length)) if b.trio else 0
        self.reach = self.after + self.trio_k + 1  # filtered samples a beat needs after R
        self.margin = self.filter.margin
        self.delay_samples = self.reach + self.filter.margin
        self.plain_channels = plain_channels(data_cfg)  # n_leads, checked above
        self.channels = self.plain_channels * (2 if self.template == "add" else 1)
        self.detector = StreamingQRSDetector(fs, **(detector or {}))
        self.peaks: list[int] = []
        self.dropped = 0
        self._n = 0  # samples received
        self._next = 0  # index in peaks of the next beat to emit
        self._flushed = False
        # causal state of the per-beat normalisation: the amplitudes of the last beats
        # (running scale) and the last eligible windows (running template)
        self._ptp = np.zeros(0, np.float32)
        self._history = np.zeros((0, self.plain_channels, b.length), np.float32)

    # ------------------------------------------------------------------------ public API
    def push(self, chunk: np.ndarray) -> BeatBatch:
        """Feed raw samples ``(n,)`` or ``(n, n_leads)`` in mV; return the beats now ready."""
        if self._flushed:
            raise EcgError("BeatStream.push: stream already flushed")
        x = np.asarray(chunk, dtype=np.float32)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.n_leads:
            raise EcgError(
                f"BeatStream.push: expected (n, {self.n_leads}) samples, got {np.shape(chunk)}"
            )
        if x.shape[0] == 0:
            return _empty_batch(self.channels, self.beat.length)
        self._n += x.shape[0]
        self.peaks.extend(self.detector.push(x[:, 0]))
        self.filter.push(x)
        return self._emit(final=False)

    def flush(self) -> BeatBatch:
        """End of stream: emit the remaining beats (the last borrows its post-RR)."""
        if self._flushed:
            return _empty_batch(self.channels, self.beat.length)
        self.peaks.extend(self.detector.flush())
        self.filter.flush()
        out = self._emit(final=True)
        self._flushed = True
        return out

    @property
    def n_samples(self) -> int:
        return self._n

    # ------------------------------------------------------------------------ emission
    def _emit(self, final: bool) -> BeatBatch:
        r = self.peaks
        if len(r) < 2:  # no RR interval yet (or ever, for a stream with one beat)
            return _empty_batch(self.channels, self.beat.length)
        i0 = i = self._next
        if final:
            i = len(r)
        else:  # a beat needs the next R peak (post_rr) and its final filtered samples
            ready = self.filter.ready - self.reach
            while i + 1 < len(r) and r[i] <= ready:
                i += 1
        self._next = i
        idx = np.arange(i0, i)
        centers = np.asarray(r[i0:i], dtype=np.int64)
        keep = (centers - self.before >= 0) & (centers + self.after <= self._n)
        self.dropped += int((~keep).sum())
        out = (
            self._cut(idx[keep], centers[keep], final)
            if keep.any()
            else _empty_batch(self.channels, self.beat.length)
        )
        self._trim()
        return out

    def _rr(self, idx: np.ndarray) -> np.ndarray:
        """``rr_features`` of the detected peaks, computed on a tail just long enough.

        Calling ``rr_features`` itself (not a copy of its formulas) keeps the features the
        model was trained on, whatever they become. Beat ``i`` depends on the intervals
        before it up to ``rr_long`` back (causal means) and on the next one; starting the tail
        ``rr_long + 2`` peaks earlier leaves the borrowed first interval out of every mean, so
        the values equal those of the whole-record call up to float rounding.
        """
        b = self.beat
        lo = max(0, int(idx[0]) - max(b.rr_long, b.rr_local) - 2)
        hi = min(len(self.peaks), int(idx[-1]) + 2)
        feats = rr_features(
            np.asarray(self.peaks[lo:hi], dtype=np.int64), self.fs, b.rr_local, b.rr_long
        )
        return feats[idx - lo]

    def _cut(self, idx: np.ndarray, centers: np.ndarray, final: bool) -> BeatBatch:
        b = self.beat
        x = self._windows(centers, final)
        if b.normalize == "beat_zscore":
            x = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6)
        elif b.normalize == "beat_minmax":
            mn, mx = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
            x = (x - mn) / (mx - mn + 1e-6)
        x = x.astype(np.float32)
        if self.scale == "std":
            x = unit_scale(x)
        elif self.scale == "running":
            x, self._ptp = (
                running_scale(x, self.scale_window, history=self._ptp),
                np.concatenate([self._ptp, beat_ptp(x)])[-self.scale_window :],
            )
        ready = np.full(len(idx), self._n, dtype=np.int64)
        rr = self._rr(idx)
        return BeatBatch(centers, self._templated(x, rr), rr, ready)

    def _templated(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        """``data.beat.template`` applied online: each beat minus the median of the eligible
        beats before it (the same values as ``extract_beats`` on the same peaks)."""
        if self.template == "none":
            return x
        ok = rr[:, RR_FEATURES.index("pre_local")] >= self.beat.template_gate
        hist = self._history
        ref = running_median(x, self.template_window, ok, history=hist)
        self._history = np.concatenate([hist, x[ok]])[-self.template_window :]
        diffs = (x - ref).astype(np.float32)
        return np.concatenate([x, diffs], axis=1) if self.template == "add" else diffs

    def _windows(self, centers: np.ndarray, final: bool) -> np.ndarray:
        """Plain windows ``(B, plain_channels, length)`` cut from the filtered signal."""
        b, f = self.beat, self.filter
        rel = centers - f.out0
        last = f.ready - 1 - f.out0 if final else f.out.shape[1] - 1  # 'nearest' at the end
        chans = []
        for j in range(self.n_leads):
            lead = f.out[j]
            chans.append(_windows(lead, rel, b.before, b.after, b.length))
            if b.trio:
                chans.append(self._trio(lead, rel, -f.out0, last))
        return np.stack(chans, axis=1)

    def _trio(self, lead: np.ndarray, rel: np.ndarray, first: int, last: int) -> np.ndarray:
        """``_windows`` of ``uniform_filter1d(lead, trio_k, mode="nearest")`` over the stretch
        these windows cover. Each moving mean is a sum of the same ``trio_k`` samples in the
        same order, whatever the chunking (a running sum would carry its rounding along)."""
        b, k = self.beat, self.trio_k
        r0 = max(first, int(rel.min()) - b.trio_before - 1)
        r1 = min(last + 1, int(rel.max()) + b.trio_after + 2)
        idx = np.arange(r0, r1)
        acc = np.zeros(r1 - r0)
        for tap in range(-(k // 2), k - k // 2):  # ndimage's window: [i - k//2, i - k//2 + k)
            acc += lead[np.clip(idx + tap, first, last)]
        smooth = (acc / k).astype(np.float32)
        return _windows(smooth, rel - r0, b.trio_before, b.trio_after, b.length)

    def _trim(self) -> None:
        # Keep what the next beat to emit, or any beat the detector may still return
        # (up to its worst-case delay back), needs for its window.
        oldest = self._n - self.detector.max_delay_samples
        if self._next < len(self.peaks):
            oldest = min(oldest, self.peaks[self._next])
        self.filter.trim(max(0, oldest - self.before - self.trio_k - 2))
