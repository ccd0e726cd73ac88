#!/usr/bin/env python
"""Zero-shot ABS benchmark over the persons of ``configs/zeroshot.yaml`` (34 by default).

    python scripts/benchmark_zeroshot.py [--jobs 2] [--out DIR] [--records 100,208]
                                         [--seeds 0,1,2] [overrides…]
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
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma list, e.g. 0,1,2: one run per seed under OUT/seed<s>/, figures as their "
        "mean with <key>_range (default: one run with the config's seeds)",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/zeroshot.yaml")
    args = ap.parse_args()
    if args.summarize:
        print(json.dumps(summarize_dir(Path(args.summarize)), default=str))
        return

    t0 = time.perf_counter()
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    out = Path(args.out or f"outputs/bench_zeroshot/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    heads = []
    data = None
    for seed in seeds:
        # seed s: the library/synthesis draws (seed=s) and the ensemble's models (trainer.seed
        # 3s .. 3s+2), so no two seeds share a model; seed 0 is the config's default
        seeded = [] if seed is None else [f"seed={seed}", f"trainer.seed={3 * seed}"]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            # per-person figures on (beats.png: average normal, real and synthetic abnormal
            # beats; embedded in report.html); figures=false skips them
            cfg = compose(
                "zeroshot", overrides=["trainer.progress=false", *args.overrides, *seeded]
            )
        records = args.records.split(",") if args.records else [str(r) for r in cfg.records]
        if data is None:
            data = load_beats(cfg.data, records=sorted({*records, *map(str, cfg.library_records)}))
        sub = out if seed is None else out / f"seed{seed}"
        heads.append(_one_seed(cfg, data, records, sub, args.jobs, seed))
    line = dict(heads[0])
    if len(seeds) > 1:
        for k in _HEAD:
            vals = [h[k] for h in heads if h[k] is not None]
            line[k] = sum(vals) / len(vals) if vals else None
            line[f"{k}_range"] = [min(vals), max(vals)] if vals else None
        line["seeds"] = seeds
        line["per_seed"] = [
            {k: h[k] for k in ("f1", "se", "ppv", "p_detect_first3")} for h in heads
        ]
        print(f"{'seed':>5} {'F1':>6} {'Se':>6} {'+P':>6} {'1st3':>6}")
        for s, h in zip(seeds, heads):
            print(
                f"{s:>5} "
                + " ".join(f"{h[k]:6.3f}" for k in ("f1", "se", "ppv", "p_detect_first3"))
            )
        print(
            f"{'mean':>5} "
            + " ".join(f"{line[k]:6.3f}" for k in ("f1", "se", "ppv", "p_detect_first3"))
            + "  range F1 "
            + "-".join(f"{v:.3f}" for v in line["f1_range"])
        )
    line["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(line))


#: headline figures averaged over seeds (each also gets a ``<key>_range``)
_HEAD = (
    "p_detect_first3",
    "p_detect_first3_model",
    "p_detect_triplets",
    "f1",
    "se",
    "spe",
    "ppv",
    "acc",
    "false_alarms_per_hour",
)


def _one_seed(cfg, data, records, out: Path, jobs: int, seed) -> dict:
    """Every person of one seed: their table printed, the headline figures returned."""
    if jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs)(delayed(_one)(cfg, data.beats, r, out) for r in records)
    else:
        results = [_one(cfg, data.beats, r, out) for r in records]
    summ = write_summary(results, out, title="Zero-shot ABS benchmark")

    def pct(x):
        return "   –" if x is None else f"{100 * x:5.1f}"

    if seed is not None:
        print(f"seed {seed}:")
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
    return {
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
    }


if __name__ == "__main__":
    main()
