"""Signal loss on the raw first lead: flat line and saturation on a fixed grid (see
:mod:`ecgcnn.monitor.alarms` for the rules and how the spans gate the beat rules)."""

from __future__ import annotations

import numpy as np

from ecgcnn.errors import EcgError
from ecgcnn.monitor.episodes import Episode

QUALITY_RULES = ("flat_line", "saturation")


class SignalQuality:
    """Flat line and saturation on a fixed grid of the raw first lead (chunk-invariant)."""

    def __init__(self, cfg, fs: float) -> None:
        for k in ("quality_window_s", "quality_hop_s", "saturation_run_s"):
            if getattr(cfg, k) <= 0:
                raise EcgError(f"alarms.{k}: must be > 0, got {getattr(cfg, k)}")
        self.win = max(2, round(cfg.quality_window_s * fs))
        self.hop = max(1, round(cfg.quality_hop_s * fs))
        self.run = max(2, round(cfg.saturation_run_s * fs))
        self.flat_ptp = float(cfg.flat_ptp_mv)
        self.rules = {k: Episode(k, getattr(cfg, k), fs) for k in QUALITY_RULES}
        self.spans: list[list[int]] = []  # merged [start, stop) of lost signal
        self._buf = np.zeros(0, np.float32)
        self._b0 = 0
        self._next_end = self.win  # end sample of the next grid window to judge

    def push(self, x: np.ndarray, start: int) -> list[dict]:
        if start != self._b0 + self._buf.size:
            raise EcgError(
                f"SignalQuality.push: chunk starts at {start}, expected {self._b0 + self._buf.size}"
            )
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float32)])
        out: list[dict] = []
        n = self._b0 + self._buf.size
        ends = np.arange(self._next_end, n + 1, self.hop)
        if not len(ends):
            return out
        # every window of this push at once: peak-to-peak, and whether it holds a run of
        # identical samples long enough for saturation (rare: only those are searched)
        lo = ends - self.win - self._b0
        view = np.lib.stride_tricks.sliding_window_view(self._buf, self.win)[lo]
        flat_all = (view.max(axis=1) - view.min(axis=1)) < self.flat_ptp
        change = np.flatnonzero(np.diff(self._buf) != 0) + 1
        starts = np.concatenate([[0], change])
        stops = np.concatenate([change, [self._buf.size]])
        long = (stops - starts) >= self.run
        r0, r1 = starts[long], stops[long]
        for j, e in enumerate(ends.tolist()):
            flat = bool(flat_all[j])
            a0 = lo[j]
            sat = None
            if not flat and len(r0) and ((r0 < a0 + self.win) & (r1 > a0)).any():
                sat = self._stuck_run(view[j])
            if flat:
                self._mark(e - self.win, e)
            if sat is not None:
                self._mark(e - self.win + sat[0], e - self.win + sat[1])
            rf, rs = self.rules["flat_line"], self.rules["saturation"]
            if flat or rf.active:
                out += rf.update(flat, e - self.win, e, n)
            if sat is not None or rs.active:
                a = e - self.win + (sat[0] if sat else 0)
                out += rs.update(sat is not None, a, e, n)
        self._next_end = int(ends[-1]) + self.hop
        keep = self._next_end - self.win - self._b0
        if keep > 0:
            self._buf, self._b0 = self._buf[keep:], self._b0 + keep
        return out

    def _stuck_run(self, w: np.ndarray) -> tuple[int, int] | None:
        """First run of >= ``self.run`` identical samples at the window's max or min that lies
        strictly inside the window: the signal reaches the rail and leaves it again. A stuck
        stretch reaching a window edge may be the start or end of a lead-off flat line, which
        sits at the window's extreme too; it is left to the flat-line rule."""
        for v in (w.max(), w.min()):
            at = np.flatnonzero(w == v)
            if at.size < self.run:
                continue
            # Runs of consecutive indices: split where the index jumps.
            breaks = np.flatnonzero(np.diff(at) != 1)
            starts = at[np.concatenate([[0], breaks + 1])]
            stops = at[np.concatenate([breaks, [at.size - 1]])] + 1
            ok = np.flatnonzero((stops - starts >= self.run) & (starts > 0) & (stops < w.size))
            if ok.size:
                return int(starts[ok[0]]), int(stops[ok[0]])
        return None

    def _mark(self, a: int, b: int) -> None:
        if self.spans and a <= self.spans[-1][1]:
            self.spans[-1][1] = max(self.spans[-1][1], b)
        else:
            self.spans.append([a, b])

    def overlaps(self, a: int, b: int) -> bool:
        """Does ``[a, b]`` touch a span of lost signal?"""
        return any(s < b and e > a for s, e in reversed(self.spans[-64:]))

    def touches(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:meth:`overlaps` for arrays of intervals ``[a, b]`` (the same last 64 spans)."""
        spans = self.spans[-64:]
        if not spans:
            return np.zeros(np.shape(a), bool)
        s, e = (np.asarray(v, np.int64) for v in zip(*spans))
        # spans are sorted and disjoint: the first one ending after a decides
        j = np.searchsorted(e, a, side="right")
        return (j < len(s)) & (s[np.minimum(j, len(s) - 1)] < b)
