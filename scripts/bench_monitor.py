#!/usr/bin/env python
"""Benchmark ecgcnn-monitor on the 44 non-paced MIT-BIH records: detection, end-to-end
classification against the annotation-based results of the same models, speed and latency.

For each record: the per-patient CNN of ``ecgcnn.personalize.patient_specific.finetune_patient`` (common set
plus the record's first 5 minutes, ``--epochs`` epochs) is evaluated

(a) on the annotation-based beats of minutes 5-30 (``patient.test``: reference R peaks,
    common-set beats excluded), exactly as ``ecgcnn-finetune`` scores it, and
(b) through the monitor on the streamed raw record (its own QRS detection, windows and RR
    features, no annotations at run time), scoring the beats after minute 5 with the EC57/bxb
    conventions of ``score_stream`` (missed reference beats count as predicted N, extra
    detections as reference N; the same common-set beats excluded).

Also reported: QRS Se/+P over whole records (and without VF episodes, as EC57), speed as a
multiple of real time on one thread (wall and CPU time: the machine may be shared), per-beat
decision latency, and a timing spread from repeated runs of one record. Ends with one JSON line.

    python scripts/bench_monitor.py --quick        # 5 records
    python scripts/bench_monitor.py                # all 44 (about 5-10 min on 2 cores)
    python scripts/bench_monitor.py --align-train  # own training beats on the detector's R

Why ``--align-train``: the models learn windows centred on the reference annotations, while the
monitor centres them on its detector's R point. For most beats the two agree within 1-2
samples, but the annotation point of PVCs varies between records (208: median +7, up to
+31 samples), and a per-patient CNN is sensitive to that shift. Training the patient's own
first minutes on the detector's positions (expert labels on the monitor's own beats) removes
the mismatch; the test beats of (a) stay annotation-centred.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgcnn.apps import CONFIG_DIR
from ecgcnn.data.beats import CLASSES
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import DATA_ENV, read_record
from ecgcnn.data.splits import draw_common_set
from ecgcnn.errors import cli_errors
from ecgcnn.evaluation.aami import veb_sveb
from ecgcnn.monitor.scoring import score_stream
from ecgcnn.monitor.session import monitor
from ecgcnn.personalize.patient_specific import (
    finetune_patient,
    prepared_template,
    view_data,
    view_files,
)

QUICK = ["100", "119", "200", "208", "233"]


def compose(name: str, overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import ecgcnn.config  # noqa: F401  (registers base_monitor)

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hcompose(config_name=name, overrides=overrides)


def events_beats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    smp, cls = [], []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev["type"] == "beat":
            smp.append(ev["sample"])
            cls.append(CLASSES.index(ev["class"]))
    return np.asarray(smp, np.int64), np.asarray(cls, np.int64)


def fmt(b: dict) -> str:
    f = lambda v: "  n/a" if v is None else f"{100 * v:5.1f}"
    return f"Se {f(b['Se'])} +P {f(b['PPV'])} Spe {f(b['Spe'])} Acc {f(b['Acc'])}"


def run(args) -> dict:
    torch.set_num_threads(1)
    root = args.root or os.environ.get(DATA_ENV) or "../shared/data/mitdb"
    base = ["report=false", f"trainer.max_epochs={args.epochs}", f"data.root={root}"]
    ft0 = compose("finetune", base + ["record=100"])
    records = args.records or (QUICK if args.quick else list(ft0.split.records))
    common_recs = list(ft0.split.common_records)
    t0 = time.perf_counter()
    # the default patient has two input views (model.pt, model_add.pt): beats prepared once
    # with the template view every model can be cut from, as ecgcnn-finetune does
    data = view_data(ft0.data, prepared_template(list(ft0.views)))
    beats = load_beats(data, records=sorted(set(records) | set(common_recs))).beats
    files = [f for _, f in view_files(list(ft0.views), int(ft0.ensemble))]
    common = draw_common_set(
        beats, common_recs, dict(ft0.split.common_counts), ft0.split.common_seed
    )
    print(f"beats loaded in {time.perf_counter() - t0:.1f} s")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_monitor_"))
    start = round(ft0.split.minutes * 60 * ft0.data.fs)
    cm_a = np.zeros((5, 5), np.int64)
    cm_b = np.zeros((5, 5), np.int64)
    qrs = {k: np.zeros(3, np.int64) for k in ("whole", "ec57_no_vf")}
    dur = sec = cpu = 0.0
    p99s, p50s, rtf = [], [], []
    print(
        f"{'rec':>4} | (a) annotated VEB Se/+P | (b) streamed VEB Se/+P | QRS Se/+P | "
        f"x real time | p99 ms"
    )
    for rec in records:
        ft = compose("finetune", base + [f"record={rec}"])
        done = out / rec / "metrics.json"
        if args.reuse and done.is_file() and all((out / rec / f).is_file() for f in files):
            m = json.loads(done.read_text())  # same settings, same seed: the same model
        else:
            if args.align_train:  # the patient's training beats on the detector's R peaks
                ft.train_peaks = "detector"
            m = finetune_patient(ft, out / rec, beats=beats)
        cm_a += np.asarray(m["confusion"])
        s = monitor(monitor_cfg(args, root, out / rec, files, rec), out / rec / "monitor")
        for k in qrs:
            q = s["score"]["qrs"][k]
            qrs[k] += [q["tp"], q["fn"], q["fp"]]
        smp, cls = events_beats(out / rec / "monitor" / "events.jsonl")
        r = read_record(root, rec)
        excl = common.sample[common.record == rec]
        sc = score_stream(
            r.ann_samples, r.ann_symbols, smp, smp, cls, r.fs, start=start, exclude=excl
        )["classification"]
        cm_b += np.asarray(sc["confusion"])
        p = s["processing"]
        dur, sec, cpu = dur + s["duration_s"], sec + p["seconds"], cpu + p["cpu_seconds"]
        p99s.append(s["latency_ms"]["p99"])
        p50s.append(s["latency_ms"]["p50"])
        rtf.append(p["realtime_factor"])
        va, vb, q = m["VEB"], sc["VEB"], s["score"]["qrs"]["whole"]
        f = lambda v: "  n/a" if v is None else f"{100 * v:5.1f}"
        print(
            f"{rec:>4} | {f(va['Se'])} {f(va['PPV'])}             | {f(vb['Se'])} "
            f"{f(vb['PPV'])}            | {100 * q['se']:6.2f} {100 * q['ppv']:6.2f} | "
            f"{p['realtime_factor']:7.0f} | {s['latency_ms']['p99']:6.2f}",
            flush=True,
        )

    a, b = veb_sveb(cm_a), veb_sveb(cm_b)
    print(f"\n{len(records)} records, gross, beats after minute {ft0.split.minutes:g}:")
    for k in ("VEB", "SVEB"):
        print(f"  {k:<4} (a) annotated beats  {fmt(a[k])}")
        print(f"  {k:<4} (b) streamed monitor {fmt(b[k])}")
    diff = {
        k: {
            m_: (
                None
                if a[k][m_] is None or b[k][m_] is None
                else round(100 * (b[k][m_] - a[k][m_]), 2)
            )
            for m_ in ("Se", "PPV")
        }
        for k in ("VEB", "SVEB")
    }
    print(f"  difference (b) - (a), points: {diff}")
    se = lambda t: t[0] / (t[0] + t[1])
    ppv = lambda t: t[0] / (t[0] + t[2])
    for k, t in qrs.items():
        print(
            f"QRS {k}: TP {t[0]} FN {t[1]} FP {t[2]}  Se {100 * se(t):.3f}% +P {100 * ppv(t):.3f}%"
        )
    print(
        f"speed: {dur / sec:.0f}x real time (wall, all records), {dur / cpu:.0f}x (CPU "
        f"time); per record wall min {min(rtf):.0f}x median {np.median(rtf):.0f}x"
    )
    print(
        f"latency per beat (ms): p50 median {np.median(p50s):.2f}; p99 median "
        f"{np.median(p99s):.2f}, worst record {max(p99s):.2f}"
    )

    spread = timing_spread(args, root, out, records, files)
    result = {
        "records": len(records),
        "epochs": args.epochs,
        "chunk_s": args.chunk_s,
        "align_train": bool(args.align_train),
        "margin_s": args.margin_s,
        "qrs_se": round(se(qrs["whole"]), 5),
        "qrs_ppv": round(ppv(qrs["whole"]), 5),
        "qrs_ec57_no_vf": {
            "se": round(se(qrs["ec57_no_vf"]), 5),
            "ppv": round(ppv(qrs["ec57_no_vf"]), 5),
        },
        "realtime_factor": round(dur / sec, 1),
        "realtime_factor_cpu": round(dur / cpu, 1),
        "realtime_factor_min_record": round(min(rtf), 1),
        "latency_p99_ms": round(max(p99s), 3),
        "latency_p99_ms_median_record": round(float(np.median(p99s)), 3),
        "timing_spread": spread,
        **{
            k: {
                "annotated": {m_: a[k][m_] for m_ in ("Se", "PPV")},
                "streamed": {m_: b[k][m_] for m_ in ("Se", "PPV")},
                "diff_points": diff[k],
            }
            for k in ("VEB", "SVEB")
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return result


def monitor_cfg(args, root: str, models: Path, files: list[str], rec: str):
    """The monitor settings of one patient: every model of its views, averaged."""
    also = ",".join(str(models / f) for f in files[1:])
    return compose(
        "monitor",
        [
            f"checkpoint={models / files[0]}",
            f"also=[{also}]",
            f"record={rec}",
            f"data.root={root}",
            "plot.enabled=false",
            f"chunk_s={args.chunk_s}",
            f"margin_s={args.margin_s}",
        ],
    )


def timing_spread(args, root: str, out: Path, records: list[str], files: list[str]) -> dict | None:
    """Repeat the stream of one record: min / median / max speed and latency p99."""
    rec = args.timing_record if args.timing_record in records else records[0]
    if args.timing_repeats < 1:
        return None
    rtf, p99 = [], []
    for _ in range(args.timing_repeats):
        s = monitor(monitor_cfg(args, root, out / rec, files, rec), out / rec / "timing")
        rtf.append(s["processing"]["realtime_factor"])
        p99.append(s["latency_ms"]["p99"])
    spread = {
        "record": rec,
        "repeats": len(rtf),
        "realtime_factor": [min(rtf), float(np.median(rtf)), max(rtf)],
        "latency_p99_ms": [min(p99), float(np.median(p99)), max(p99)],
    }
    print(
        f"timing spread, record {rec} x{len(rtf)} (min / median / max): "
        f"{spread['realtime_factor']}x real time, p99 {spread['latency_p99_ms']} ms"
    )
    return spread


@cli_errors
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"records {' '.join(QUICK)} only")
    ap.add_argument("--records", nargs="*", help="record names (default: the 44 of the split)")
    ap.add_argument("--epochs", type=int, default=20, help="per-patient training epochs")
    ap.add_argument("--chunk-s", type=float, default=1.0)
    ap.add_argument("--margin-s", type=float, default=4.0, help="filter margin (s)")
    ap.add_argument("--root", help=f"MIT-BIH directory (default ${DATA_ENV})")
    ap.add_argument("--out", help="work directory (default: a temporary one)")
    ap.add_argument(
        "--align-train",
        action="store_true",
        help="train each patient's own beats on the detector's R peaks",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse models (and their annotated scores) already in --out",
    )
    ap.add_argument("--timing-record", default="208")
    ap.add_argument("--timing-repeats", type=int, default=3)
    args = ap.parse_args()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
