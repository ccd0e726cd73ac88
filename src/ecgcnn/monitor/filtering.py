"""``data.filter`` computed on a stream: raw blocks in, filtered samples out, chunk-invariant.

The offline filter (:func:`ecgcnn.data.preprocess.apply_filter`) is a cascaded median
baseline removal and/or a zero-phase band-pass (``sosfiltfilt``) over the whole record. Here
both run on a growing signal, so that the stream (``ecgcnn-monitor``) and the batch path
(``ecgcnn-analyze``, which is the stream fed in large blocks) filter every sample the same way:

* the median baseline has a finite reach (half of each median width): block ``[a, b)`` is
  filtered once ``b + reach`` has arrived, on the segment ``[a - reach, b + reach)``; the
  values equal the whole-record filter exactly (``mode="nearest"`` only where the segment
  stops at the record's own edge, as offline);
* the band-pass's forward pass is causal: ``sosfilt`` with its state carried across blocks,
  started on ``sosfiltfilt``'s odd extension of the first samples with its steady-state
  initial conditions, so it equals the offline forward pass sample for sample;
* the backward pass needs the future: each grid block ``[k B, (k+1) B)`` is filtered backward
  from ``margin`` samples beyond its end, started in steady state there. Its difference to
  the whole-record backward pass decays like the band-pass's slowest pole (0.5 Hz: about
  ``exp(-2.2 dt/s)``): below 1e-3 mV with a 4 s margin. At the record's end (``flush``) the
  last blocks are filtered backward from ``sosfiltfilt``'s odd extension, exactly as offline.

Every output sample depends on the signal and the fixed grid only, never on how the signal was
cut into chunks. The cost is one forward pass plus ``(B + margin) / B`` backward passes.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.signal as sps

from ecgcnn.data.preprocess import FILTER_KINDS, bandpass, remove_baseline_median
from ecgcnn.errors import EcgError


class StreamFilter:
    """Causal-in-blocks equivalent of ``apply_filter(x, fs, cfg)`` for ``(n, leads)`` samples.

    Parameters
    ----------
    cfg : ``FilterConfig`` (or a dict of its fields)
    fs : sampling rate in Hz
    n_leads : columns of the signal
    block_s : grid block of the backward pass (latency: a sample is final ``block_s +
        margin_s`` after it arrived at most)
    margin_s : backward-pass margin beyond each block (see the module docstring)

    Attributes
    ----------
    ready : int
        Samples whose filtered value is final (``out`` holds them from ``out0`` on).
    """

    def __init__(
        self, cfg, fs: float, n_leads: int = 1, block_s: float = 1.0, margin_s: float = 4.0
    ) -> None:
        c = SimpleNamespace(
            **(
                cfg
                if isinstance(cfg, dict)
                else {
                    k: getattr(cfg, k) for k in ("kind", "low_hz", "high_hz", "order", "median_s")
                }
            )
        )
        if c.kind not in FILTER_KINDS:
            raise EcgError(
                f"data.filter.kind: unknown filter '{c.kind}' (choose from {FILTER_KINDS})"
            )
        if block_s <= 0 or margin_s < 0:
            raise EcgError(
                f"filter block_s={block_s}, margin_s={margin_s}: need block_s > 0 and margin_s >= 0"
            )
        self.fs, self.n_leads = float(fs), int(n_leads)
        self.block = max(1, round(block_s * fs))
        self.margin = round(margin_s * fs)
        self.median = tuple(c.median_s) if "median" in c.kind else None
        # cascaded medians: each output needs half of each width on both sides
        self.reach = sum((round(w * fs) | 1) // 2 for w in self.median) if self.median else 0
        self.sos = None
        if "bandpass" in c.kind:
            bandpass(np.zeros(64, np.float32), fs, c.low_hz, c.high_hz, c.order)  # checks band
            self.sos = sps.butter(c.order, [c.low_hz, c.high_hz], btype="band", fs=fs, output="sos")
            # sosfiltfilt's default pad length
            ntaps = (
                2 * len(self.sos)
                + 1
                - min((self.sos[:, 2] == 0).sum(), (self.sos[:, 5] == 0).sum())
            )
            self.edge = 3 * int(ntaps)
            self.zi = sps.sosfilt_zi(self.sos)[:, :, None]  # (sections, 2, 1)
        self._raw = np.zeros((0, n_leads), np.float32)  # median stage input, from _raw0
        self._raw0 = 0
        self._med_done = 0  # samples through the median stage
        self._fwd_in: list[np.ndarray] = []  # band-pass input before the forward pass starts
        self._zf = None  # forward state
        self._yf = np.zeros((0, n_leads))  # forward output (float64), from _yf0
        self._yf0 = 0
        self._n_fwd = 0  # samples through the forward pass
        self._tail = np.zeros((0, n_leads), np.float32)
        self.out = np.zeros((n_leads, 0), np.float32)  # final samples, lead-major, from out0
        self.out0 = 0
        self.ready = 0
        self._n = 0
        self._flushed = False

    # ------------------------------------------------------------------------ public API
    def push(self, x: np.ndarray) -> None:
        """Raw samples ``(n, leads)``; afterwards ``ready`` may have advanced."""
        if self._flushed:
            raise EcgError("StreamFilter.push: already flushed")
        self._n += x.shape[0]
        self._stage_median(x, final=False)

    def flush(self) -> None:
        """End of the signal: every sample becomes final (the record edge as offline)."""
        if not self._flushed:
            self._stage_median(np.zeros((0, self.n_leads), np.float32), final=True)
            self._flushed = True

    def trim(self, keep_from: int) -> None:
        """Forget final samples before ``keep_from`` (amortised: copies now and then)."""
        cut = min(keep_from, self.ready) - self.out0
        if cut > 0 and cut > self.out.shape[1] // 2:
            self.out = self.out[:, cut:].copy()
            self.out0 += cut

    # ------------------------------------------------------------------------ stages
    def _stage_median(self, x: np.ndarray, final: bool) -> None:
        if self.median is None:
            self._stage_forward(np.asarray(x, np.float32), final)
            return
        self._raw = np.concatenate([self._raw, x]) if len(x) else self._raw
        n = self._raw0 + self._raw.shape[0]
        # whole blocks whose right reach has arrived (all that is left at the end)
        stop = n if final else (max(0, n - self.reach) // self.block) * self.block
        a = self._med_done
        if stop > a:
            lo = max(0, a - self.reach)
            hi = n if final else min(n, stop + self.reach)
            seg = self._raw[lo - self._raw0 : hi - self._raw0]
            y = remove_baseline_median(seg, self.fs, self.median)[a - lo : stop - lo]
            self._med_done = stop
            keep = max(0, stop - self.reach) - self._raw0
            if keep > 0:
                self._raw, self._raw0 = self._raw[keep:], self._raw0 + keep
            self._stage_forward(y, final)
        elif final:
            self._stage_forward(np.zeros((0, self.n_leads), np.float32), final)

    def _stage_forward(self, x: np.ndarray, final: bool) -> None:
        if self.sos is None:  # no band-pass: the input is final as it comes
            self._emit(x.astype(np.float32, copy=False))
            return
        e = self.edge
        if self._zf is None:
            self._fwd_in.append(x)
            have = sum(len(v) for v in self._fwd_in)
            if have <= e and not final:
                return
            x = np.concatenate(self._fwd_in)
            self._fwd_in = []
            if len(x) <= e:  # a signal too short for sosfiltfilt's padding
                pad = max(0, len(x) - 1)
                self._emit(sps.sosfiltfilt(self.sos, x, axis=0, padlen=pad).astype(np.float32))
                return
            # sosfiltfilt's odd extension of the start and its steady-state initial state
            ext = 2 * x[:1] - x[e:0:-1]
            z = self.zi * ext[:1]
            _, self._zf = sps.sosfilt(self.sos, ext, axis=0, zi=z)
        if len(x):
            y, self._zf = sps.sosfilt(self.sos, x, axis=0, zi=self._zf)
            self._yf = np.concatenate([self._yf, y])
            self._n_fwd += len(x)
            # the last inputs: the end extension mirrors them
            self._tail = np.concatenate([self._tail, x])[-(e + 1) :]
        if final:
            self._backward_end()
        else:
            self._backward_blocks()

    def _backward_blocks(self) -> None:
        """Backward pass of every grid block whose margin has arrived, all in one call."""
        b, m = self.block, self.margin
        k0 = self.ready // b
        k1 = max(k0, (self._n_fwd - m) // b)  # blocks [k0, k1) can be finished
        if k1 == k0:
            return
        starts = np.arange(k0, k1) * b - self._yf0
        rows = starts[None, :] + np.arange(b + m)[::-1, None]  # (b + m, blocks), reversed
        seg = self._yf[rows]  # (b + m, blocks, leads)
        z = self.zi[:, :, None, :] * seg[:1]  # (sections, 2, blocks, leads)
        y, _ = sps.sosfilt(self.sos, seg, axis=0, zi=z)
        y = y[::-1][:b]  # (b, blocks, leads), forward time
        self._emit(np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(-1, self.n_leads))
        drop = self.ready - self._yf0
        if drop > self._yf.shape[0] // 2:
            self._yf, self._yf0 = self._yf[drop:], self.ready

    def _backward_end(self) -> None:
        """The record's end: forward over the odd extension, backward from there (offline)."""
        e = self.edge
        if self._n_fwd == 0:
            return
        tail = self._tail
        ext = 2 * tail[-1:] - tail[-2 : -e - 2 : -1]
        y_ext, _ = sps.sosfilt(self.sos, ext, axis=0, zi=self._zf)
        seg = np.concatenate([self._yf[self.ready - self._yf0 :], y_ext])
        y, _ = sps.sosfilt(self.sos, seg[::-1], axis=0, zi=self.zi[:, :, 0, None] * seg[-1:])
        self._emit(y[::-1][: len(seg) - e].astype(np.float32))

    def _emit(self, y: np.ndarray) -> None:
        self.out = np.concatenate([self.out, y.T.astype(np.float32, copy=False)], axis=1)
        self.ready += y.shape[0]
