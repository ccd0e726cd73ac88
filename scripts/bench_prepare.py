#!/usr/bin/env python
"""Time ecgcnn's preparation of all 48 MIT-BIH records against a bare wfdb read of the same records.

    python scripts/bench_prepare.py [--root DIR] [--repeats 3] [--records 100 208]

Both sides read every record's signal and ``atr`` annotations; ecgcnn also filters, segments and
writes the beat cache (cold: into an empty temporary cache). A second, warm prepare shows cache
re-use. Prints the figures and ends with one JSON line:
{"prepare_s", "wfdb_read_s", "ratio", "peak_rss_mb", "warm_prepare_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import wfdb
from omegaconf import OmegaConf

from ecgcnn.config import DataConfig
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import MITDB_RECORDS


def bare_wfdb(root: str, records) -> float:
    t = time.perf_counter()
    for r in records:
        wfdb.rdrecord(os.path.join(root, r))
        wfdb.rdann(os.path.join(root, r), "atr")
    return time.perf_counter() - t


def prepare(root: str, cache: str, records) -> float:
    cfg = OmegaConf.structured(DataConfig)
    cfg.root, cfg.cache_dir = root, cache
    t = time.perf_counter()
    load_beats(cfg, records=list(records))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.environ.get("ECGCNN_DATA_DIR", "../shared/data/mitdb"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--records",
        nargs="*",
        default=list(MITDB_RECORDS),
        help="default: the 48 MIT-BIH records (a few: the small mode CI runs)",
    )
    a = ap.parse_args()
    bare_wfdb(a.root, a.records)  # warm the page cache for both sides
    wf, prep, warm = [], [], []
    for _ in range(a.repeats):
        wf.append(bare_wfdb(a.root, a.records))
        with tempfile.TemporaryDirectory() as cache:
            prep.append(prepare(a.root, cache, a.records))
            warm.append(prepare(a.root, cache, a.records))
    w, p = statistics.median(wf), statistics.median(prep)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"bare wfdb read ({len(a.records)} records, signal + atr): {w:.3f} s   runs {[round(x, 3) for x in wf]}"
    )
    print(
        f"ecgcnn prepare, cold cache:                {p:.3f} s   runs {[round(x, 3) for x in prep]}"
    )
    print(f"ecgcnn prepare, warm cache:                {statistics.median(warm):.3f} s")
    print(
        f"ratio prepare / wfdb read: {p / w:.2f} (goal <= 2.0); peak RSS {rss:.0f} MB (goal <= 1536)"
    )
    print(
        json.dumps(
            {
                "prepare_s": round(p, 3),
                "wfdb_read_s": round(w, 3),
                "ratio": round(p / w, 3),
                "peak_rss_mb": round(rss, 1),
                "warm_prepare_s": round(statistics.median(warm), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
