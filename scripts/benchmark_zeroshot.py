#!/usr/bin/env python
"""Zero-shot ABS benchmark over the persons of ``configs/zeroshot.yaml`` (34 by default).

    python scripts/benchmark_zeroshot.py [--jobs 2] [--out DIR] [--records 100,208] [overrides…]
    python scripts/benchmark_zeroshot.py --summarize multirun/zeroshot/<date>

Runs the plain per-patient function in-process (or in ``--jobs`` joblib workers, one torch
thread each), prints a per-patient table and ends with one JSON line of the headline figures.
Hydra overrides (e.g. ``abs.taps=63 synth.n_per_class=800``) go after the options.
Needs ``ECGCNN_DATA_DIR`` (or ``data.root=…``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import ecgcnn.apps.zeroshot  # noqa: F401  (registers base_zeroshot)
from ecgcnn.apps import CONFIG_DIR
from ecgcnn.data.cache import load_beats
from ecgcnn.personalize.zero_shot import run_patient
from ecgcnn.synthesis.report import summarize_dir, write_summary


def _one(cfg, beats, record, out):
    import torch

    torch.set_num_threads(1)
    return run_patient(cfg, beats, record, out / record, save_model=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="joblib workers (1: in-process loop)")
    ap.add_argument("--out", default=None, help="output folder (default outputs/bench_zeroshot/…)")
    ap.add_argument("--records", default=None, help="comma-separated subset of the persons")
    ap.add_argument("--summarize", default=None, help="only summarize an existing folder")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/zeroshot.yaml")
    args = ap.parse_args()
    if args.summarize:
        print(json.dumps(summarize_dir(Path(args.summarize)), default=str))
        return

    t0 = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        # per-person figures on (beats.png: average normal, real and synthetic abnormal beats;
        # embedded in report.html); figures=false skips them
        cfg = compose("zeroshot", overrides=["trainer.progress=false", *args.overrides])
    records = args.records.split(",") if args.records else [str(r) for r in cfg.records]
    out = Path(args.out or f"outputs/bench_zeroshot/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    data = load_beats(cfg.data, records=sorted({*records, *map(str, cfg.library_records)}))
    if args.jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=args.jobs)(
            delayed(_one)(cfg, data.beats, r, out) for r in records
        )
    else:
        results = [_one(cfg, data.beats, r, out) for r in records]
    summ = write_summary(results, out, title="Zero-shot ABS benchmark")

    def pct(x):
        return "   –" if x is None else f"{100 * x:5.1f}"

    print(
        f"{'rec':>4} {'N':>5} {'S+V':>5} {'Se':>5} {'Spe':>5} {'+P':>5} {'F1':>5} "
        f"{'1st3':>4} {'FA/h':>6}"
    )
    for r in sorted(results, key=lambda r: r["record"]):
        b, a, c = r["binary"], r["alarm"], r["test"]["counts"]
        fa = a["false_alarms_per_hour"]
        print(
            f"{r['record']:>4} {c['N']:5d} {c['S'] + c['V']:5d} {pct(b['Se'])} "
            f"{pct(b['Spe'])} {pct(b['PPV'])} {pct(b['F1'])} "
            f"{ {True: 'yes', False: 'NO', None: '–'}[a['detected_first3']]:>4} "
            f"{fa if fa is None else round(fa, 1):>6}"
        )
    g = summ["binary_gross"]
    print(f"report: {out / 'report.html'}")
    print(
        json.dumps(
            {
                "p_detect_first3": summ["p_detect_first3"],
                "p_detect_first3_model": summ["p_detect_first3_model"],
                "p_detect_triplets": summ["p_detect_triplets"],
                "f1": g["F1"],
                "se": g["Se"],
                "spe": g["Spe"],
                "ppv": g["PPV"],
                "acc": g["Acc"],
                "false_alarms_per_hour": summ["false_alarms_per_hour"],
                "patients": summ["patients"],
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
