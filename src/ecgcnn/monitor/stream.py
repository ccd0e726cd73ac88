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

:func:`replay` drives a stream chunk by chunk (full speed or paced to real time) through a
classifier and an optional alarm engine, and times each beat's decision.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import scipy.ndimage as ndi
import scipy.signal as sps

from ecgcnn.data.beats import (
    NORMALIZE,
    RR_FEATURES,
    _windows,
    plain_channels,
    rr_features,
    template_mode,
)
from ecgcnn.data.preprocess import apply_filter, bandpass, remove_baseline_median
from ecgcnn.errors import EcgError
from ecgcnn.monitor.qrs import StreamingQRSDetector

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


def _empty_batch(channels: int, length: int) -> BeatBatch:
    return BeatBatch(np.zeros(0, np.int64), np.zeros((0, channels, length), np.float32),
                     np.zeros((0, len(RR_FEATURES)), np.float32), np.zeros(0, np.int64))


def _plain(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(
        vars(node) if not isinstance(node, dict) else node)


class _SegmentFilter:
    """``apply_filter`` with the filter design done once.

    scipy's ``butter`` and the ``sosfilt_zi`` that ``sosfiltfilt`` recomputes on every call
    cost more than filtering a 10 s segment, so both are computed here once and the
    forward-backward pass is ``sosfiltfilt``'s own steps (odd extension of ``3 * ntaps``
    samples, steady-state initial conditions, forward then backward ``sosfilt``). Checked
    bit-for-bit against ``apply_filter`` itself at construction: if the offline filter (or
    scipy) ever changes, the monitor refuses to run rather than drift from it.
    """

    def __init__(self, cfg: dict, fs: float) -> None:
        self.cfg, self.fs = SimpleNamespace(**cfg), fs
        kind = cfg["kind"]
        self.sos = None
        if "bandpass" in kind:
            bandpass(np.zeros(64, np.float32), fs, cfg["low_hz"], cfg["high_hz"], cfg["order"])
            self.sos = sps.butter(cfg["order"], [cfg["low_hz"], cfg["high_hz"]], btype="band",
                                  fs=fs, output="sos")
            ntaps = 2 * len(self.sos) + 1 - min((self.sos[:, 2] == 0).sum(),
                                                (self.sos[:, 5] == 0).sum())
            self.edge = 3 * int(ntaps)
            self.zi = sps.sosfilt_zi(self.sos)  # (sections, 2)
        probe = np.random.default_rng(0).normal(size=(int(12 * fs), 2)).astype(np.float32)
        if not np.array_equal(self(probe), apply_filter(probe, fs, self.cfg)):
            raise EcgError(f"data.filter: kind '{kind}': the monitor's segment filter no longer "
                           "matches data.preprocess.apply_filter")

    def _filtfilt(self, x: np.ndarray) -> np.ndarray:
        e = self.edge
        if x.shape[0] <= e:
            return sps.sosfiltfilt(self.sos, x, axis=0)
        ext = np.concatenate([2 * x[:1] - x[e:0:-1], x, 2 * x[-1:] - x[-2:-e - 2:-1]])
        zi = self.zi.reshape((len(self.sos), 2) + (1,) * (x.ndim - 1))
        y, _ = sps.sosfilt(self.sos, ext, axis=0, zi=zi * ext[:1])
        y, _ = sps.sosfilt(self.sos, y[::-1], axis=0, zi=zi * y[-1:])
        return y[::-1][e:-e]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter along axis 0, as ``apply_filter(x, fs, cfg)``."""
        kind = self.cfg.kind
        if "median" in kind:
            x = remove_baseline_median(x, self.fs, tuple(self.cfg.median_s))
        if self.sos is not None:
            x = self._filtfilt(x).astype(x.dtype, copy=False)
        return x


class BeatStream:
    """Online R-peak detection plus beat windows and RR features equal to ``extract_beats``.

    Parameters
    ----------
    data_cfg : ``DataConfig`` the model was trained with (``fs``, ``filter``, ``beat``, ``leads``)
    fs : sampling rate of the stream in Hz (must equal ``data_cfg.fs``)
    n_leads : leads per sample; R peaks are detected on the first
    margin_s : filter margin beyond the windows, on both sides (see the module docstring)
    detector : keyword arguments for :class:`StreamingQRSDetector`

    Attributes
    ----------
    delay_samples : int
        Wait after an R peak for its windows and right filter margin.
    peaks : list[int]
        Every R peak detected so far.
    dropped : int
        Beats too close to the record start or end for a full window (as ``extract_beats``).
    """

    def __init__(self, data_cfg, fs: float, n_leads: int = 1, margin_s: float = 4.0,
                 detector: dict | None = None) -> None:
        b = data_cfg.beat
        if float(fs) != float(data_cfg.fs):
            raise EcgError(f"fs: stream at {fs} Hz but the model expects {data_cfg.fs} Hz "
                           "(the monitor does not resample a live stream)")
        if b.normalize not in NORMALIZE or b.normalize == "record":
            raise EcgError(f"data.beat.normalize: '{b.normalize}' needs the whole record; the "
                           "monitor supports none, beat_zscore and beat_minmax")
        if margin_s < 0:
            raise EcgError(f"margin_s: must be >= 0 s, got {margin_s}")
        if len(data_cfg.leads) != n_leads:
            raise EcgError(f"leads: the model takes {len(data_cfg.leads)} lead(s) "
                           f"{list(data_cfg.leads)}, the stream has {n_leads}")
        # Plain copies: OmegaConf attribute access costs ~50 us, far more than a beat's maths.
        self.beat = SimpleNamespace(**_plain(b))
        self.filter = _SegmentFilter(_plain(data_cfg.filter), float(fs))
        self.fs, self.n_leads = float(fs), int(n_leads)
        b = self.beat
        self.before = max(b.before, b.trio_before if b.trio else 0)
        self.after = max(b.after, b.trio_after if b.trio else 0)
        self.margin = round(margin_s * fs)
        self.delay_samples = self.after + self.margin
        self.plain_channels = plain_channels(data_cfg)  # n_leads, checked above
        self.template = template_mode(b)
        self.channels = self.plain_channels * (2 if self.template == "add" else 1)
        # running template (extract_beats' with_template, beat by beat): the plain windows of
        # the last template_window beats with pre_local >= template_gate
        self._history: deque[np.ndarray] = deque(maxlen=int(getattr(b, "template_window", 30)))
        # Same anti-alias width as extract_beats uses before decimating the trio window.
        self.trio_k = max(1, int((b.trio_before + b.trio_after) / b.length)) if b.trio else 0
        self.detector = StreamingQRSDetector(fs, **(detector or {}))
        self.peaks: list[int] = []
        self.dropped = 0
        self._buf = np.zeros((0, n_leads), np.float32)
        self._b0 = 0  # absolute sample index of _buf[0]
        self._n = 0  # samples received
        self._next = 0  # index in peaks of the next beat to emit
        self._flushed = False

    # ------------------------------------------------------------------------ public API
    def push(self, chunk: np.ndarray) -> BeatBatch:
        """Feed raw samples ``(n,)`` or ``(n, n_leads)`` in mV; return the beats now ready."""
        if self._flushed:
            raise EcgError("BeatStream.push: stream already flushed")
        x = np.asarray(chunk, dtype=np.float32)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.n_leads:
            raise EcgError(f"BeatStream.push: expected (n, {self.n_leads}) samples, got "
                           f"{np.shape(chunk)}")
        if x.shape[0] == 0:
            return _empty_batch(self.channels, self.beat.length)
        self._buf = np.concatenate([self._buf, x])
        self._n += x.shape[0]
        self.peaks.extend(self.detector.push(x[:, 0]))
        return self._emit(final=False)

    def flush(self) -> BeatBatch:
        """End of stream: emit the remaining beats (the last borrows its post-RR)."""
        if self._flushed:
            return _empty_batch(self.channels, self.beat.length)
        self.peaks.extend(self.detector.flush())
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
        idx = []
        i = self._next
        while i < len(r) and (final or (i + 1 < len(r)
                                        and r[i] + self.delay_samples <= self._n)):
            idx.append(i)
            i += 1
        self._next = i
        keep = [j for j in idx if r[j] - self.before >= 0 and r[j] + self.after <= self._n]
        self.dropped += len(idx) - len(keep)
        out = self._cut(keep) if keep else _empty_batch(self.channels, self.beat.length)
        self._trim()
        return out

    def _rr(self, idx: list[int]) -> np.ndarray:
        """``rr_features`` of the detected peaks, computed on a tail just long enough.

        Calling ``rr_features`` itself (not a copy of its formulas) keeps the features the
        model was trained on, whatever they become. Beat ``i`` depends on the intervals
        before it up to ``rr_long`` back (causal means) and on the next one; starting the tail
        ``rr_long + 2`` peaks earlier leaves the borrowed first interval out of every mean, so
        the values equal those of the whole-record call up to float rounding.
        """
        b = self.beat
        lo = max(0, idx[0] - max(b.rr_long, b.rr_local) - 2)
        hi = min(len(self.peaks), idx[-1] + 2)
        feats = rr_features(np.asarray(self.peaks[lo:hi], dtype=np.int64), self.fs,
                            b.rr_local, b.rr_long)
        return feats[np.asarray(idx) - lo]

    def _cut(self, idx: list[int]) -> BeatBatch:
        b = self.beat
        centers = np.asarray([self.peaks[i] for i in idx], dtype=np.int64)
        lo = centers - self.before - self.margin
        hi = centers + self.after + self.margin
        inner = (lo >= 0) & (hi <= self._n)  # full segments: filtered together, one call
        x = np.zeros((len(idx), self.plain_channels, b.length), np.float32)
        groups = [np.flatnonzero(inner)] + [np.array([k]) for k in np.flatnonzero(~inner)]
        for g in groups:
            if g.size:
                x[g] = self._windows(centers[g], np.maximum(lo[g], 0), np.minimum(hi[g], self._n))
        if b.normalize == "beat_zscore":
            x = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6)
        elif b.normalize == "beat_minmax":
            mn, mx = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
            x = (x - mn) / (mx - mn + 1e-6)
        ready = np.full(len(idx), self._n, dtype=np.int64)
        rr = self._rr(idx)
        return BeatBatch(centers, self._templated(x.astype(np.float32), rr), rr, ready)

    def _templated(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        """``data.beat.template`` applied online: each beat minus the median of the eligible
        beats before it (the same values as ``extract_beats`` on the same peaks)."""
        if self.template == "none":
            return x
        gate = self.beat.template_gate
        pre_local = rr[:, RR_FEATURES.index("pre_local")]
        diffs = np.empty_like(x)
        for i in range(len(x)):
            ref = np.median(np.stack(self._history), axis=0) if self._history else x[i]
            diffs[i] = x[i] - ref
            if pre_local[i] >= gate:
                self._history.append(x[i].copy())
        return np.concatenate([x, diffs], axis=1) if self.template == "add" else diffs

    def _windows(self, centers: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Windows of beats whose segments ``[lo, hi)`` all have the same length."""
        b = self.beat
        seg_len = int(hi[0] - lo[0])
        rows = (lo - self._b0)[:, None] + np.arange(seg_len)[None, :]  # (B, L)
        chans = []
        for j in range(self.n_leads):
            seg = self._buf[rows, j].T  # (L, B): apply_filter filters along axis 0
            filt = self.filter(seg)
            rel = centers - lo + np.arange(len(centers)) * seg_len  # centres in the flat array
            flat = np.ascontiguousarray(filt.T, dtype=np.float32).ravel()
            chans.append(_windows(flat, rel, b.before, b.after, b.length))
            if b.trio:
                smooth = ndi.uniform_filter1d(filt.astype(np.float32), self.trio_k, axis=0,
                                              mode="nearest")
                flat = np.ascontiguousarray(smooth.T).ravel()
                chans.append(_windows(flat, rel, b.trio_before, b.trio_after, b.length))
        return np.stack(chans, axis=1)

    def _trim(self) -> None:
        # Keep what the next beat to emit, or any beat the detector may still return
        # (up to its worst-case delay back), needs for its left filter margin.
        oldest = self._n - self.detector.max_delay_samples
        if self._next < len(self.peaks):
            oldest = min(oldest, self.peaks[self._next])
        keep_from = max(0, oldest - self.before - self.margin - 1)
        cut = keep_from - self._b0
        if cut > self._buf.shape[0] // 2 and cut > 0:  # amortised: copy only now and then
            self._buf = self._buf[cut:].copy()
            self._b0 = keep_from


# ----------------------------------------------------------------------------- replay
@dataclass
class StreamResult:
    """Everything one replay produced."""

    peaks: np.ndarray  # int64, every detected R peak
    sample: np.ndarray  # int64 (n,) classified beats
    probs: np.ndarray  # float32 (n, K)
    ready: np.ndarray  # int64 (n,) stream length when each beat was emitted
    latency_s: np.ndarray  # float64 (n,) compute time from its chunk's arrival to its class
    alarms: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the replay loop
    cpu_seconds: float = 0.0  # CPU time of this process in the loop (other load excluded)
    duration_s: float = 0.0  # signal duration
    dropped: int = 0
    # quality stage (empty without one): per beat, in an unreadable segment; per segment
    unreadable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segments_unreadable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segment_samples: int = 0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def replay(signal: np.ndarray, fs: float, stream: BeatStream, classifier: Classifier,
           chunk_s: float = 1.0, realtime: bool = False, alarms=None,
           on_event: Callable[[dict], None] | None = None, quality=None,
           quality_signal: np.ndarray | None = None) -> StreamResult:
    """Feed ``signal`` to ``stream`` in chunks and classify the beats each chunk makes ready.

    Parameters
    ----------
    signal : (n,) or (n, n_leads) raw samples in mV
    fs : sampling rate in Hz
    stream : a fresh :class:`BeatStream`
    classifier : ``classifier(x, rr) -> probs``; called once per chunk with every ready beat
    chunk_s : chunk length in seconds
    realtime : sleep so that each chunk is processed when its last sample would arrive live
    alarms : optional engine with ``push_signal(chunk, start)``, ``push_beats(samples,
        classes, now)``, ``flush(now)``, each returning alarm dicts (see ``monitor.alarms``)
    on_event : called with each beat and alarm event dict as it happens
    quality : optional :class:`~ecgcnn.monitor.quality.QualityStage`: a classified beat is
        held until its segment is judged; beats in unreadable segments are flagged
        (``StreamResult.unreadable``, ``"unreadable": True`` in their events) and reach the
        alarm engine as lost signal (no class or rhythm alarm from them)
    quality_signal : (n, leads) samples the quality stage judges, aligned with ``signal``
        (e.g. every lead of the record while the model reads one); default ``signal``

    Returns
    -------
    StreamResult
    """
    x = np.asarray(signal, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    step = round(chunk_s * fs)
    if step < 1:
        raise EcgError(f"chunk_s: {chunk_s} s is less than one sample at {fs} Hz")
    samples, probs, ready, lat, found = [], [], [], [], []
    held: list = []  # classified beats waiting for their segment's quality verdict
    bad_seg: list[bool] = []  # quality verdict of each judged segment
    unread: list[np.ndarray] = []
    t_start, c_start = time.perf_counter(), time.process_time()
    n = x.shape[0]
    for s in range(0, n + step, step):
        final = s >= n
        if realtime and not final:
            wait = t_start + min(s + step, n) / fs - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t0 = time.perf_counter()  # the chunk has arrived: its beats' data are available
        chunk = x[s:s + step]
        new: list[dict] = []
        if alarms is not None and not final:
            new += alarms.push_signal(chunk, s)
        batch = stream.flush() if final else stream.push(chunk)
        if quality is not None:
            v = quality.flush() if final else quality.push(
                chunk if quality_signal is None else quality_signal[s:s + step])
            bad_seg.extend(v.unreadable.tolist())
        if len(batch):
            p = np.asarray(classifier(batch.x, batch.rr), dtype=np.float32)
            t1 = time.perf_counter()
            samples.append(batch.sample)
            probs.append(p)
            ready.append(batch.ready)
            lat.append(np.full(len(batch), t1 - t0))
            held.extend(zip(batch.sample.tolist(), p))
        # beats leave once their segment is judged (all of them at once without a quality stage)
        go = len(held) if quality is None or final else next(
            (i for i, (r, _) in enumerate(held) if r // quality.seg >= len(bad_seg)), len(held))
        if go:
            out, held = held[:go], held[go:]
            smp = np.asarray([r for r, _ in out], dtype=np.int64)
            bad = (np.zeros(go, bool) if quality is None else
                   np.asarray([bad_seg[min(r // quality.seg, len(bad_seg) - 1)] for r in
                               smp.tolist()], dtype=bool))
            unread.append(bad)
            if on_event is not None:
                for (r, pr), u in zip(out, bad.tolist()):
                    on_event({"type": "beat", "sample": r, "k": int(pr.argmax()),
                              "p": float(pr.max()), **({"unreadable": True} if u else {})})
            if alarms is not None:
                new += alarms.push_beats(smp, np.asarray([pr.argmax() for _, pr in out]),
                                         stream.n_samples, unreadable=bad)
        if alarms is not None and final:
            new += alarms.flush(stream.n_samples)
        if on_event is not None:
            for a in new:
                on_event(a)
        found += new
        if final:
            break
    seconds = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    k = probs[0].shape[1] if probs else 5
    cat = (lambda v, d, shape: np.concatenate(v) if v else np.zeros(shape, d))
    return StreamResult(
        peaks=np.asarray(stream.peaks, dtype=np.int64),
        sample=cat(samples, np.int64, 0), probs=cat(probs, np.float32, (0, k)),
        ready=cat(ready, np.int64, 0), latency_s=cat(lat, np.float64, 0), alarms=found,
        seconds=seconds, cpu_seconds=cpu, duration_s=n / fs, dropped=stream.dropped,
        unreadable=cat(unread, bool, 0), segments_unreadable=np.asarray(bad_seg, dtype=bool),
        segment_samples=0 if quality is None else quality.seg)
