"""One alarm rule's episodes: raised once when its condition becomes true, not again within
its refractory period (see :mod:`ecgcnn.monitor.alarms`)."""

from __future__ import annotations

import numpy as np

from ecgcnn.errors import EcgError

SEVERITIES = ("low", "medium", "high")


class Episode:
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

    def run(
        self, cond, reset, at, start, now: int, detail: dict | None = None, reset_after=False
    ) -> list[tuple[int, dict]]:
        """:meth:`update` over a sequence of evaluations at once: the same alarms and state.

        Parameters
        ----------
        cond : bool (m,) the condition at each evaluation
        reset : bool (m,) the state was forced inactive just before this evaluation
        at, start : int (m,) samples, as in :meth:`update`
        now : stream length
        detail : name -> function of the evaluation index giving that detail of its alarm
            (called for raised alarms only)
        reset_after : the state is forced inactive after the last evaluation too

        Returns
        -------
        ``(evaluation index, alarm)`` pairs, in order.
        """
        cond = np.asarray(cond, bool)
        out: list[tuple[int, dict]] = []
        if len(cond):
            prev = np.empty(len(cond), bool)
            prev[0], prev[1:] = self.active, cond[:-1]
            rising = np.flatnonzero(cond & ~(prev & ~np.asarray(reset, bool)))
            fs = self.fs
            for j in rising.tolist():  # episode starts are rare: the refractory test per start
                a = int(at[j])
                if not self.enabled or a - self.last < self.refractory:
                    continue
                self.last = a
                alarm = {
                    "type": "alarm",
                    "rule": self.name,
                    "severity": self.severity,
                    "t_start": round(int(start[j]) / fs, 3),
                    "t": round(a / fs, 3),
                    "t_raised": round(now / fs, 3),
                    "sample": a,
                }
                out.append((j, alarm | {k: f(j) for k, f in (detail or {}).items()}))
            self.active = bool(cond[-1])
        if reset_after:
            self.active = False
        return out
