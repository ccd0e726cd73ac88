"""Online (streaming) QRS detection: Pan–Tompkins / Hamilton–Tompkins with exact chunk invariance.

Why this is written by hand: wfdb's detectors are offline. ``XQRS`` band-passes and
integrates the whole record with ``filtfilt`` (non-causal: every output needs future samples)
and learns its initial thresholds from the whole signal; ``GQRS`` runs a learning pass over
the record, then *rewinds* and detects again over the whole array. Neither keeps state across
calls, so they cannot follow a live stream. scipy supplies the causal band-pass (``lfilter``
with carried state ``zi``); the decision rules below follow Pan & Tompkins (1985) and
Hamilton & Tompkins (1986).

Pipeline (all causal, state carried across chunks):

    x (mV) -> band-pass 5–15 Hz (Butterworth, lfilter) -> f
    f -> 5-point derivative -> d -> d**2 -> moving-window integration (150 ms) -> m

A *candidate* is a sample of ``m`` that is the maximum of ``m`` within ± ``peak_radius``
(known ``peak_radius`` samples later). Candidates go, in time order, through the decision
rules: adaptive threshold (from the last 8 QRS and noise peak heights), 200 ms refractory
period, T-wave test (within 360 ms of the last QRS, a maximum slope below half the last QRS's
is a T wave), and search-back (no QRS for 1.66 mean RR: the largest candidate above half the
threshold is a QRS). Peak heights are ``sqrt(m)`` (proportional to QRS amplitude) and the
signal level is the lower quartile of the last 8 QRS heights, not their median: in ventricular
bigeminy (MIT-BIH 208, 228) half the beats are PVCs with ~10 times the energy of the normal
beats, and a median-based threshold misses every normal beat. The R peak is the largest
deviation of ``x`` from its local median near the delay-corrected band-passed peak, so a
window centred on it matches the reference annotation (median |offset| 1 sample on MIT-BIH).

Chunk invariance: every filter carries its state sample-exactly, candidates are only judged
once their whole neighbourhood is known, and a search-back for the deadline ``D`` runs exactly
when every candidate ``<= D`` is known and none ``> D`` has been judged. Hence the detected
peaks are the same for any chunking (tested bit-for-bit). The decision rules (thresholds,
T-wave test, search-back) live in :mod:`ecgcnn.monitor.qrs_rules`.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ecgcnn.errors import EcgError
from ecgcnn.monitor.qrs_rules import DecisionRules

_NEG = -np.inf


class StreamingQRSDetector(DecisionRules):
    """Online R-peak detector for one ECG lead.

    Parameters
    ----------
    fs : sampling rate in Hz
    band_hz : band-pass corners of the QRS-enhancing filter
    mwi_s : moving-window integration length (about the widest QRS)
    peak_radius_s : a candidate is the largest integrated value within ± this (its decision waits
        this long)
    refractory_s : no second QRS within this time of the last one
    twave_s : a candidate this close to the last QRS must pass the slope test to be a QRS
    twave_slope_ratio : ... i.e. reach this fraction of the last QRS's maximum slope
    threshold_coef : threshold = noise + coef * (signal - noise) (running medians)
    searchback_rr : search back when no QRS for this many mean RR intervals
    searchback_coef : a search-back QRS must exceed this fraction of the threshold
    learn_s : the first seconds set the initial signal and noise levels
    rr_init_s, rr_max_s : mean RR before two beats are known; upper limit of the mean RR used for
        the search-back deadline (bounds the worst-case delay)
    n_avg : how many past peaks / RR intervals the running medians and means use
    min_amplitude_mv : QRS smaller than a spike of this amplitude are never detected (keeps a
        flat line, where the adaptive threshold decays, silent)
    locate_radius_s : the R peak is searched within ± this of the delay-corrected band-passed peak
    signal_rank : which rank of the last ``n_avg`` QRS heights is the signal level (0 = smallest,
        0.5 = median)

    Attributes
    ----------
    delay : int
        Most samples between an R peak and the last sample of the chunk that returns it, for a
        beat accepted at once (the usual case): peak lookahead plus integration, filter and
        localisation reach (152 samples = 422 ms at 360 Hz; typically ~120).
    max_delay_samples : int
        Worst case: a beat found by search-back (its deadline with ``rr_max_s``, plus ``delay``)
        or a beat in the learning period (returned when it ends).
    """

    def __init__(
        self,
        fs: float,
        band_hz: tuple[float, float] = (5.0, 15.0),
        mwi_s: float = 0.150,
        peak_radius_s: float = 0.200,
        refractory_s: float = 0.200,
        twave_s: float = 0.360,
        twave_slope_ratio: float = 0.5,
        threshold_coef: float = 0.25,
        searchback_rr: float = 1.66,
        searchback_coef: float = 0.5,
        learn_s: float = 2.0,
        rr_init_s: float = 1.0,
        rr_max_s: float = 2.0,
        n_avg: int = 8,
        min_amplitude_mv: float = 0.05,
        locate_radius_s: float = 0.030,
        signal_rank: float = 0.25,
    ) -> None:
        if not fs > 0:
            raise EcgError(f"StreamingQRSDetector: fs must be > 0 Hz, got {fs}")
        lo, hi = band_hz
        if not 0 < lo < hi < fs / 2:
            raise EcgError(f"StreamingQRSDetector: band_hz {band_hz} must lie in (0, {fs / 2}) Hz")
        self.fs = float(fs)
        self.refractory = round(refractory_s * fs)
        self.twave = round(twave_s * fs)
        self.twave_slope_ratio = float(twave_slope_ratio)
        self.threshold_coef = float(threshold_coef)
        self.searchback_rr = float(searchback_rr)
        self.searchback_coef = float(searchback_coef)
        self.learn = max(1, round(learn_s * fs))
        self.rr_init = float(rr_init_s * fs)
        self.rr_max = float(rr_max_s * fs)
        self.radius = max(1, round(peak_radius_s * fs))
        self.mwi = max(1, round(mwi_s * fs))
        self.loc_r = max(1, round(locate_radius_s * fs))
        self.base_r = round(0.100 * fs)

        # (b, a) form, not sos: at 4th order it is accurate enough, and scipy's lfilter costs
        # ~10 us a call against ~50 us for sosfilt, which matters with 0.25 s chunks.
        self._b_bp, self._a_bp = signal.butter(2, [lo, hi], "bandpass", fs=fs)
        # d**2 in fixed point (2**-20 (mV/s)**2 steps, far below any ECG slope): integer running
        # sums are exact, so the integration does not depend on where chunks start.
        self._q_scale = float(2**20)
        self._q_max = float(2**52)  # one sample's cap: a window sum stays far below 2**63
        self._m_scale = 1.0 / (self._q_scale * self.mwi)
        # Band-pass group delay near the QRS energy (10 Hz): maps a band-passed peak back to x.
        _, gd = signal.group_delay((self._b_bp, self._a_bp), w=[10.0], fs=fs)
        self.bp_delay = round(float(gd[0]))
        self.back = self.mwi + self.bp_delay + self.base_r + 4  # history a candidate looks at
        # Floor on the integrated signal: a triangular spike of amplitude A and width ~ 80 ms
        # band-passed to ~A/2 with slope ~A/40 ms, squared and averaged over the window.
        slope = 0.5 * min_amplitude_mv / 0.040
        self.m_floor = slope**2 * min(1.0, 0.080 / mwi_s)
        self.h_floor = float(np.sqrt(self.m_floor))

        # R lies at most mwi - 1 + bp_delay + loc_r before its integrated peak i, which is
        # judged once sample i + radius has arrived.
        self.delay = self.radius + self.mwi + self.bp_delay + self.loc_r
        self.max_delay_samples = max(
            self.learn, int(np.ceil(self.searchback_rr * self.rr_max)) + self.delay
        )
        self.n_avg = int(n_avg)
        self.signal_rank = float(signal_rank)
        self._reset()

    # ------------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._n = 0  # samples received
        self._zi_bp = self._f_tail = self._c_tail = None
        self._h0 = 0  # absolute index of the first history sample
        self._hist = {k: np.zeros(0) for k in ("x", "f", "d", "m")}
        self._next_eval = 0  # first sample not yet judged as a candidate
        self._learn_buf: list[np.ndarray] = []
        self._learned = False
        self._pending: list[tuple[int, float, float, int]] = []  # candidates during learning
        self._reset_rules()
        self._flushed = False

    def reset(self) -> None:
        """Forget everything (start of a new stream)."""
        self._reset()

    # ------------------------------------------------------------------------ filters
    def _filter(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self._zi_bp is None:
            # Start in steady state for a constant input x[0]: no step transient from the DC
            # offset of a raw lead (it would set the first thresholds far too high).
            self._zi_bp = signal.lfilter_zi(self._b_bp, self._a_bp) * x[0]
            self._f_tail = np.zeros(4)
            self._c_tail = np.zeros(self.mwi, dtype=np.int64)
        f, self._zi_bp = signal.lfilter(self._b_bp, self._a_bp, x, zi=self._zi_bp)
        # Pan–Tompkins 5-point derivative (mV/s) in numpy on the carried last 4 samples: the
        # same elementwise arithmetic for any chunking.
        fe = np.concatenate([self._f_tail, f])
        self._f_tail = fe[-4:]
        d = (2.0 * fe[4:] + fe[3:-1] - fe[1:-3] - 2.0 * fe[:-4]) * (self.fs / 8.0)
        # Moving-window integration as a difference of integer cumulative sums (int64 wraps
        # around on overflow, which leaves the differences exact). An lfilter call would be
        # exact too but costs more than the rest of a 0.25 s chunk.
        q = np.minimum(d * d * self._q_scale, self._q_max).astype(np.int64)
        c = np.concatenate([self._c_tail, np.cumsum(q) + self._c_tail[-1]])
        self._c_tail = c[-self.mwi :]
        m = (c[self.mwi :] - c[: -self.mwi]) * self._m_scale
        return {"x": x, "f": f, "d": d, "m": m}

    # ------------------------------------------------------------------------ public API
    def push(self, chunk: np.ndarray) -> list[int]:
        """Feed the next samples; return the R peaks (absolute sample indices) now final.

        Parameters
        ----------
        chunk : 1-D array of samples in mV (any length, including 0)

        Returns
        -------
        list[int]
            R-peak sample indices decided by this chunk, increasing, never revised later.
        """
        if self._flushed:
            raise EcgError("StreamingQRSDetector.push: stream already flushed; call reset()")
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise EcgError(f"StreamingQRSDetector.push: chunk must be 1-D, got shape {x.shape}")
        if x.size == 0:
            return []
        if not np.all(np.isfinite(x)):
            raise EcgError("StreamingQRSDetector.push: chunk holds NaN or inf samples")
        new = self._filter(x)
        for k, v in new.items():
            self._hist[k] = np.concatenate([self._hist[k], v])
        self._n += x.size
        if not self._learned:
            self._learn_buf.append(new["m"][: max(0, self.learn - (self._n - x.size))])
        return self._advance(self._n - self.radius)

    def flush(self) -> list[int]:
        """End of stream: judge the last samples (no more lookahead) and return their peaks."""
        if self._flushed:
            return []
        out = self._advance(self._n)
        self._flushed = True
        return out

    # ------------------------------------------------------------------------ candidates
    def _advance(self, upto: int) -> list[int]:
        """Judge samples ``[next_eval, upto)`` as candidates and run the decision rules."""
        e0, e1 = self._next_eval, max(self._next_eval, upto)
        cands = self._candidates(e0, e1) if e1 > e0 else []
        self._next_eval = e1
        out: list[int] = []
        if not self._learned:
            # Decisions wait until the learning period is known (or the stream ends before it).
            self._pending.extend(cands)
            if self._n >= self.learn or upto >= self._n:
                self._init_levels()
                cands, self._pending = self._pending, []
        if self._learned:
            for c in cands:
                self._decide(c, out)
            self._searchback_until(self._next_eval - 1, out)
        self._trim()
        return out

    def _candidates(self, e0: int, e1: int) -> list[tuple[int, float, float, int]]:
        h0, r = self._h0, self.radius
        m = self._hist["m"]
        # m on [e0 - r - 1, e1 + r), -inf outside what exists (record start / end of stream).
        a, b = e0 - r - 1, min(e1 + r, self._n)
        seg = np.full(e1 + r - a, _NEG)
        lo = max(a, h0)
        seg[lo - a : b - a] = m[lo - h0 : b - h0]
        core = slice(r + 1, r + 1 + (e1 - e0))
        v = seg[core]
        # Local maxima first (cheap), then the few of them that top their whole neighbourhood.
        # Ties: the first sample of a plateau is the peak.
        loc = (v > seg[r : r + (e1 - e0)]) & (v >= seg[r + 2 : r + 2 + (e1 - e0)])
        loc = np.flatnonzero(loc & (v > self.m_floor))
        if loc.size == 0:
            return []
        hood = np.lib.stride_tricks.sliding_window_view(seg, 2 * r + 1)[loc + 1]
        idx = loc[v[loc] >= hood.max(axis=1)] + e0
        if idx.size == 0:
            return []
        # Features from the history: max slope over the integration window, and the R peak.
        w = np.arange(-self.mwi + 1, 1)
        gi = np.clip(idx[:, None] + w - h0, 0, None)
        slope = np.abs(self._hist["d"][gi]).max(axis=1)
        fpk = idx - self.mwi + 1 + np.abs(self._hist["f"][gi]).argmax(axis=1)
        # The band-passed peak lags x by the filter delay. R is the largest deviation of x from
        # its local median (the isoelectric level: a QRS fills under half of a 200 ms window).
        c = fpk - self.bp_delay
        bi = np.clip(c[:, None] + np.arange(-self.base_r, self.base_r + 1), h0, self._n - 1)
        base = np.median(self._hist["x"][bi - h0], axis=1)
        li = np.clip(c[:, None] + np.arange(-self.loc_r, self.loc_r + 1), h0, None)
        dev = np.abs(self._hist["x"][li - h0] - base[:, None])
        rpos = li[np.arange(idx.size), dev.argmax(axis=1)]
        # Peak heights as RMS slope (sqrt of the integrated energy): proportional to the QRS
        # amplitude, so a tall PVC does not lift the threshold above the normal beats 10-fold.
        height = np.sqrt(v[idx - e0])
        return list(zip(idx.tolist(), height.tolist(), slope.tolist(), rpos.tolist()))

    def _trim(self) -> None:
        keep_from = max(0, self._next_eval - self.radius - 1 - self.back)
        if keep_from > self._h0:
            cut = keep_from - self._h0
            for k in self._hist:
                self._hist[k] = self._hist[k][cut:]
            self._h0 = keep_from


def detect(signal_mv: np.ndarray, fs: float, chunk: int | None = None, **tunables) -> np.ndarray:
    """Run :class:`StreamingQRSDetector` over a whole array.

    Parameters
    ----------
    signal_mv : 1-D array, one lead in mV
    fs : sampling rate in Hz
    chunk : feed the detector this many samples at a time (None: the whole array at once)
    **tunables : passed to :class:`StreamingQRSDetector`

    Returns
    -------
    np.ndarray
        int64 R-peak sample indices, increasing.
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim != 1:
        raise EcgError(f"detect: signal must be 1-D, got shape {x.shape}")
    if chunk is not None and chunk < 1:
        raise EcgError(f"detect: chunk must be >= 1 sample, got {chunk}")
    det = StreamingQRSDetector(fs, **tunables)
    step = x.size if chunk is None else int(chunk)
    peaks: list[int] = []
    for s in range(0, x.size, max(step, 1)):
        peaks.extend(det.push(x[s : s + step]))
    peaks.extend(det.flush())
    return np.asarray(peaks, dtype=np.int64)
