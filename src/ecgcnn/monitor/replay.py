"""Replay: a signal fed to a :class:`~ecgcnn.monitor.stream.BeatStream` chunk by chunk (full
speed or paced to real time), its beats classified and passed to the alarm engine and an
optional quality stage, each beat's decision timed. ``ecgcnn-monitor`` replays records in
short chunks, ``ecgcnn-analyze`` a whole recording in large blocks: the same code path."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ecgcnn.errors import EcgError


@dataclass
class StreamResult:
    """Everything one replay produced."""

    peaks: np.ndarray  # int64, every detected R peak
    sample: np.ndarray  # int64 (n,) classified beats
    probs: np.ndarray  # float32 (n, K)
    ready: np.ndarray  # int64 (n,) stream length when each beat was emitted
    latency_s: np.ndarray  # float64 (n,) compute time from its chunk's arrival to its class
    alarms: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the replay loop
    cpu_seconds: float = 0.0  # CPU time of this process in the loop (other load excluded)
    duration_s: float = 0.0  # signal duration
    dropped: int = 0
    # quality stage (empty without one): per beat, in an unreadable segment; per segment
    unreadable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segments_unreadable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segment_samples: int = 0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def replay(
    signal: np.ndarray,
    fs: float,
    stream,
    classifier: Callable[[np.ndarray, np.ndarray], np.ndarray],
    chunk_s: float = 1.0,
    realtime: bool = False,
    alarms=None,
    on_event: Callable[[dict], None] | None = None,
    quality=None,
    quality_signal: np.ndarray | None = None,
) -> StreamResult:
    """Feed ``signal`` to ``stream`` in chunks and classify the beats each chunk makes ready.

    Parameters
    ----------
    signal : (n,) or (n, n_leads) raw samples in mV
    fs : sampling rate in Hz
    stream : a fresh :class:`BeatStream`
    classifier : ``classifier(x, rr) -> probs``; called once per chunk with every ready beat
    chunk_s : chunk length in seconds
    realtime : sleep so that each chunk is processed when its last sample would arrive live
    alarms : optional engine with ``push_signal(chunk, start)``, ``push_beats(samples,
        classes, now)``, ``flush(now)``, each returning alarm dicts (see ``monitor.alarms``)
    on_event : called with each beat and alarm event dict as it happens
    quality : optional :class:`~ecgcnn.monitor.quality.QualityStage`: a classified beat is
        held until its segment is judged; beats in unreadable segments are flagged
        (``StreamResult.unreadable``, ``"unreadable": True`` in their events) and reach the
        alarm engine as lost signal (no class or rhythm alarm from them)
    quality_signal : (n, leads) samples the quality stage judges, aligned with ``signal``
        (e.g. every lead of the record while the model reads one); default ``signal``

    Returns
    -------
    StreamResult
    """
    x = np.asarray(signal, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    step = round(chunk_s * fs)
    if step < 1:
        raise EcgError(f"chunk_s: {chunk_s} s is less than one sample at {fs} Hz")
    samples, probs, ready, lat, found = [], [], [], [], []
    held: list = []  # classified beats waiting for their segment's quality verdict
    bad_seg: list[bool] = []  # quality verdict of each judged segment
    unread: list[np.ndarray] = []
    t_start, c_start = time.perf_counter(), time.process_time()
    n = x.shape[0]
    for s in range(0, n + step, step):
        final = s >= n
        if realtime and not final:
            wait = t_start + min(s + step, n) / fs - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t0 = time.perf_counter()  # the chunk has arrived: its beats' data are available
        chunk = x[s : s + step]
        new: list[dict] = []
        if alarms is not None and not final:
            new += alarms.push_signal(chunk, s)
        batch = stream.flush() if final else stream.push(chunk)
        if quality is not None:
            v = (
                quality.flush()
                if final
                else quality.push(chunk if quality_signal is None else quality_signal[s : s + step])
            )
            bad_seg.extend(v.unreadable.tolist())
        if len(batch):
            p = np.asarray(classifier(batch.x, batch.rr), dtype=np.float32)
            t1 = time.perf_counter()
            samples.append(batch.sample)
            probs.append(p)
            ready.append(batch.ready)
            lat.append(np.full(len(batch), t1 - t0))
            held.extend(zip(batch.sample.tolist(), p))
        # beats leave once their segment is judged (all of them at once without a quality stage)
        go = (
            len(held)
            if quality is None or final
            else next(
                (i for i, (r, _) in enumerate(held) if r // quality.seg >= len(bad_seg)), len(held)
            )
        )
        if go:
            out, held = held[:go], held[go:]
            smp = np.asarray([r for r, _ in out], dtype=np.int64)
            bad = (
                np.zeros(go, bool)
                if quality is None
                else np.asarray(
                    [bad_seg[min(r // quality.seg, len(bad_seg) - 1)] for r in smp.tolist()],
                    dtype=bool,
                )
            )
            unread.append(bad)
            if on_event is not None:
                for (r, pr), u in zip(out, bad.tolist()):
                    on_event(
                        {
                            "type": "beat",
                            "sample": r,
                            "k": int(pr.argmax()),
                            "p": float(pr.max()),
                            **({"unreadable": True} if u else {}),
                        }
                    )
            if alarms is not None:
                new += alarms.push_beats(
                    smp,
                    np.asarray([pr.argmax() for _, pr in out]),
                    stream.n_samples,
                    unreadable=bad,
                )
        if alarms is not None and final:
            new += alarms.flush(stream.n_samples)
        if on_event is not None:
            for a in new:
                on_event(a)
        found += new
        if final:
            break
    seconds = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    k = probs[0].shape[1] if probs else 5
    cat = lambda v, d, shape: np.concatenate(v) if v else np.zeros(shape, d)
    return StreamResult(
        peaks=np.asarray(stream.peaks, dtype=np.int64),
        sample=cat(samples, np.int64, 0),
        probs=cat(probs, np.float32, (0, k)),
        ready=cat(ready, np.int64, 0),
        latency_s=cat(lat, np.float64, 0),
        alarms=found,
        seconds=seconds,
        cpu_seconds=cpu,
        duration_s=n / fs,
        dropped=stream.dropped,
        unreadable=cat(unread, bool, 0),
        segments_unreadable=np.asarray(bad_seg, dtype=bool),
        segment_samples=0 if quality is None else quality.seg,
    )
