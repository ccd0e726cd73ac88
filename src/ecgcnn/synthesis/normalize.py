"""Label-free, causal normalisation of a zero-shot person's beats (model inputs).

A person's CNN is fitted on the first minutes of their recording; their normal beats then
drift (electrode contact, posture, heart rate: amplitude down to 40 % in record 116, QRS-T
shape in 117 and 121), and a model that has only seen the first minutes reads the drifted
normal beats as new, abnormal shapes. Everything here uses only beats that came before (no
labels, no future beats): what a monitor can do online.

- ``beat_scale``: amplitude. ``std`` scales every window to unit deviation; ``running``
  divides each beat by the median peak-to-peak amplitude of the recent beats.
- ``template``: shape. ``add`` appends, ``replace`` substitutes, each window channel minus
  the sample-wise median of the ``template_window`` beats before it: a drifting normal
  shape stays near zero, an ectopic beat stands out against its own neighbours.

Synthetic beats have no history of their own: they are scaled and referenced like the
person's normal beats they were made from (the median over the person's training normals).
"""

from __future__ import annotations

import numpy as np

from ecgcnn.data.beats import TEMPLATES, running_median
from ecgcnn.errors import EcgError

BEAT_SCALES = ("none", "std", "running")


def unit_scale(x: np.ndarray) -> np.ndarray:
    """Every window channel divided by its own standard deviation."""
    return (x / (x.std(axis=-1, keepdims=True) + 1e-6)).astype(np.float32)


def running_scale(
    x: np.ndarray, window: int, ref: np.ndarray | None = None, history: np.ndarray | None = None
) -> np.ndarray:
    """Beats divided by the median peak-to-peak amplitude (beat channel) of the ``window``
    beats before each one, the beat included: slow amplitude drift is removed while a beat
    still shows how much larger or smaller it is than the person's recent beats (what a V beat
    looks like). ``ref``: divide every beat by the median amplitude of these beats instead
    (synthetic beats, scaled as the normals they came from). ``history``: the peak-to-peak
    amplitudes (:func:`beat_ptp`) of the beats that came before ``x`` (a stream, block by
    block: the same values as one call on all the beats).
    """
    ptp = beat_ptp(x)
    if ref is not None:
        scale = np.full(len(x), np.median(beat_ptp(ref)))
    else:
        past = np.zeros(0, ptp.dtype) if history is None else np.asarray(history, ptp.dtype)
        past = past[len(past) - min(len(past), window - 1) :]
        allp = np.concatenate([past, ptp])
        h = len(past)
        scale = np.empty(len(x), ptp.dtype)
        # beats with a whole window behind them: one vectorized median over a sliding view
        first = max(0, window - 1 - h)
        if first < len(x) and len(allp) >= window:
            scale[first:] = np.median(
                np.lib.stride_tricks.sliding_window_view(allp, window)[h + first - window + 1 :],
                axis=1,
            )
        for i in range(min(first, len(x))):  # the record's first beats: shorter windows
            scale[i] = np.median(allp[max(0, h + i - window + 1) : h + i + 1])
    return (x / (scale[:, None, None] + 1e-6)).astype(np.float32)


def beat_ptp(x: np.ndarray) -> np.ndarray:
    """Peak-to-peak amplitude of each window's first (beat) channel: ``(N, C, T) -> (N,)``."""
    return np.ptp(x[:, 0], axis=-1)


def running_template(
    x: np.ndarray,
    window: int,
    history: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """``(N, C, T)``: for each beat the sample-wise median of the last ``window`` beats before
    it (not itself). ``history``: beats that came before ``x`` (the first beats of ``x`` look
    back into it). ``eligible``: boolean over ``history`` then ``x``; only those beats enter a
    template (e.g. not premature ones, so that a run of ectopic beats does not become the
    reference). A beat with no eligible past is its own template."""
    if history is None or eligible is None:
        past = np.zeros((0, *x.shape[1:]), x.dtype) if history is None else history
        return running_median(np.concatenate([past, x]), window, eligible)[len(past) :]
    # only eligible history beats can enter a template: those are all the median needs
    old = eligible[: len(history)]
    return running_median(x, window, eligible[len(history) :], history=history[old])


def normalize_person(
    normals: np.ndarray,
    synth: np.ndarray,
    test: np.ndarray,
    beat_scale: str,
    scale_window: int,
    template: str,
    template_window: int,
    prematurity: tuple[np.ndarray, np.ndarray] | None = None,
    gate: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three window arrays of a person (training normals, synthetic, test; each
    ``(N, C, T)``, in time order where real) as the model sees them. ``prematurity``: the
    normals' and test beats' RR interval over the recent mean (``pre_local``); with ``gate``
    > 0 only beats with ``pre_local >= gate`` enter a running template."""
    if beat_scale not in BEAT_SCALES:
        raise EcgError(f"beat_scale: unknown '{beat_scale}' ({' | '.join(BEAT_SCALES)})")
    if template not in TEMPLATES:
        raise EcgError(f"template: unknown '{template}' ({' | '.join(TEMPLATES)})")
    if beat_scale == "running" and scale_window < 1:
        raise EcgError(f"scale_window: need at least 1 beat, got {scale_window}")
    if template != "none" and template_window < 1:
        raise EcgError(f"template_window: need at least 1 beat, got {template_window}")
    raw_normals = normals
    if beat_scale == "std":
        normals, synth, test = unit_scale(normals), unit_scale(synth), unit_scale(test)
    elif beat_scale == "running":
        normals, synth, test = (
            running_scale(normals, scale_window),
            running_scale(synth, scale_window, ref=raw_normals),
            running_scale(test, scale_window),
        )
    if template == "none":
        return normals, synth, test
    keep = None
    if gate > 0:
        if prematurity is None:
            raise EcgError("template_gate: needs the beats' pre_local RR feature")
        keep = np.concatenate(prematurity) >= gate
    keep_n = None if keep is None else keep[: len(normals)]
    refs = (
        running_template(normals, template_window, eligible=keep_n),
        np.broadcast_to(np.median(normals, axis=0), synth.shape),
        running_template(test, template_window, history=normals, eligible=keep),
    )
    out = []
    for x, ref in zip((normals, synth, test), refs):
        diff = (x - ref).astype(np.float32)
        out.append(np.concatenate([x, diff], axis=1) if template == "add" else diff)
    return out[0], out[1], out[2]
