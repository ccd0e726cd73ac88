"""Signal quality: which seconds of an ECG are too noisy to decide beats on.

Electrode motion (NSTDB ``em``) is the noise that fools QRS detectors and beat classifiers: its
energy lies in the ECG band and its transients look like QRS complexes, so an analyzer calls
noise "ventricular" and raises false VT alarms. EC57 expects an analyzer to know when the
signal is unreadable and to say so ("shutdown", which ``bxb`` scores apart). This module judges
each fixed segment of ``segment_s`` (1 s) from two measures over the window of the segment plus
``context_s`` on each side:

agreement (two leads)
    Li, Clifford & McSharry's bSQI (Physiol. Meas. 2008): R peaks found independently on the
    first two leads (:class:`~ecgcnn.monitor.qrs.StreamingQRSDetector` on each), matched
    within 150 ms; ``matched / (n0 + n1 - matched)``. A false detection in noise is rarely
    found on the other lead too, whose electrodes move differently.
low-frequency excess
    Power of the first lead in 1-4 Hz over its power in 5-25 Hz (the QRS band), divided by the
    record's own reference: the ``reference_quantile`` of that ratio over the past
    ``reference_s``. Electrode motion adds ~4x the ECG's 1-3 Hz power at 12 dB (measured on
    118e12 minus 118) and little above 5 Hz; P and T waves make the ratio differ ~10x between
    records, hence a per-record reference rather than one absolute level.

A segment is unreadable when, with two leads, ``agreement < min_agreement`` and the
low-frequency excess is above ``max_lf_excess`` (disagreement alone also comes from a weak
second lead or a run of PVCs, which must not shut the analyzer down); with one lead, when the
excess is above ``max_lf_excess_single``, which is off by default: a run of wide ventricular
complexes raises the excess as much as electrode motion (tests/test_quality.py), and a monitor
must not shut down during VT. The thresholds were chosen by hand from the clean
MIT-BIH records (none but 118 shut down more than 20 %, mean 2 %) and record 118 with the real
em noise (118e12, 118e06): see the noise-stress report for what was tuned where.

Filters are causal (state carried), every value is computed once a segment's window is
complete and the detectors' peaks there are final (``max_delay_samples`` later), so the
verdicts do not depend on how the signal is cut into blocks: :func:`signal_quality` on a
whole record and :class:`QualityStage` fed a live stream give the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal as sps

from ecgcnn.errors import EcgError
from ecgcnn.monitor.qrs import StreamingQRSDetector
from ecgcnn.monitor.scoring import MATCH_TOLERANCE_S, match_beats

LF_BAND_HZ = (1.0, 4.0)
QRS_BAND_HZ = (5.0, 25.0)
BEAT_BAND_HZ = (0.5, 40.0)  # the beat shapes compared by the template correlation
BEAT_HALF_S = 0.150


@dataclass
class Verdicts:
    """Per-segment results, segment ``k`` covering samples ``[k * seg, (k + 1) * seg)``."""

    index: np.ndarray  # int64 (m,) segment numbers
    unreadable: np.ndarray  # bool (m,)
    agreement: np.ndarray  # float64 (m,) NaN with one lead
    lf_excess: np.ndarray  # float64 (m,)
    template_corr: np.ndarray  # float64 (m,) lowest beat correlation in the window

    def __len__(self) -> int:
        return int(self.index.shape[0])


def _empty() -> Verdicts:
    return Verdicts(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), np.zeros(0), np.zeros(0))


class QualityStage:
    """Per-segment signal quality of a stream of raw samples (any block sizes).

    Parameters
    ----------
    cfg : ``QualityConfig`` (``segment_s``, ``context_s``, ``reference_s``,
        ``reference_quantile``, ``min_agreement``, ``max_lf_excess``, ``max_lf_excess_single``)
    fs : sampling rate in Hz
    n_leads : leads per sample; agreement needs two (the first two are used)

    Attributes
    ----------
    seg : int
        Segment length in samples.
    ready : int
        Segments ``< ready`` have their verdicts.
    """

    def __init__(self, cfg, fs: float, n_leads: int = 1) -> None:
        for k in ("segment_s", "reference_s"):
            if getattr(cfg, k) <= 0:
                raise EcgError(f"quality.{k}: must be > 0, got {getattr(cfg, k)}")
        if cfg.context_s < 0:
            raise EcgError(f"quality.context_s: must be >= 0, got {cfg.context_s}")
        if not 0 <= cfg.reference_quantile <= 1:
            raise EcgError(
                f"quality.reference_quantile: must lie in [0, 1], got {cfg.reference_quantile}"
            )
        if fs / 2 <= QRS_BAND_HZ[1]:
            raise EcgError(
                f"fs: {fs} Hz is too low for the quality stage's {QRS_BAND_HZ[1]} Hz band"
            )
        self.fs, self.n_leads = float(fs), int(n_leads)
        self.seg = max(1, round(cfg.segment_s * fs))
        self.ctx = int(np.ceil(cfg.context_s / cfg.segment_s))  # context in segments
        self.n_ref = max(1, round(cfg.reference_s / cfg.segment_s))
        self.q = 100.0 * float(cfg.reference_quantile)
        self.min_agreement = float(cfg.min_agreement)
        self.max_lf = float(cfg.max_lf_excess)
        single = cfg.max_lf_excess_single
        self.max_lf_single = np.inf if single is None else float(single)
        self.tol = round(MATCH_TOLERANCE_S * fs)
        self.dets = [StreamingQRSDetector(fs) for _ in range(min(2, n_leads))]
        self.min_corr = float(cfg.min_template_corr)
        self.k_beats = max(1, int(cfg.template_beats))
        self.half = round(BEAT_HALF_S * fs)
        self._sos_beat = sps.butter(2, BEAT_BAND_HZ, "bandpass", fs=fs, output="sos")
        self._zi_beat = np.zeros((self._sos_beat.shape[0], 2))
        self._fb = np.zeros(0)  # lead 0 in BEAT_BAND_HZ (causal), from sample _fb0 on
        self._fb0 = 0
        self._shapes: list[np.ndarray] = []  # last k_beats normalised beat shapes
        self._corr: list[tuple[int, float]] = []  # (R peak, best correlation) per beat
        self._n_corr = 0  # lead-0 peaks already given a correlation
        self.delay = max((d.max_delay_samples for d in self.dets), default=0)
        self.peaks: list[list[int]] = [[] for _ in self.dets]
        self.sos = [
            sps.butter(2, b, "bandpass", fs=fs, output="sos") for b in (LF_BAND_HZ, QRS_BAND_HZ)
        ]
        self.zi = [np.zeros((s.shape[0], 2)) for s in self.sos]
        self._part = np.zeros((0, 2))  # squared filtered samples of the incomplete segment
        self.power: list[tuple[float, float]] = []  # per complete segment: (lf, qrs) energy
        self.ratios: list[float] = []  # per judged segment, for the reference
        self.n = 0
        self.ready = 0
        self._flushed = False

    def push(self, chunk: np.ndarray) -> Verdicts:
        """Feed raw samples ``(n,)`` or ``(n, leads)`` in mV; return the segments now judged."""
        if self._flushed:
            raise EcgError("QualityStage.push: stream already flushed")
        x = np.asarray(chunk, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.n_leads:
            raise EcgError(
                f"QualityStage.push: expected (n, {self.n_leads}) samples, got {np.shape(chunk)}"
            )
        if x.shape[0] == 0:
            return _empty()
        for j, d in enumerate(self.dets):
            self.peaks[j].extend(d.push(x[:, j]))
        fb, self._zi_beat = sps.sosfilt(self._sos_beat, x[:, 0], zi=self._zi_beat)
        self._fb = np.concatenate([self._fb, fb])
        sq = []
        for k, sos in enumerate(self.sos):
            y, self.zi[k] = sps.sosfilt(sos, x[:, 0], zi=self.zi[k])
            sq.append(y * y)
        part = np.concatenate([self._part, np.stack(sq, axis=1)])
        full = part.shape[0] // self.seg
        # each segment summed whole, so the sums do not depend on where blocks were cut
        for s in range(full):
            p = part[s * self.seg : (s + 1) * self.seg].sum(axis=0)
            self.power.append((float(p[0]), float(p[1])))
        self._part = part[full * self.seg :]
        self.n += x.shape[0]
        return self._judge(final=False)

    def flush(self) -> Verdicts:
        """End of stream: judge the remaining segments (a last partial one included)."""
        if self._flushed:
            return _empty()
        for j, d in enumerate(self.dets):
            self.peaks[j].extend(d.flush())
        if self._part.shape[0]:
            p = self._part.sum(axis=0)
            self.power.append((float(p[0]), float(p[1])))
            self._part = np.zeros((0, 2))
        out = self._judge(final=True)
        self._flushed = True
        return out

    # ------------------------------------------------------------------------ verdicts
    def _correlate(self) -> None:
        """Each lead-0 beat's best correlation with the ``k_beats`` beats before it: a run of
        PVCs repeats its shape (high), a false beat in noise or a beat it distorts does not."""
        peaks, h = self.peaks[0], self.half
        end = self._fb0 + self._fb.size
        while self._n_corr < len(peaks) and peaks[self._n_corr] + h < end:
            r = peaks[self._n_corr]
            self._n_corr += 1
            if r - h < self._fb0:
                continue  # at the record start: no full window
            w = self._fb[r - h - self._fb0 : r + h + 1 - self._fb0]
            w = w - w.mean()
            w = w / (np.linalg.norm(w) + 1e-12)
            best = float(max((float(w @ o) for o in self._shapes), default=1.0))
            self._shapes = (self._shapes + [w])[-self.k_beats :]
            self._corr.append((r, best))

    def _judge(self, final: bool) -> Verdicts:
        if self.dets:
            self._correlate()
        rows = []
        n_seg = len(self.power)
        while self.ready < n_seg:
            k = self.ready
            hi = min(k + 1 + self.ctx, n_seg)
            if not final and (
                k + 1 + self.ctx > n_seg or (k + 1 + self.ctx) * self.seg + self.delay > self.n
            ):
                break
            lo = max(0, k - self.ctx)
            pw = np.asarray(self.power[lo:hi]).sum(axis=0)
            ratio = float(pw[0] / pw[1]) if pw[1] > 0 else 0.0
            self.ratios.append(ratio)
            ref = float(np.percentile(self.ratios[-self.n_ref :], self.q))
            excess = ratio / ref if ref > 0 else (0.0 if ratio == 0 else np.inf)
            a, b = lo * self.seg, hi * self.seg
            if len(self.dets) == 2:
                d0, d1 = (np.asarray(p, np.int64) for p in self.peaks)
                d0, d1 = d0[(d0 >= a) & (d0 < b)], d1[(d1 >= a) & (d1 < b)]
                tp = match_beats(d0, d1, self.tol)[0]
                den = len(d0) + len(d1) - tp
                agree = tp / den if den else 1.0
                bad = agree < self.min_agreement and excess > self.max_lf
            else:
                agree = np.nan
                bad = excess > self.max_lf_single
            tcorr = min((c for r, c in self._corr if a <= r < b), default=1.0)
            bad = bad and tcorr < self.min_corr
            rows.append((k, bad, agree, excess, tcorr))
            self.ready += 1
        self._trim()
        if not rows:
            return _empty()
        k, bad, agree, excess, tcorr = zip(*rows)
        return Verdicts(
            np.asarray(k, np.int64),
            np.asarray(bad, bool),
            np.asarray(agree, np.float64),
            np.asarray(excess, np.float64),
            np.asarray(tcorr, np.float64),
        )

    def _trim(self) -> None:
        # peaks before the oldest window still to judge are never looked at again
        keep_from = (self.ready - self.ctx) * self.seg
        for j, p in enumerate(self.peaks):
            if len(p) > 256 and p[0] < keep_from:
                drop = sum(v < keep_from for v in p)
                self.peaks[j] = p[drop:]
                if j == 0:
                    self._n_corr = max(0, self._n_corr - drop)
        self._corr = [rc for rc in self._corr if rc[0] >= keep_from]
        # the beat-band signal from the first beat still to correlate (its left half window)
        nxt = (
            self.peaks[0][self._n_corr]
            if self.dets and self._n_corr < len(self.peaks[0])
            else self._fb0 + self._fb.size
        )
        # a peak not yet detected lies at most delay before the newest sample
        cut = min(nxt, self.n - self.delay) - self.half - self._fb0
        if cut > self._fb.size // 2 and cut > 4096:
            self._fb, self._fb0 = self._fb[cut:], self._fb0 + cut
        if len(self.ratios) > 4 * self.n_ref:
            self.ratios = self.ratios[-self.n_ref :]


def signal_quality(signal: np.ndarray, fs: float, cfg, block: int | None = None) -> Verdicts:
    """Per-segment verdicts of a whole record (:class:`QualityStage` fed in ``block`` samples,
    default all at once); the same segments as a stream gets.

    Parameters
    ----------
    signal : (n,) or (n, leads) raw samples in mV
    fs : sampling rate in Hz
    cfg : ``QualityConfig``
    block : block size in samples (None: one block)

    Returns
    -------
    Verdicts
        One row per segment, in order.
    """
    x = np.asarray(signal)
    x = x[:, None] if x.ndim == 1 else x
    stage = QualityStage(cfg, fs, x.shape[1])
    step = x.shape[0] if block is None else int(block)
    if step < 1:
        raise EcgError(f"signal_quality: block must be >= 1 sample, got {block}")
    parts = [stage.push(x[s : s + step]) for s in range(0, x.shape[0], step)] + [stage.flush()]
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    return Verdicts(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("index", "unreadable", "agreement", "lf_excess", "template_corr")
        )
    )


def read_quality_leads(path, leads: list[str], cfg, **kw):
    """``data.records.load_record(path, leads=leads, **kw)``, plus the record's next lead when
    the quality stage is on and the model takes one lead (agreement needs two); a record with
    no other lead is read with ``leads`` alone."""
    from ecgcnn.data.io import OTHER_LEAD, MissingLeadError
    from ecgcnn.data.records import load_record

    if cfg.enabled and len(leads) == 1:
        try:
            return load_record(path, leads=[*leads, OTHER_LEAD], **kw)
        except MissingLeadError:
            pass
    return load_record(path, leads=leads, **kw)


def shutdown_spans(unreadable: np.ndarray, seg: int, n: int) -> list[tuple[int, int]]:
    """Merged ``[start, stop)`` sample spans of the unreadable segments (clipped to ``n``).

    Parameters
    ----------
    unreadable : bool per segment, segment ``k`` covering ``[k * seg, (k + 1) * seg)``
    seg : segment length in samples
    n : signal length in samples
    """
    spans: list[list[int]] = []
    for k in np.flatnonzero(np.asarray(unreadable, bool)).tolist():
        a, b = k * seg, min((k + 1) * seg, n)
        if spans and spans[-1][1] == a:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]


def shutdown_summary(res, spans: list[tuple[int, int]], fs: float, start: int, stop: int) -> dict:
    """Shutdown time and beats of a replay (``StreamResult``) within ``[start, stop)``."""
    t = sum(max(0, min(b, stop) - max(a, start)) for a, b in spans)
    sel = (res.sample >= start) & (res.sample < stop)
    n_beats = int(sel.sum())
    n_bad = int((res.unreadable[sel]).sum()) if len(res.unreadable) else 0
    return {
        "shutdown_s": round(t / fs, 1),
        "shutdown_frac": t / max(1, stop - start),
        "beats_in_shutdown": n_bad,
        "beats_in_shutdown_frac": n_bad / max(1, n_beats),
        "spans_s": [[round(a / fs, 3), round(b / fs, 3)] for a, b in spans],
    }
