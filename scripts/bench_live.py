#!/usr/bin/env python
"""Does the live page keep up? Replay a record at 10x with a headless Chromium attached.

``ecgcnn-live`` (the same ``apps.live.live`` function, in this process) replays a record at
``--speed`` x real time while a real headless Chromium shows the page. Every ``--every`` s the
script reads, through the browser, the newest sample time the page holds (``t_shown``, from
``Bokeh.documents[0]``) and then the stream's time (samples the monitor has taken in); the
lag is the difference, in stream seconds. A page that does not keep up shows a lag growing
over the run; the goal is lag p95 <= 1 s after a minute at 10x on 2 cores.

CPU: this process (monitor + Bokeh server + the script's WebDriver calls) and the browser's
processes, from /proc, as percent of one core; the whole machine's busy share is printed too
(other jobs may share it).

    python scripts/bench_live.py                 # 60 s at 10x (a 119 patient model is trained)
    python scripts/bench_live.py --quick         # 15 s
    python scripts/bench_live.py --checkpoint outputs/finetune/<run>/model.pt --record 208

Ends with one JSON line ``{"speed", "lag_s_p95", "cpu_percent", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _ticks(pids) -> dict[int, int]:
    """CPU ticks (user + system) of each process still there."""
    out = {}
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return out


def _used(before: dict[int, int], after: dict[int, int]) -> int:
    # per process: one that exits in between must not subtract its whole history
    return sum(v - before.get(pid, 0) for pid, v in after.items())


def _descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _machine_busy() -> tuple[int, int]:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)  # busy (not idle, not iowait), total


def quick_model(out: Path, record: str, root: str) -> Path:
    """A 3-epoch patient model of ``record`` (one plain view), as tests/test_monitor.py trains."""
    import torch
    from hydra import compose, initialize_config_dir

    from ecgcnn.apps.finetune import finetune_patient
    from ecgcnn.config import CONFIG_DIR

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        ft = compose(
            "finetune",
            [
                f"record={record}",
                "trainer.max_epochs=3",
                "report=false",
                f"data.root={root}",
                f"data.cache_dir={out / 'cache'}",
                "views=[none]",
            ],
        )
    finetune_patient(ft, out / "model")
    return out / "model" / "model.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 s instead of 60 s")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds to watch")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--record", default="119")
    ap.add_argument("--checkpoint", default=None, help="default: train a quick 119 model")
    ap.add_argument("--every", type=float, default=0.25, help="sampling interval, s")
    ap.add_argument("--port", type=int, default=8771)
    ap.add_argument("--refresh-ms", type=int, default=None, help="page refresh (config's)")
    ap.add_argument("--screenshot", default=None, help="save the page at the end (PNG)")
    args = ap.parse_args()
    seconds = 15.0 if args.quick else args.seconds
    root = os.environ.get("ECGCNN_DATA_DIR") or str(REPO / "data" / "mitdb")

    from hydra import compose, initialize_config_dir

    from ecgcnn.apps.live import live
    from ecgcnn.config import CONFIG_DIR
    from ecgcnn.monitor.live_probe import chromium, shown_time, wait_for

    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    ck = args.checkpoint or quick_model(tmp, args.record, root)
    over = [
        f"checkpoint={ck}",
        f"record={args.record}",
        f"data.root={root}",
        f"speed={args.speed:g}",
        f"port={args.port}",
    ]
    if args.refresh_ms:
        over.append(f"refresh_ms={args.refresh_ms}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("live", over)
    stop, ready, res = threading.Event(), {}, {}

    def watch() -> None:
        ev = ready["event"]
        ev.wait(60)
        feed, url = ready["feed"], ready["url"]
        drv = chromium()
        try:
            drv.get(url)
            wait_for(drv, lambda s: s["n_shown"] > 0, 60, "the first samples on the page")
            root = drv.service.process.pid
            me0, br0, m0 = time.process_time(), _ticks(_descendants(root)), _machine_busy()
            t0 = time.perf_counter()
            rows = []
            while time.perf_counter() - t0 < seconds:
                # The page's time is read somewhere between the two stream times
                before = feed.n / feed.fs
                shown = shown_time(drv)
                after = feed.n / feed.fs
                rows.append(
                    (time.perf_counter() - t0, (before + after) / 2, shown, (after - before) / 2)
                )
                time.sleep(args.every)
            wall = time.perf_counter() - t0
            hz = os.sysconf("SC_CLK_TCK")
            m1, br1 = _machine_busy(), _ticks(_descendants(root))
            res.update(
                rows=rows,
                wall=wall,
                me=100 * (time.process_time() - me0) / wall,
                browser=100 * _used(br0, br1) / hz / wall,
                machine=100 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
                n=len(br1),
                beats=feed.n_beats,
                alarms=len(feed.alarms),
            )
            if args.screenshot:
                drv.save_screenshot(args.screenshot)
        except Exception as exc:  # noqa: BLE001 (reported by the main thread)
            res["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            drv.quit()
            stop.set()

    ready["event"] = threading.Event()

    def on_ready(url, feed) -> None:
        ready.update(url=url, feed=feed)
        ready["event"].set()

    threading.Thread(target=watch, daemon=True).start()
    live(cfg, tmp / "run", on_ready=on_ready, stop=stop)
    if "error" in res:
        sys.exit(f"error: {res['error']}")
    rows = np.asarray(res["rows"], dtype=np.float64)
    lag, spread = rows[:, 1] - rows[:, 2], rows[:, 3]
    first, last = lag[rows[:, 0] < min(10, seconds / 3)], lag[rows[:, 0] > seconds - 10]
    shown_rate = np.polyfit(rows[:, 0], rows[:, 2], 1)[0]
    ncpu = os.cpu_count()
    print(
        f"record {args.record} at {args.speed:g}x for {res['wall']:.1f} s wall, "
        f"{len(rows)} samples of the page; page refresh {cfg.refresh_ms} ms, chunk "
        f"{cfg.chunk_s} s; {res['beats']} beats, {res['alarms']} alarms; {ncpu} CPUs"
    )
    print(f"displayed time advances at {shown_rate:.2f} s per wall second (stream: {args.speed:g})")
    print(
        f"lag (stream - displayed, s): p50 {np.percentile(lag, 50):.3f}  p95 "
        f"{np.percentile(lag, 95):.3f}  max {lag.max():.3f}; mean in the first 10 s "
        f"{first.mean():.3f}, in the last 10 s {last.mean():.3f}; each read +- "
        f"{np.median(spread):.3f} s (median; stream time moved while the browser answered)"
    )
    print(
        f"CPU (% of one core): monitor + server {res['me']:.0f}, browser ({res['n']} "
        f"processes) {res['browser']:.0f}; whole machine busy {res['machine']:.0f}% of "
        f"{ncpu} cores"
    )
    print(
        json.dumps(
            {
                "speed": args.speed,
                "lag_s_p95": round(float(np.percentile(lag, 95)), 3),
                "cpu_percent": round(res["me"], 1),
                "browser_cpu_percent": round(res["browser"], 1),
                "lag_s_p50": round(float(np.percentile(lag, 50)), 3),
                "lag_s_max": round(float(lag.max()), 3),
                "lag_s_last10_mean": round(float(last.mean()), 3),
                "shown_rate": round(float(shown_rate), 3),
                "wall_s": round(res["wall"], 1),
                "record": args.record,
                "refresh_ms": cfg.refresh_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
