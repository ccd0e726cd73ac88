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
from ecgcnn.monitor.episodes import SEVERITIES, Episode  # noqa: F401  (re-exported)
from ecgcnn.monitor.signal_loss import QUALITY_RULES, SignalQuality

BEAT_RULES = ("v_beat", "v_couplet", "vt", "bigeminy", "trigeminy", "svt")
RHYTHM_RULES = ("pause", "brady", "tachy")
RULES = BEAT_RULES + RHYTHM_RULES + QUALITY_RULES
#: rules whose episode ends where signal is lost (v_beat: every V beat is an episode anyway)
RESET_RULES = ("v_couplet", "vt", "bigeminy", "trigeminy", "svt", "pause", "brady", "tachy")
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
        self.rules = {k: Episode(k, getattr(cfg, k), fs) for k in BEAT_RULES + RHYTHM_RULES}
        cfg = self.cfg
        hist = max(2 * cfg.bigeminy_cycles, 3 * cfg.trigeminy_cycles, cfg.vt_beats) + 1
        # the state a batch of beats continues from (cleared where signal was lost)
        self._cls: deque[str] = deque(maxlen=hist)  # classes of the last beats
        self._smp: deque[int] = deque(maxlen=hist)
        self._v_run = self._s_run = 0
        self._v_start = self._s_start = 0
        self._rr: deque[float] = deque(maxlen=int(cfg.hr_beats))
        self._rr_start: deque[int] = deque(maxlen=int(cfg.hr_beats))
        self._last_r: int | None = None
        # every phase of each repeating pattern, as class sequences of the last n beats
        self._patterns = []
        for name, unit, k in (
            ("bigeminy", "NV", cfg.bigeminy_cycles),
            ("trigeminy", "NNV", cfg.trigeminy_cycles),
        ):
            n = len(unit) * k
            self._patterns.append(
                (name, n, sorted({(unit * (k + 1))[ph : ph + n] for ph in range(len(unit))}))
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
        sees it and the RR intervals and class patterns restart after it.

        Every rule is evaluated for the whole batch at once (arrays over the beats, the state
        of the last beats carried in); the alarms are those of taking the beats one by one.
        """
        r = np.asarray(samples, np.int64).ravel()
        n = len(r)
        if n == 0:
            return []
        k = np.asarray(classes).astype(np.int64).ravel()
        u = np.zeros(n, bool) if unreadable is None else np.asarray(unreadable, bool).ravel()
        q = self.quality
        # The steps into and out of a lead-off look like QRS complexes to the detector: a beat
        # within one quality step of lost signal is part of the loss.
        inside = u | q.touches(r - q.hop, r + q.hop)
        has_prev = np.empty(n, bool)
        prev = np.empty(n, np.int64)
        has_prev[0], prev[0] = self._last_r is not None, self._last_r or 0
        has_prev[1:], prev[1:] = ~inside[:-1], r[:-1]
        # lost signal between the last beat and this one: no RR interval, patterns restart
        gap = has_prev & ~inside & q.touches(prev, r)
        ev = np.flatnonzero(~inside)  # the beats the rules see
        m = len(ev)
        # a state reset before evaluated beat j: a gap there, or lost beats since the last one
        reset = gap[ev] | (np.diff(ev, prepend=-1) > 1)
        seg = np.cumsum(reset)  # segment of each evaluated beat (0: continues the state)
        ended_lost = bool(inside[-1])  # the batch ends inside lost signal: all state cleared
        found: list[tuple[int, int, dict]] = []  # (beat, rule order, alarm)
        if m:
            re, ce = r[ev], np.asarray(self.classes, dtype=object)[k[ev]]
            found += self._rhythm_rules(re, prev[ev], has_prev[ev] & ~gap[ev], seg, ev, now)
            found += self._class_rules(re, ce, reset, seg, ev, now, ended_lost)
        # the state after the batch
        if ended_lost or not m:
            for d in (self._rr, self._rr_start, self._cls, self._smp):
                d.clear()
            self._v_run = self._s_run = 0
            for name in RESET_RULES:
                self.rules[name].active = False
        self._last_r = None if ended_lost else int(r[-1])
        found.sort(key=lambda t: (t[0], t[1]))
        return [a for _, _, a in found]

    # ------------------------------------------------------------------------ rules
    def _rhythm_rules(self, r, prev, has_rr, seg, ev, now) -> list:
        """Pause, brady and tachy at the beats with an RR interval (``has_rr``)."""
        cfg, fs, hb = self.cfg, self.fs, int(self.cfg.hr_beats)
        j = np.flatnonzero(has_rr)
        last_seg = int(seg[-1])
        keep = not seg[0] if len(seg) else True  # the carried intervals continue segment 0
        c_rr = list(self._rr) if keep else []
        c_st = list(self._rr_start) if keep else []
        rr_all = np.asarray(c_rr + ((r[j] - prev[j]) / fs).tolist(), np.float64)
        st_all = np.asarray(c_st + prev[j].tolist(), np.int64)
        seg_all = np.concatenate([np.zeros(len(c_rr), np.int64), seg[j]])
        nc = len(c_rr)
        out = []
        if len(j):
            p = np.arange(nc, len(rr_all))
            first = np.searchsorted(seg_all, seg_all[p], side="left")  # segment's first RR
            lo = np.maximum(first, p - hb + 1)
            acc = np.zeros(len(p))
            for w in range(hb):  # oldest first, as sum() over the deque: the same rounding
                i = lo + w
                acc += np.where(i <= p, rr_all[np.minimum(i, p)], 0.0)
            cnt = p - lo + 1
            hr = 60.0 / (acc / cnt)
            rr, rr_l, hr_l = rr_all[p], rr_all[p].tolist(), hr.tolist()
            full = cnt == hb
            sj = seg[j]
            rst = np.diff(sj, prepend=0) > 0  # a reset since the last interval
            after = bool(sj[-1] != last_seg)
            at, beat = r[j], ev[j]
            for order, name, cond, start, detail in (
                (0, "pause", rr > cfg.pause_s, prev[j], {"rr_s": lambda i: round(rr_l[i], 3)}),
                (1, "brady", full & (hr < cfg.brady_bpm), st_all[lo], None),
                (2, "tachy", full & (hr > cfg.tachy_bpm), st_all[lo], None),
            ):
                d = detail or {"hr_bpm": lambda i: round(hr_l[i], 1)}
                for i, a in self.rules[name].run(cond, rst, at, start, now, d, after):
                    out.append((int(beat[i]), order, a))
        else:
            for name in ("pause", "brady", "tachy"):
                if last_seg > 0:
                    self.rules[name].active = False
        # carried intervals: the last hr_beats of the last segment
        tail = seg_all == last_seg
        self._rr.clear()
        self._rr_start.clear()
        self._rr.extend(rr_all[tail][-hb:].tolist())
        self._rr_start.extend(st_all[tail][-hb:].tolist())
        return out

    def _runs(self, hit, reset, carried: int):
        """Length of the run of ``hit`` beats ending at each beat (0 where not hit), and the
        index of its first beat (negative: it began before this batch)."""
        j = np.arange(len(hit))
        base = np.where(~hit, j, np.where(reset, j - 1, -(2**62)))
        last = np.maximum.accumulate(np.concatenate([[-1 - carried], base]))[1:]
        return np.where(hit, j - last, 0), last + 1

    def _class_rules(self, r, c, reset, seg, ev, now, ended_lost) -> list:
        cfg, out = self.cfg, []
        m = len(r)
        keep = not reset[0]
        is_v, is_s = c == "V", c == "S"
        v_run, v_first = self._runs(is_v, reset, self._v_run if keep else 0)
        s_run, s_first = self._runs(is_s, reset, self._s_run if keep else 0)
        v_start = np.where(v_first >= 0, r[np.clip(v_first, 0, m - 1)], self._v_start)
        s_start = np.where(s_first >= 0, r[np.clip(s_first, 0, m - 1)], self._s_start)
        # V runs: couplet when a run of exactly two ends, VT when a run reaches vt_beats
        run_before = np.concatenate([[self._v_run if keep else 0], v_run[:-1]])
        run_before[reset] = 0
        start_before = np.concatenate([[self._v_start], v_start[:-1]])
        nv = np.flatnonzero(~is_v)
        always = np.ones(m, bool)  # rules whose state never outlives one beat
        rules = [
            (3, "v_couplet", nv, run_before[nv] == 2, always[nv], r[nv], start_before[nv], None),
            (4, "v_beat", np.flatnonzero(is_v), None, None, None, None, None),
            (5, "vt", None, v_run >= cfg.vt_beats, reset, r, v_start, {"beats": v_run}),
            (6, "svt", None, s_run >= cfg.svt_beats, reset, r, s_start, {"beats": s_run}),
        ]
        # repeating patterns over the last n classes of the segment (carried ones first)
        cc = list(self._cls) if keep else []
        cs = list(self._smp) if keep else []
        codes = np.asarray(cc + c.tolist(), dtype=object)
        smp = np.asarray(cs + r.tolist(), np.int64)
        off = len(cc)
        first_ext = np.where(seg == 0, 0, off + np.searchsorted(seg, seg, side="left"))
        pos = off + np.arange(m)
        for order, (name, n, valid) in zip((7, 8), self._patterns):
            ok = pos - first_ext + 1 >= n
            if ok.any():
                win = np.lib.stride_tricks.sliding_window_view(
                    np.concatenate([np.full(n - 1, "", dtype=object), codes]), n
                )[pos]
                match = np.zeros(m, bool)
                for pat in valid:
                    match |= (win == np.asarray(list(pat), dtype=object)).all(axis=1)
                ok &= match
            start = np.where(ok, smp[np.clip(pos - n + 1, 0, None)], r)
            rules.append((order, name, None, ok, reset, r, start, None))
        for order, name, at_idx, cond, rst, at, start, detail in rules:
            if name == "v_beat":  # each V beat is its own episode
                idx = at_idx
                res = self.rules[name].run(
                    np.ones(len(idx), bool), np.ones(len(idx), bool), r[idx], r[idx], now
                )
                self.rules[name].active = False
                out += [(int(ev[idx[i]]), order, a) for i, a in res]
                continue
            d = {k: (lambda i, v=v: int(v[i])) for k, v in (detail or {}).items()}
            res = self.rules[name].run(cond, rst, at, start, now, d, ended_lost)
            if name == "v_couplet":
                self.rules[name].active = False
            beats = ev if at_idx is None else ev[at_idx]
            out += [(int(beats[i]), order, a) for i, a in res]
        # the state the next batch continues from
        last = seg == seg[-1]
        self._cls.clear()
        self._smp.clear()
        self._cls.extend(
            codes[off:][last].tolist() if not (keep and seg[-1] == 0) else codes.tolist()
        )
        self._smp.extend(smp[off:][last].tolist() if not (keep and seg[-1] == 0) else smp.tolist())
        self._v_run, self._s_run = int(v_run[-1]), int(s_run[-1])
        if is_v.any():
            self._v_start = int(v_start[np.flatnonzero(is_v)[-1]])
        if is_s.any():
            self._s_start = int(s_start[np.flatnonzero(is_s)[-1]])
        return out
