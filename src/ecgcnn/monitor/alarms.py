"""Alarm rules on the stream of classified beats, and signal-quality loss on the raw signal.

Each rule has a severity and a refractory period. A rule's *episode* starts when its condition
becomes true and lasts while it stays true; an episode raises one alarm, and no new alarm of
that rule comes within ``refractory_s`` of the last one, so one run of VT, one stretch of
bigeminy or one flat line is one alarm.

Rules (thresholds in :class:`~ecgcnn.config.AlarmConfig`):

===========  =========================================================================
v_beat       any V beat
v_couplet    exactly two V beats in a row (raised at the beat that ends the pair, so a
             run that goes on to VT raises VT only)
vt           a run of >= ``vt_beats`` V beats (raised at the ``vt_beats``-th)
bigeminy     N,V alternating over >= ``bigeminy_cycles`` cycles
trigeminy    N,N,V repeating over >= ``trigeminy_cycles`` cycles
svt          a run of >= ``svt_beats`` S beats
pause        an RR interval > ``pause_s``
brady/tachy  mean of the last ``hr_beats`` RR intervals below ``brady_bpm`` / above ``tachy_bpm``
flat_line    peak-to-peak < ``flat_ptp_mv`` over ``quality_window_s``
saturation   >= ``saturation_run_s`` of identical samples at the extreme (max or min) of the
             last ``quality_window_s``, the signal leaving that value again inside the window
             (a clipped amplifier or an ADC at its rail); a stuck stretch longer than about
             ``quality_window_s - quality_hop_s`` is reported as a flat line instead
===========  =========================================================================

Signal quality is judged on a fixed grid of ``quality_hop_s`` steps (independent of the chunk
size) as soon as the samples arrive, which is always before the beats of that stretch leave
the beat stream (they wait seconds for their filter margin). Spans of lost signal then gate
the arrhythmia rules: an RR interval that overlaps one is not an RR interval (the QRS detector
saw nothing there), so it neither raises a pause nor enters the heart rate (no
pause/asystole or bradycardia alarm from a flat line), and beats inside one (or within one
``quality_hop_s`` of it: the steps into and out of a lead-off look like QRS complexes) are
skipped by the class rules. This follows EC57/bxb, which drops RR intervals that span shutdown or VF.
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import numpy as np

from ecgcnn.errors import EcgError

SEVERITIES = ("low", "medium", "high")
BEAT_RULES = ("v_beat", "v_couplet", "vt", "bigeminy", "trigeminy", "svt")
RHYTHM_RULES = ("pause", "brady", "tachy")
QUALITY_RULES = ("flat_line", "saturation")
RULES = BEAT_RULES + RHYTHM_RULES + QUALITY_RULES
_THRESHOLDS = (
    "vt_beats",
    "svt_beats",
    "bigeminy_cycles",
    "trigeminy_cycles",
    "pause_s",
    "hr_beats",
    "brady_bpm",
    "tachy_bpm",
)


class _Episode:
    """One rule's state: fires once per episode, not again within its refractory period."""

    def __init__(self, name: str, rule_cfg, fs: float) -> None:
        if rule_cfg.refractory_s < 0:
            raise EcgError(f"alarms.{name}.refractory_s: must be >= 0, got {rule_cfg.refractory_s}")
        self.name, self.fs = name, fs
        self.enabled, self.severity = bool(rule_cfg.enabled), str(rule_cfg.severity)
        self.refractory = rule_cfg.refractory_s * fs
        self.active = False
        self.last = -np.inf

    def update(self, cond: bool, start: int, at: int, now: int, **detail) -> list[dict]:
        """Condition at sample ``at`` (episode began at ``start``; ``now``: stream length)."""
        if not cond:
            self.active = False
            return []
        if self.active:
            return []
        self.active = True
        if not self.enabled or at - self.last < self.refractory:
            return []
        self.last = at
        fs = self.fs
        return [
            {
                "type": "alarm",
                "rule": self.name,
                "severity": self.severity,
                "t_start": round(start / fs, 3),
                "t": round(at / fs, 3),
                "t_raised": round(now / fs, 3),
                "sample": int(at),
                **detail,
            }
        ]


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
        self.rules = {k: _Episode(k, getattr(cfg, k), fs) for k in QUALITY_RULES}
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


class AlarmEngine:
    """Rules over classified beats plus signal quality; see the module docstring.

    Parameters
    ----------
    cfg : ``AlarmConfig``
    fs : sampling rate in Hz
    classes : class names, in the classifier's output order
    """

    def __init__(self, cfg, fs: float, classes=("N", "S", "V", "F", "Q")) -> None:
        # Plain values: an OmegaConf attribute read costs more than a beat's rules.
        self.cfg = SimpleNamespace(**{k: getattr(cfg, k) for k in _THRESHOLDS})
        self.fs = float(fs)
        for k in ("vt_beats", "svt_beats", "bigeminy_cycles", "trigeminy_cycles", "hr_beats"):
            if getattr(cfg, k) < 1:
                raise EcgError(f"alarms.{k}: must be >= 1, got {getattr(cfg, k)}")
        if cfg.vt_beats < 3:
            raise EcgError(
                f"alarms.vt_beats: must be >= 3 (two V beats are a couplet), got {cfg.vt_beats}"
            )
        self.classes = list(classes)
        self.quality = SignalQuality(cfg, fs)
        self.rules = {k: _Episode(k, getattr(cfg, k), fs) for k in BEAT_RULES + RHYTHM_RULES}
        cfg = self.cfg
        hist = max(2 * cfg.bigeminy_cycles, 3 * cfg.trigeminy_cycles, cfg.vt_beats) + 1
        self._cls: deque[str] = deque(maxlen=hist)  # classes of the last beats
        self._smp: deque[int] = deque(maxlen=hist)
        self._v_run = self._s_run = 0
        self._v_start = self._s_start = 0
        self._rr: deque[float] = deque(maxlen=int(cfg.hr_beats))
        self._rr_start: deque[int] = deque(maxlen=int(cfg.hr_beats))
        self._last_r: int | None = None
        # every phase of each repeating pattern, as strings of the last n classes
        self._patterns = []
        for name, unit, k in (
            ("bigeminy", "NV", cfg.bigeminy_cycles),
            ("trigeminy", "NNV", cfg.trigeminy_cycles),
        ):
            n = len(unit) * k
            self._patterns.append(
                (name, n, {(unit * (k + 1))[ph : ph + n] for ph in range(len(unit))})
            )

    def push_signal(self, chunk: np.ndarray, start: int) -> list[dict]:
        """Raw samples (first lead used) starting at absolute sample ``start``."""
        x = np.asarray(chunk)
        return self.quality.push(x[:, 0] if x.ndim == 2 else x, start)

    def flush(self, now: int) -> list[dict]:
        return []

    def push_beats(self, samples, classes, now: int, unreadable=None) -> list[dict]:
        """Classified beats in time order (``classes``: indices into ``self.classes``).

        ``unreadable``: per beat, judged unreadable by the quality stage
        (``monitor.quality``); such a beat is treated as lost signal: no class or rhythm rule
        sees it and the RR intervals and class patterns restart after it."""
        out: list[dict] = []
        flags = (
            np.zeros(len(np.asarray(samples)), bool)
            if unreadable is None
            else np.asarray(unreadable, bool)
        )
        for r, k, u in zip(
            np.asarray(samples).tolist(), np.asarray(classes).tolist(), flags.tolist()
        ):
            out += self._beat(int(r), self.classes[int(k)], now, bool(u))
        return out

    # ------------------------------------------------------------------------ rules
    def _beat(self, r: int, c: str, now: int, unreadable: bool = False) -> list[dict]:
        out: list[dict] = []
        q = self.quality
        prev = self._last_r
        self._last_r = r
        # The steps into and out of a lead-off look like QRS complexes to the detector: a beat
        # within one quality step of lost signal is part of the loss.
        inside = unreadable or q.overlaps(r - q.hop, r + q.hop)
        if inside or (prev is not None and q.overlaps(prev, r)):
            # Lost signal between the last beat and this one: no RR interval, and the class
            # pattern restarts (the beats in between were never seen).
            self._rr.clear()
            self._rr_start.clear()
            self._cls.clear()
            self._smp.clear()
            self._v_run = self._s_run = 0
            for k in ("v_couplet", "vt", "bigeminy", "trigeminy", "svt", "pause", "brady", "tachy"):
                self.rules[k].active = False
            if inside:
                self._last_r = None
                return out
        else:
            out += self._rhythm(prev, r, now)
        out += self._classes(r, c, now)
        return out

    def _rhythm(self, prev: int | None, r: int, now: int) -> list[dict]:
        if prev is None:
            return []
        cfg, fs = self.cfg, self.fs
        rr = (r - prev) / fs
        out = self.rules["pause"].update(rr > cfg.pause_s, prev, r, now, rr_s=round(rr, 3))
        self._rr.append(rr)
        self._rr_start.append(prev)
        full = len(self._rr) == cfg.hr_beats
        hr = 60.0 / (sum(self._rr) / len(self._rr))
        start = self._rr_start[0]
        out += self.rules["brady"].update(
            full and hr < cfg.brady_bpm, start, r, now, hr_bpm=round(hr, 1)
        )
        out += self.rules["tachy"].update(
            full and hr > cfg.tachy_bpm, start, r, now, hr_bpm=round(hr, 1)
        )
        return out

    def _classes(self, r: int, c: str, now: int) -> list[dict]:
        cfg, out = self.cfg, []
        self._cls.append(c)
        self._smp.append(r)
        # V runs: couplet when a run of exactly two ends, VT when a run reaches vt_beats.
        if c == "V":
            self._v_start = r if self._v_run == 0 else self._v_start
            self._v_run += 1
        else:
            out += self.rules["v_couplet"].update(self._v_run == 2, self._v_start, r, now)
            self.rules["v_couplet"].active = False
            self._v_run = 0
        out += self.rules["v_beat"].update(c == "V", r, r, now)
        if c == "V":
            self.rules["v_beat"].active = False  # each V beat is its own episode
        out += self.rules["vt"].update(
            self._v_run >= cfg.vt_beats, self._v_start, r, now, beats=self._v_run
        )
        if c == "S":
            self._s_start = r if self._s_run == 0 else self._s_start
            self._s_run += 1
        else:
            self._s_run = 0
        out += self.rules["svt"].update(
            self._s_run >= cfg.svt_beats, self._s_start, r, now, beats=self._s_run
        )
        for name, n, valid in self._patterns:
            last = "".join(list(self._cls)[-n:]) if len(self._cls) >= n else ""
            ok = last in valid
            out += self.rules[name].update(ok, self._smp[-n] if ok else r, r, now)
        return out
