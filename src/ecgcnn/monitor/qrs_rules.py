"""The decision rules of :class:`~ecgcnn.monitor.qrs.StreamingQRSDetector` (Pan & Tompkins
1985, Hamilton & Tompkins 1986): adaptive threshold from the last QRS and noise peak heights,
refractory period, T-wave test and search-back, applied to candidates in time order.

A candidate is ``(i, height, slope, rpos)``: its integrated-signal index, peak height, largest
slope over the integration window and R-peak sample. The detector computes candidates from
the signal; the state machine here decides which are QRS complexes.
"""

from __future__ import annotations

from collections import deque

import numpy as np

Candidate = tuple[int, float, float, int]


class DecisionRules:
    """Decision state and rules, mixed into the detector (which sets the thresholds' settings:
    ``n_avg``, ``signal_rank``, ``threshold_coef``, ``refractory``, ``twave``, ...)."""

    def _reset_rules(self) -> None:
        self._spk: deque[float] = deque(maxlen=self.n_avg)  # last QRS peak heights
        self._npk: deque[float] = deque(maxlen=self.n_avg)  # last noise peak heights
        self._rr: deque[float] = deque(maxlen=self.n_avg)
        self._thr: float | None = None  # cached threshold and mean RR (None: recompute)
        self._mrr: float | None = None
        self._last_i = -1  # m-index of the last QRS (-1: none yet)
        self._last_r = -1  # its R peak
        self._last_slope = 0.0
        self._sb_from = 0  # search-back window starts after this m-index
        self._since: list[Candidate] = []  # noise candidates since then

    def _init_levels(self) -> None:
        m = np.concatenate(self._learn_buf) if self._learn_buf else np.zeros(1)
        self._learn_buf = []
        self._push_spk(np.sqrt(max(float(m.max()), self.m_floor)))
        self._push_npk(float(np.sqrt(np.median(m))))
        self._learned = True

    def _threshold(self) -> float:
        # cached: asked for every candidate, changed only when a level is pushed
        if self._thr is None:
            spk = sorted(self._spk)[int(self.signal_rank * (len(self._spk) - 1) + 0.5)]
            npk = sorted(self._npk)[len(self._npk) // 2] if self._npk else 0.0
            self._thr = max(npk + self.threshold_coef * (spk - npk), self.h_floor)
        return self._thr

    def _mean_rr(self) -> float:
        if self._mrr is None:
            rr = sum(self._rr) / len(self._rr) if self._rr else self.rr_init
            self._mrr = min(rr, self.rr_max)
        return self._mrr

    def _push_spk(self, v: float) -> None:
        self._spk.append(v)
        self._thr = None

    def _push_npk(self, v: float) -> None:
        self._npk.append(v)
        self._thr = None

    def _deadline(self) -> int:
        return self._sb_from + int(self.searchback_rr * self._mean_rr())

    def _accept(self, c: Candidate, out: list[int], searchback: bool) -> None:
        i, height, slope, rpos = c
        if self._last_i >= 0:
            self._rr.append(float(i - self._last_i))
            self._mrr = None
        # A beat found below the threshold moves the signal level only a quarter of the way
        # (Pan–Tompkins), so one small beat does not halve the threshold.
        self._push_spk(0.25 * height + 0.75 * self._spk[-1] if searchback else height)
        self._last_i, self._last_slope, self._last_r = i, slope, rpos
        self._sb_from = i
        self._since = [n for n in self._since if n[0] > i]
        out.append(rpos)

    def _in_refractory(self, c: Candidate) -> bool:
        # Both on the integrated peak and on the R peak: the R peak's offset from the
        # integrated peak varies with QRS shape, and two R peaks must never come closer.
        if self._last_i < 0:
            return False
        return c[0] - self._last_i < self.refractory or c[3] - self._last_r < self.refractory

    def _decide(self, c: Candidate, out: list[int]) -> None:
        i, height, slope, _ = c
        self._searchback_until(i - 1, out)
        if self._in_refractory(c):
            return
        if height > self._threshold():
            twave = (
                self._last_i >= 0
                and i - self._last_i < self.twave
                and slope < self.twave_slope_ratio * self._last_slope
            )
            if not twave:
                self._accept(c, out, searchback=False)
                return
        self._push_npk(height)
        self._since.append(c)

    def _searchback_until(self, known: int, out: list[int]) -> None:
        """Run every search-back whose deadline is ``<= known`` (all candidates up to it judged)."""
        while True:
            dl = self._deadline()
            if dl > known:
                return
            thr = self.searchback_coef * self._threshold()
            best = None
            for c in self._since:
                ok = c[0] <= dl and c[1] > thr and not self._in_refractory(c)
                if ok and (best is None or c[1] > best[1]):
                    best = c
            if best is not None:
                self._accept(best, out, searchback=True)
            else:
                # Nothing there: search the next stretch later, and let the signal level decay
                # so a beat that shrank (lead change, artefact that inflated the level) is found.
                self._since = [c for c in self._since if c[0] > dl]
                self._sb_from = dl
                self._push_spk(0.5 * self._spk[-1])
