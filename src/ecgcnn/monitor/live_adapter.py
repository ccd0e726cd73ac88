"""The live page's only contact with the record readers, the beat stream and the alarm engine.

Everything the page needs from the rest of the project goes through these functions, so that
when ``monitor.stream`` / ``monitor.alarms`` / the record readers change, only this module is
re-pointed:

* :func:`read_signal` - one lead-selected record (WFDB at any path or under ``data.root``,
  EDF/EDF+; ``ecgcnn.data.records.load_record``);
* :func:`run_record` - a whole record through :func:`ecgcnn.monitor.stream.replay`, paced by
  the page (speed, pause) through a proxy of the alarm engine: ``replay`` calls
  ``alarms.push_signal(chunk, start)`` for every chunk before the stream sees it, which is
  the one place a caller can hold the replay and show the chunk;
* :func:`run_chunks` - an open-ended source (a growing CSV, standard input), for which
  ``replay`` (it takes the whole signal) has no entry point: it runs ``replay``'s per-chunk
  steps, and ``tests/test_live.py`` checks that its events equal ``replay``'s on one signal.
* :func:`parse_csv_lines`, :func:`follow_csv` - CSV text as it arrives (a growing file, stdin);
* :func:`beat_event` - the beat line of ``events.jsonl``, as ``ecgcnn-monitor`` writes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ecgcnn.errors import EcgError
from ecgcnn.monitor.alarms import AlarmEngine
from ecgcnn.monitor.stream import BeatStream, Classifier, replay

#: ``before_chunk(chunk (n, leads), start)``: called as each chunk arrives, before it is used.
ChunkHook = Callable[[np.ndarray, int], None]


def read_signal(
    root, record: str, leads: list[str], lead=None, fs=None
) -> tuple[str, np.ndarray, float]:
    """``(name, signal (n, leads) mV, fs)`` of a WFDB record or EDF/EDF+ file.

    ``record`` is a path (``/dir/100``, ``x.edf``) or a record name under ``root``;
    ``lead`` the record's lead to use in place of ``leads[0]`` (``ecgcnn.data.records``).
    Raises ``EcgError`` (one line naming the file) for an unknown record or a missing lead.
    """
    from ecgcnn.data.io import resolve_root
    from ecgcnn.data.records import load_record

    path = Path(record)
    if not path.is_absolute() and not path.parent.parts and not path.exists():
        path = Path(resolve_root(root)) / record  # a name such as 119 under data.root
    rec = load_record(path, leads=list(leads), lead=lead, fs=fs, annotator=None)
    return path.name, rec.signal, float(rec.fs)


def parse_csv_lines(lines: list[str], columns: list[int], source: str) -> np.ndarray:
    """``(n, len(columns))`` float32 samples of CSV text lines (``,`` or ``;``; a non-numeric
    line, such as a header, is skipped)."""
    rows = []
    for line in lines:
        vals = [v for v in line.replace(";", ",").split(",")]
        if not line.strip():
            continue
        try:
            nums = [float(v) for v in vals]
        except ValueError:
            continue  # a header line
        try:
            rows.append([nums[c] for c in columns])
        except IndexError:
            raise EcgError(f"columns: {columns} not in {source} ({len(nums)} columns)") from None
    out = np.asarray(rows, dtype=np.float32).reshape(-1, len(columns))
    if not np.all(np.isfinite(out)):
        raise EcgError(f"{source}: NaN or inf samples in columns {columns}")
    return out


def follow_csv(
    fh,
    columns: list[int],
    source: str,
    poll_s: float = 0.05,
    idle_timeout_s: float | None = None,
    follow: bool = True,
    stop: threading.Event | None = None,
) -> Iterator[np.ndarray]:
    """Chunks of a CSV as it grows: every complete line read so far, then wait for more.

    ``follow=False`` ends at the end of the file (standard input ends at EOF either way);
    ``idle_timeout_s`` ends a followed file that has not grown for that long.
    """
    part, idle = "", 0.0
    while stop is None or not stop.is_set():
        data = fh.read(1 << 16)
        if data:
            idle = 0.0
            text = part + data
            lines = text.split("\n")
            part = lines.pop()
            if lines:
                yield parse_csv_lines(lines, columns, source)
            continue
        if not follow or (idle_timeout_s is not None and idle >= idle_timeout_s):
            break
        time.sleep(poll_s)
        idle += poll_s
    if part.strip():
        yield parse_csv_lines([part], columns, source)


def beat_event(ev: dict, fs: float, classes: list[str]) -> dict:
    """``replay``'s beat callback dict as the ``events.jsonl`` line ``ecgcnn-monitor`` writes."""
    return {
        "type": "beat",
        "t": round(ev["sample"] / fs, 3),
        "sample": ev["sample"],
        "class": classes[ev["k"]],
        "p": round(ev["p"], 4),
    }


class _HookedAlarms:
    """The alarm engine with ``before_chunk`` run at each chunk's arrival (see module doc)."""

    def __init__(self, engine: AlarmEngine, before_chunk: ChunkHook) -> None:
        self.engine, self.before_chunk = engine, before_chunk

    def push_signal(self, chunk, start):
        self.before_chunk(chunk, start)
        return self.engine.push_signal(chunk, start)

    def push_beats(self, samples, classes, now, unreadable=None):
        # replay passes the quality stage's verdicts (monitor.quality) through
        return self.engine.push_beats(samples, classes, now, unreadable=unreadable)

    def flush(self, now):
        return self.engine.flush(now)


def _parts(data_cfg, fs, n_leads, alarms_cfg, classes, margin_s):
    return BeatStream(data_cfg, fs, n_leads, margin_s=margin_s), AlarmEngine(
        alarms_cfg, fs, classes
    )


def run_record(
    signal: np.ndarray,
    fs: float,
    data_cfg,
    classifier: Classifier,
    classes,
    alarms_cfg,
    chunk_s: float,
    margin_s: float,
    before_chunk: ChunkHook,
    on_event: Callable[[dict], None],
) -> None:
    """Replay ``signal`` with ``replay``; ``before_chunk`` may block (pacing, pause)."""
    stream, engine = _parts(data_cfg, fs, signal.shape[1], alarms_cfg, classes, margin_s)
    replay(
        signal,
        fs,
        stream,
        classifier,
        chunk_s,
        False,
        _HookedAlarms(engine, before_chunk),
        on_event,
    )


def run_chunks(
    chunks: Iterable[np.ndarray],
    fs: float,
    n_leads: int,
    data_cfg,
    classifier: Classifier,
    classes,
    alarms_cfg,
    margin_s: float,
    before_chunk: ChunkHook,
    on_event: Callable[[dict], None],
) -> None:
    """Feed an open-ended sequence of ``(n, n_leads)`` chunks; the same steps as ``replay``."""
    stream, engine = _parts(data_cfg, fs, n_leads, alarms_cfg, classes, margin_s)
    alarms = _HookedAlarms(engine, before_chunk)
    start = 0

    def beats(batch) -> list[dict]:
        if not len(batch):
            return []
        p = np.asarray(classifier(batch.x, batch.rr), dtype=np.float32)
        for r, pr in zip(batch.sample.tolist(), p):
            on_event({"type": "beat", "sample": r, "k": int(pr.argmax()), "p": float(pr.max())})
        return alarms.push_beats(batch.sample, p.argmax(1), stream.n_samples)

    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1, n_leads)
        if not len(chunk):
            continue
        new = alarms.push_signal(chunk, start)
        start += len(chunk)
        new += beats(stream.push(chunk))
        for a in new:
            on_event(a)
    new = beats(stream.flush()) + alarms.flush(stream.n_samples)
    for a in new:
        on_event(a)
