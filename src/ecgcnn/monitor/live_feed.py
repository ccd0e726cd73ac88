"""The live page's shared state (:class:`LiveFeed`): what the monitor has produced so far,
guarded by one lock and bounded, with the replay pacing (speed, pause, next alarm); see
:mod:`ecgcnn.monitor.live`."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ecgcnn.errors import EcgError


class LiveFeed:
    """What the monitor has produced so far, for the page; thread-safe.

    Parameters
    ----------
    fs : sampling rate in Hz
    classes : class names of the beat events
    speed : initial replay speed (x real time; 0 = as fast as possible)
    keep_s : seconds of signal kept for the page (a page that falls behind skips ahead)
    paced : whether :meth:`wait` holds the producer (a replayed record) or not (a live source)
    title : what the page calls the stream (record name, file)
    """

    def __init__(
        self,
        fs: float,
        classes,
        speed: float = 1.0,
        keep_s: float = 30.0,
        paced: bool = True,
        title: str = "",
    ) -> None:
        if speed < 0:
            raise EcgError(f"speed: must be >= 0 (0 = as fast as possible), got {speed}")
        self.fs, self.classes, self.paced, self.title = float(fs), list(classes), paced, title
        self.lock = threading.Condition()
        self._ring = np.zeros(max(1, round(keep_s * fs)), np.float32)
        self.n = 0  # samples received
        self.beats: deque[tuple[int, str, float, float]] = deque(maxlen=5000)
        self.n_beats = 0
        self.alarms: list[dict] = []
        self.counts = dict.fromkeys(self.classes, 0)
        self._rr: deque[int] = deque(maxlen=9)  # last R peaks, for the heart rate
        self.done = False
        self.error: str | None = None
        self.speed, self.paused, self.seeking = float(speed), False, False
        self._base_t, self._base_wall = 0.0, time.perf_counter()

    # ------------------------------------------------------------------ producer side
    def push_samples(self, chunk: np.ndarray, start: int) -> None:
        """Raw first-lead samples starting at absolute sample ``start`` (= samples so far)."""
        x = np.asarray(chunk, dtype=np.float32)
        x = x[:, 0] if x.ndim == 2 else x
        m = len(self._ring)
        with self.lock:
            x = x[-m:]
            idx = (start + len(chunk) - len(x) + np.arange(len(x))) % m
            self._ring[idx] = x
            self.n = start + len(chunk)

    def push_event(self, ev: dict) -> None:
        """A beat (``events.jsonl`` form: sample, class, p) or alarm event."""
        with self.lock:
            if ev["type"] == "beat":
                s = int(ev["sample"])
                y = (
                    float(self._ring[s % len(self._ring)])
                    if self.n - len(self._ring) <= s < self.n
                    else float("nan")
                )
                self.beats.append((s, ev["class"], float(ev["p"]), y))
                self.n_beats += 1
                self.counts[ev["class"]] = self.counts.get(ev["class"], 0) + 1
                self._rr.append(s)
            else:
                self.alarms.append(dict(ev))
                if self.seeking:  # "next alarm": stop here, the alarm is on the strip
                    self.seeking = False
                    self._set(paused=True)

    def finish(self, error: str | None = None) -> None:
        with self.lock:
            self.done, self.error = True, error
            self.lock.notify_all()

    def wait(self, start: int, n: int) -> None:
        """Hold a paced producer until chunk ``[start, start + n)`` is due."""
        if not self.paced:
            return
        due = (start + n) / self.fs
        with self.lock:
            while True:
                allowed = self._allowed()
                if due <= allowed:
                    return
                wait = (
                    0.1
                    if np.isinf(allowed) or self.paused
                    else (due - allowed) / max(self.speed, 1e-9)
                )
                self.lock.wait(min(wait, 0.1))

    # ------------------------------------------------------------------ controls
    def _allowed(self) -> float:
        if self.seeking or (self.speed == 0 and not self.paused):
            return np.inf
        if self.paused:
            return self._base_t
        return self._base_t + (time.perf_counter() - self._base_wall) * self.speed

    def _set(self, **kw) -> None:
        # Restart the clock from where the stream is, so a change never makes it jump.
        self._base_t, self._base_wall = self.n / self.fs, time.perf_counter()
        for k, v in kw.items():
            setattr(self, k, v)
        self.lock.notify_all()

    def set_speed(self, speed: float) -> None:
        with self.lock:
            self._set(speed=float(speed))

    def set_paused(self, paused: bool) -> None:
        with self.lock:
            self._set(paused=bool(paused), seeking=False)

    def next_alarm(self) -> None:
        with self.lock:
            self._set(paused=False, seeking=True)

    # ------------------------------------------------------------------ consumer side
    def samples_since(self, cursor: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(t s, mV, new cursor)`` of the samples after ``cursor`` still kept."""
        with self.lock:
            n, m = self.n, len(self._ring)
            a = max(cursor, n - m)
            idx = np.arange(a, n)
            return idx / self.fs, self._ring[idx % m].copy(), n

    def beats_since(self, cursor: int) -> tuple[list[tuple], int]:
        with self.lock:
            avail = min(self.n_beats - cursor, len(self.beats))
            return list(self.beats)[len(self.beats) - avail :] if avail > 0 else [], self.n_beats

    def heart_rate(self) -> float | None:
        """Beats per minute over the last 8 RR intervals of classified beats."""
        with self.lock:
            r = np.asarray(self._rr)
        return None if len(r) < 2 else float(60 * self.fs / np.diff(r).mean())

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "t": self.n / self.fs,
                "alarms": len(self.alarms),
                "counts": dict(self.counts),
                "speed": self.speed,
                "paused": self.paused,
                "seeking": self.seeking,
                "done": self.done,
                "error": self.error,
            }


# ---------------------------------------------------------------------------- server
