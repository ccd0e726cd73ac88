"""The alarm rules evaluated for a whole batch of beats at once give exactly the alarms (and
the state) of taking the beats one by one, whatever the batches, lost-signal spans and
unreadable beats: checked against the per-beat rules they replaced, kept here as the
reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose

from ecgcnn.monitor.alarms import AlarmEngine


class PerBeat(AlarmEngine):
    """The former per-beat implementation (ecgcnn before the batch rules), as the oracle."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._ref_patterns = [(name, n, set(valid)) for name, n, valid in self._patterns]

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
        for name, n, valid in self._ref_patterns:
            last = "".join(list(self._cls)[-n:]) if len(self._cls) >= n else ""
            ok = last in valid
            out += self.rules[name].update(ok, self._smp[-n] if ok else r, r, now)
        return out


def _beats(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Beat times with pauses and fast runs; classes with V/S runs and N,V / N,N,V patterns."""
    rr = rng.choice([0.35, 0.8, 1.0, 2.5], size=n, p=[0.2, 0.6, 0.15, 0.05])
    samples = np.cumsum(np.round(rr * 360)).astype(np.int64) + 400
    parts, left = [], n
    while left > 0:
        kind = rng.integers(5)
        block = {
            0: [0] * int(rng.integers(1, 12)),
            1: [2] * int(rng.integers(1, 6)),
            2: [1] * int(rng.integers(1, 6)),
            3: [0, 2] * int(rng.integers(1, 6)),
            4: [0, 0, 2] * int(rng.integers(1, 5)),
        }[kind]
        parts += block
        left -= len(block)
    cls = np.asarray(parts[:n], np.int64)
    cls[rng.random(n) < 0.03] = 3  # a few F beats
    return samples, cls


@pytest.mark.parametrize("seed", range(12))
def test_batch_rules_equal_the_per_beat_rules(seed):
    rng = np.random.default_rng(seed)
    over = [
        f"alarms.hr_beats={int(rng.integers(1, 10))}",
        f"alarms.vt_beats={int(rng.integers(3, 6))}",
        f"alarms.bigeminy_cycles={int(rng.integers(1, 4))}",
        f"alarms.trigeminy_cycles={int(rng.integers(1, 4))}",
        f"alarms.brady_bpm={float(rng.choice([40.0, 70.0]))}",
        f"alarms.tachy_bpm={float(rng.choice([100.0, 150.0]))}",
        f"alarms.v_beat.refractory_s={float(rng.choice([0.0, 3.0]))}",
        f"alarms.pause.refractory_s={float(rng.choice([0.0, 20.0]))}",
        f"alarms.bigeminy.enabled={bool(rng.random() < 0.8)}",
    ]
    cfg = compose("monitor", over).alarms
    samples, cls = _beats(rng, 1500)
    unread = rng.random(len(samples)) < (0.02 if seed % 2 else 0.0)
    # lost-signal spans (sorted, disjoint), as SignalQuality keeps them
    edges = np.sort(rng.choice(np.arange(int(samples[-1])), size=2 * 8, replace=False))
    spans = [[int(a), int(a + min(b - a, 3000))] for a, b in edges.reshape(-1, 2)]
    a, b = AlarmEngine(cfg, 360.0), PerBeat(cfg, 360.0)
    a.quality.spans, b.quality.spans = spans, [list(s) for s in spans]
    cuts = np.sort(rng.choice(np.arange(1, len(samples)), size=40, replace=False))
    got, want = [], []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(samples)]):
        now = int(samples[hi - 1]) + 100
        got += a.push_beats(samples[lo:hi], cls[lo:hi], now, unreadable=unread[lo:hi])
        want += b.push_beats(samples[lo:hi], cls[lo:hi], now, unreadable=unread[lo:hi])
    assert len(want) > 50 and {w["rule"] for w in want} >= {"v_beat", "vt", "pause"}
    assert got == want
    for key in ("_cls", "_smp", "_rr", "_rr_start", "_v_run", "_s_run", "_last_r"):
        assert list(np.atleast_1d(getattr(a, key))) == list(np.atleast_1d(getattr(b, key))), key
    assert {k: r.active for k, r in a.rules.items()} == {k: r.active for k, r in b.rules.items()}
