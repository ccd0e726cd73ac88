#!/usr/bin/env python
"""Benchmark ecgcnn-analyze on a 24-hour recording built from MIT-BIH.

Builds one WFDB record (in a temporary folder) of the 48 MIT-BIH records' first lead (MLII;
V5 for 102 and 104, which have no MLII) one after another, with their reference beat
annotations shifted into place (48 x 30 min = 24 h at 360 Hz), then times in one run

(a) reading it with ``wfdb.rdrecord`` alone, and
(b) ``ecgcnn-analyze`` end to end (read, stream in blocks, classify, alarms, annotations,
    summary, report) with one trained patient model (``--checkpoint``; by default a patient
    model of record ``--patient`` trained here with ``finetune_patient``),

and scores the detected beats against the shifted reference (EC57 QRS Se/+P, 150 ms).

    python scripts/bench_holter.py                 # 24 h
    python scripts/bench_holter.py --quick         # 3 records (1.5 h), a 1-epoch model

Last line JSON: {"wall_s", "read_s", "ratio", "beats", "qrs_se", "qrs_ppv", "peak_rss_mb",
"hours"}; peak RSS is that of the analysing child process (the build runs in this one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import wfdb

from ecgcnn.data.io import DATA_ENV

FS = 360


def build(root: Path, records: list[str], out: Path) -> tuple[np.ndarray, list[str]]:
    """The concatenated record ``out/holter``; returns its reference beats (samples, symbols)."""
    from ecgcnn.monitor.scoring import BEAT_SYMBOLS

    sig, smp, sym, off = [], [], [], 0
    for r in records:
        rec = wfdb.rdrecord(str(root / r), channels=[0], physical=False)
        ann = wfdb.rdann(str(root / r), "atr")
        keep = np.isin(ann.symbol, list(BEAT_SYMBOLS))
        sig.append(rec.d_signal[:, 0])
        smp.append(ann.sample[keep] + off)
        sym += [s for s, k in zip(ann.symbol, keep) if k]
        off += rec.sig_len
    d = np.concatenate(sig)[:, None]
    # the MIT-BIH format and scale (212, 200 adu/mV, baseline 1024), so no sample changes
    wfdb.wrsamp(
        "holter",
        fs=FS,
        units=["mV"],
        sig_name=["MLII"],
        d_signal=d,
        fmt=["212"],
        adc_gain=[200.0],
        baseline=[1024],
        write_dir=str(out),
    )
    samples = np.concatenate(smp)
    wfdb.wrann("holter", "atr", samples, symbol=sym, write_dir=str(out))
    return samples, sym


def patient_model(root: str, patient: str, epochs: int, out: Path) -> Path:
    from hydra import compose, initialize_config_dir

    import ecgcnn.config  # noqa: F401
    from ecgcnn.apps import CONFIG_DIR
    from ecgcnn.personalize.patient_specific import finetune_patient

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="finetune",
            overrides=[
                f"record={patient}",
                "report=false",
                f"trainer.max_epochs={epochs}",
                f"data.root={root}",
                "views=[none]",
            ],
        )
    finetune_patient(cfg, out)
    return out / "model.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 records and a 1-epoch model")
    ap.add_argument("--root", help=f"MIT-BIH directory (default ${DATA_ENV})")
    ap.add_argument("--checkpoint", help="a patient model (default: one trained here)")
    ap.add_argument("--patient", default="208", help="record of the model trained here")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the analysis")
    ap.add_argument(
        "--engine",
        default=None,
        help="the analysis's engine= setting (default: the app's); 'onnx-file' exports the "
        "checkpoint to ONNX first (not timed) and analyses with the .onnx file",
    )
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse the record built in --out")
    args = ap.parse_args()
    root = Path(args.root or os.environ.get(DATA_ENV) or "../shared/data/mitdb")
    records = [r.strip() for r in (root / "RECORDS").read_text().split()]
    if args.quick:
        records = ["100", "119", "208"]
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_holter_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if args.reuse and (work / "holter.hea").is_file():  # a record this script built before
        ref = wfdb.rdann(str(work / "holter"), "atr").sample
        print(f"reusing {work / 'holter'}")
    else:
        ref, _ = build(root, records, work)
        print(f"built {len(records)} records in {time.perf_counter() - t:.1f} s: {work / 'holter'}")
    ck = (
        Path(args.checkpoint)
        if args.checkpoint
        else patient_model(
            str(root), args.patient, 1 if args.quick else args.epochs, work / "model"
        )
    )

    engine = []
    if args.engine == "onnx-file":
        from ecgcnn.export import export_model

        ck = export_model(ck, work / f"onnx_{time.time_ns()}", "onnx")["model"]
    elif args.engine:
        engine = [f"engine={args.engine}"]
    t = time.perf_counter()
    rec = wfdb.rdrecord(str(work / "holter"))
    read_s = time.perf_counter() - t
    hours = rec.sig_len / FS / 3600
    del rec
    out = work / f"analyze_{time.time_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "ecgcnn.apps.analyze",
        f"checkpoint={ck}",
        f"record={work / 'holter'}",
        f"num_threads={args.threads}",
        "report=true",
        f"hydra.run.dir={out}",
        *engine,
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall_s = time.perf_counter() - t
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = child.ru_maxrss / 1024
    cpu_s = child.ru_utime + child.ru_stime  # the analysis's CPU time: what load does not inflate
    s = json.loads((out / "summary.json").read_text())
    q = s["score"]["qrs"]["whole"]
    print(
        f"read (wfdb.rdrecord) {read_s:.2f} s; ecgcnn-analyze {wall_s:.1f} s ({cpu_s:.1f} s CPU) "
        f"(inside: {s['seconds']}); {hours:.2f} h, {s['beats_classified']} beats "
        f"{s['class_counts']}; QRS Se {100 * q['se']:.3f}% +P {100 * q['ppv']:.3f}% "
        f"({len(ref)} reference beats); peak RSS {rss:.0f} MB"
    )
    print(
        json.dumps(
            {
                "wall_s": round(wall_s, 2),
                "read_s": round(read_s, 3),
                "ratio": round(wall_s / read_s, 1),
                "cpu_s": round(cpu_s, 2),
                "beats": s["beats_classified"],
                "qrs_se": round(q["se"], 5),
                "qrs_ppv": round(q["ppv"], 5),
                "peak_rss_mb": round(rss, 1),
                "hours": round(hours, 2),
                "engine": args.engine or "default",
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
