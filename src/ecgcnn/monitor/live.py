"""The live monitoring page: a stream (record replay, growing CSV, stdin) feeding a Bokeh page.

A producer thread runs the monitor (:mod:`ecgcnn.monitor.live_adapter`: QRS detection, beat
classification, alarms) and writes every sample, beat and alarm into a :class:`LiveFeed`;
each browser session of the Bokeh server (:mod:`ecgcnn.monitor.live_page`) pulls what is new
from the feed in a periodic callback and streams it to the page in batches. The feed is the
only shared state; it is guarded by one lock and bounded (the last ``keep_s`` of signal).

Pacing: a replayed record is held by :meth:`LiveFeed.wait` before each chunk so that stream
time advances at ``speed`` x wall time (``0`` = as fast as possible), and not at all while
paused; "next alarm" runs at full speed until the next alarm is raised, then pauses. A live
source (``follow``, stdin) is never held: pausing freezes the page only, the monitor and its
alarms go on.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from ecgcnn.errors import EcgError
from ecgcnn.monitor.live_feed import LiveFeed

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_port(host: str, port: int) -> None:
    """One line naming the port if it cannot be listened on (checked before starting)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            raise EcgError(f"port: {port} on {host} cannot be used ({exc.strerror})") from None


def serve(
    feed: LiveFeed,
    produce: Callable[[], None],
    host: str,
    port: int,
    window_s: float,
    refresh_ms: int,
    linger_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the page on ``host:port`` while ``produce()`` runs in a background thread.

    Parameters
    ----------
    feed : the :class:`LiveFeed` that ``produce`` fills
    produce : runs the monitor to the end of its source (exceptions end up in ``feed.error``)
    host, port : where to listen; a host other than loopback is logged as a warning
    window_s, refresh_ms : strip length and how often each page pulls new data
    linger_s : stop serving this long after the stream ended (None: until interrupted)
    on_ready : called with the page's URL once the server listens
    stop : setting this event stops the server
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from ecgcnn.monitor.live_page import make_document

    check_port(host, port)
    if host not in LOOPBACK:
        log.warning(
            "host=%s: the live page is open to other hosts on port %d (no "
            "authentication, plain HTTP)",
            host,
            port,
        )
    origins = [f"{h}:{port}" for h in ("127.0.0.1", "localhost")]
    if host not in LOOPBACK:
        origins.append("*")
    app = Application(FunctionHandler(lambda doc: make_document(doc, feed, window_s, refresh_ms)))
    server = Server(
        {"/": app}, address=host, port=int(port), allow_websocket_origin=origins, num_procs=1
    )
    loop = server.io_loop

    failed: list[BaseException] = []

    def run() -> None:
        try:
            produce()
            feed.finish()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread below)
            feed.finish(str(exc))
            failed.append(exc)
            loop.add_callback(loop.stop)
            return
        if linger_s is not None:
            loop.add_callback(lambda: loop.call_later(linger_s, loop.stop))

    server.start()
    if stop is not None:
        from tornado.ioloop import PeriodicCallback

        loop.add_callback(
            lambda: PeriodicCallback(lambda: stop.is_set() and loop.stop(), 100).start()
        )
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    log.info("live page at %s", url)
    if on_ready is not None:
        on_ready(url)
    worker = threading.Thread(target=run, name="ecgcnn-live-producer", daemon=True)
    worker.start()
    try:
        loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    if failed:
        raise failed[0]


class EventLog:
    """``events.jsonl``, one line per event, flushed as it happens (the page reads the same)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.exists():
            raise EcgError(f"{path}: already exists (nothing is overwritten)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "x", buffering=1)  # noqa: SIM115 (open for the whole stream)

    def write(self, ev: dict) -> None:
        self.fh.write(json.dumps(ev) + "\n")

    def close(self) -> None:
        self.fh.close()


# ---------------------------------------------------------------------------- the whole run
def run_live(
    cfg,
    out_dir: Path,
    classifier,
    data_cfg,
    classes,
    on_ready: Callable[[str, LiveFeed], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveFeed:
    """Serve the page for ``cfg.record`` classified by ``classifier``; write ``events.jsonl``.

    Parameters
    ----------
    cfg : ``LiveConfig``
    out_dir : where ``events.jsonl`` goes (the page shows exactly these events)
    classifier, data_cfg, classes : the model (``(x, rr) -> probs``), the ``DataConfig`` its
        beats need, and its class names
    on_ready : called with the page's URL and the feed once the page listens
    stop : optional ``threading.Event``; setting it stops the server (scripts, tests)

    Returns
    -------
    The feed, at the end (counts, alarms).
    """
    import sys
    from contextlib import nullcontext

    from ecgcnn.monitor import live_adapter as mon

    if not cfg.record:
        raise EcgError(
            "record: required (a record name under data.root, a CSV file, or - "
            "for CSV lines on standard input)"
        )
    for key, ok in (
        ("chunk_s", cfg.chunk_s > 0),
        ("window_s", cfg.window_s > 0),
        ("refresh_ms", cfg.refresh_ms >= 10),
        ("port", 0 < cfg.port < 65536),
    ):
        if not ok:
            raise EcgError(f"{key}: {getattr(cfg, key)} is out of range")
    check_port(cfg.host, cfg.port)
    classes = list(classes)
    leads = list(cfg.leads) or list(data_cfg.leads)
    rec = str(cfg.record)
    is_csv = rec == "-" or rec.lower().endswith((".csv", ".txt"))
    if cfg.follow and not (is_csv and rec != "-"):
        raise EcgError(f"follow: needs a CSV file as record (got record={rec})")
    if is_csv:
        if cfg.fs is None:
            raise EcgError(f"fs: required with record={rec} (CSV lines carry no sampling rate)")
        if len(cfg.columns) != len(data_cfg.leads):
            raise EcgError(
                f"columns: {list(cfg.columns)} gives {len(cfg.columns)} lead(s), the "
                f"model takes {len(data_cfg.leads)} ({list(data_cfg.leads)})"
            )
        fs, name, cols = (
            float(cfg.fs),
            ("stdin" if rec == "-" else Path(rec).name),
            list(cfg.columns),
        )
        if rec != "-" and not Path(rec).is_file():
            raise EcgError(f"record: {rec}: file not found")
        signal = None
        if rec != "-" and not cfg.follow:
            with open(rec) as fh:
                signal = mon.parse_csv_lines(fh.read().splitlines(), cols, rec)
            if not len(signal):
                raise EcgError(f"record: {rec}: no numeric lines")
    else:
        if len(leads) != len(data_cfg.leads):
            raise EcgError(
                f"leads: {leads} but the model takes {len(data_cfg.leads)} ({list(data_cfg.leads)})"
            )
        name, signal, fs = mon.read_signal(cfg.data.root, rec, leads, cfg.lead, cfg.fs)
    if fs != float(data_cfg.fs):
        raise EcgError(
            f"fs: {name} is at {fs:g} Hz but the model expects {data_cfg.fs:g} Hz "
            "(the live monitor does not resample)"
        )
    if signal is not None and cfg.max_duration_s is not None:
        signal = signal[: round(cfg.max_duration_s * fs)]
    feed = LiveFeed(
        fs,
        classes,
        speed=cfg.speed,
        keep_s=max(30.0, 3 * cfg.window_s),
        paced=signal is not None,
        title=name,
    )
    events = EventLog(Path(out_dir) / "events.jsonl")

    def on_event(ev: dict) -> None:
        if ev["type"] == "beat":
            ev = mon.beat_event(ev, fs, classes)
        else:
            print(
                f"[{ev['t_raised']:9.2f} s] ALARM {ev['rule']} ({ev['severity']}) at "
                f"t={ev['t']:.2f} s",
                flush=True,
            )
        events.write(ev)
        feed.push_event(ev)

    def before_chunk(chunk, start) -> None:
        feed.wait(start, len(chunk))
        feed.push_samples(chunk, start)

    def produce() -> None:
        common = {
            "data_cfg": data_cfg,
            "classifier": classifier,
            "classes": classes,
            "alarms_cfg": cfg.alarms,
            "margin_s": cfg.margin_s,
            "before_chunk": before_chunk,
            "on_event": on_event,
        }
        try:
            if signal is not None:
                mon.run_record(signal, fs, chunk_s=cfg.chunk_s, **common)
            else:
                with open(rec) if rec != "-" else nullcontext(sys.stdin) as fh:
                    chunks = mon.follow_csv(
                        fh,
                        cols,
                        name,
                        follow=cfg.follow,
                        idle_timeout_s=cfg.idle_timeout_s,
                        stop=stop,
                    )
                    mon.run_chunks(chunks, fs, len(cols), **common)
        finally:
            events.close()

    serve(
        feed,
        produce,
        cfg.host,
        cfg.port,
        cfg.window_s,
        cfg.refresh_ms,
        cfg.linger_s,
        on_ready and (lambda url: on_ready(url, feed)),
        stop,
    )
    return feed
