#!/usr/bin/env python
"""The full patient-specific benchmark (Kiranyaz 2016 protocol) from raw records to the summary.

    python scripts/benchmark_patient_specific.py [OVERRIDES...] [--workers N] [--out DIR]
                                                 [--minutes 1,2,3,5] [--common-model train|none|PATH]

Prepares (or reuses) the beat cache; for each input view of the config (``views``, default
[none, add]: the plain windows, and the plain windows plus their running-template differences)
trains a common model on the 245-beat common set plus every patient's first minutes (training
data only: no beat of any test part), the views' common models in parallel; fine-tunes each
patient's model of every view from them on the common set + that patient's first minutes, in
``--workers`` processes (one thread each), averaging the views' probabilities; scores each
patient on the rest of the record; and writes summary.json and report.{md,html} into ``--out``
(default outputs/benchmark_ps/<time>). ``--common-model none`` trains every patient model from
scratch, as Kiranyaz 2016 does. Overrides are Hydra overrides of configs/finetune.yaml (e.g.
``'views=[none]'``: one plain model per patient, ``trainer.max_epochs=20 ensemble=3``).
Prints the per-patient training time, the gross table, and ends with one JSON line:
{"wall_s", "peak_rss_mb", "VEB": {"Acc","Se","Spe","PPV"}, "SVEB": {...}}.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from ecgcnn.config import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="finetune", overrides=["record=100", *overrides])


def _one_thread():
    import torch

    torch.set_num_threads(1)  # one thread per worker: patients run in parallel instead


def _run(job, base_cfg, beats):
    from omegaconf import OmegaConf

    from ecgcnn.personalize.patient_specific import finetune_patient

    _one_thread()
    record, minutes, out = job
    cfg = OmegaConf.merge(
        base_cfg, {"record": record, "report": False, "split": {"minutes": minutes}}
    )
    m = finetune_patient(cfg, Path(out), beats=beats)
    return record, minutes, m["seconds"]


def _train_common(job, beats, prepared) -> str:
    """One view's common model: common set + every patient's first minutes, validated on a
    hold-out of those training beats only. Runs in a worker, on the beats the parent loaded."""
    from ecgcnn.personalize.common import common_config, train_common

    _one_thread()
    overrides, view, out, minutes, epochs = job
    cfg = common_config(overrides, view, minutes, epochs)
    return str(train_common(cfg, view, beats, prepared, Path(out)))


def _peak_rss_mb() -> float:
    # joblib keeps its worker processes for reuse: end them, so the largest one is counted
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024.0  # Linux reports KiB; children: the largest worker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--minutes", default=None, help="comma list, e.g. 1,2,3,5 (default: config)")
    ap.add_argument("--records", default=None, help="comma list (default: the split's 44)")
    ap.add_argument(
        "--common-model",
        default="train",
        help="'train' (default): first train a common model on the common set plus "
        "every patient's first minutes (no test beat) and fine-tune each "
        "patient's model from it (trainer=finetune); 'none': every patient "
        "model starts from scratch on the common set + its first minutes, as "
        "in Kiranyaz 2016 (trainer=patient); or checkpoint paths, one per "
        "view, comma-separated",
    )
    ap.add_argument(
        "--common-epochs",
        type=int,
        default=12,
        help="epochs of each common model (12: best-by-validation within the "
        "2-minute budget; 20 gave SVEB +P 76.9 instead of 72.6, 116 s)",
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    from joblib import Parallel, delayed

    from ecgcnn.data.cache import load_beats
    from ecgcnn.evaluation.summary import format_summary, summarize
    from ecgcnn.personalize.patient_specific import prepared_template, view_data

    out = Path(args.out or f"outputs/benchmark_ps/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: output directory exists and is not empty", file=sys.stderr)
        return 2
    cfg = _compose(args.overrides)
    views = list(cfg.views)
    prepared = prepared_template(views)  # data.beat.template the shared beats are prepared with
    patients = args.records.split(",") if args.records else list(cfg.split.records)
    minutes = [float(m) for m in args.minutes.split(",")] if args.minutes else [cfg.split.minutes]
    records = sorted(set(patients) | set(cfg.split.common_records))
    if args.common_model == "train":
        records = sorted(set(records) | set(cfg.split.records))  # every first minutes
    # Loaded once here (every view cut from them); joblib hands the arrays to its workers as
    # memory maps, written once
    beats = load_beats(
        view_data(cfg.data, prepared), records=records, progress=True, workers=args.workers
    ).beats
    t_prep = time.perf_counter() - t0
    overrides = list(args.overrides)
    if args.common_model != "none" and not any(o.startswith("trainer=") for o in overrides):
        overrides.insert(0, "trainer=finetune")
    init = None
    if args.common_model == "train":
        t1 = time.perf_counter()
        jobs = [
            (
                args.overrides,
                v,
                str(out / ("common" if len(views) == 1 else f"common_{v}")),
                min(minutes),
                args.common_epochs,
            )
            for v in views
        ]
        init = Parallel(n_jobs=min(len(jobs), args.workers))(
            delayed(_train_common)(job, beats, prepared) for job in jobs
        )
        print(
            f"common model(s) {views} trained in {time.perf_counter() - t1:.1f} s: "
            + ", ".join(init)
        )
    elif args.common_model != "none":
        init = args.common_model.split(",")
    base_cfg = _compose(overrides)
    if init is not None:
        base_cfg.init_from = init if len(views) > 1 else init[0]
    jobs = [(r, m, str(out / f"{r}_m{m:g}")) for m in minutes for r in patients]
    times = []
    run = Parallel(n_jobs=args.workers, return_as="generator_unordered")
    for rec, m, sec in run(delayed(_run)(job, base_cfg, beats) for job in jobs):
        times.append((rec, m, sec))
        print(f"  patient {rec} ({m:g} min) {len(times)}/{len(jobs)}: {sec:.2f} s", flush=True)
    summary = summarize(out)
    wall = time.perf_counter() - t0
    print(format_summary(summary))
    if len(minutes) > 1:
        for k, v in summary["minutes_curve"].items():
            print(
                f"  {float(k):g} min: VEB Se {v['VEB']['Se']:.3f} +P {v['VEB']['PPV']:.3f}  "
                f"SVEB Se {v['SVEB']['Se']:.3f} +P {v['SVEB']['PPV']:.3f}"
            )
    per = [s for _, _, s in times]
    print(
        f"prepare {t_prep:.1f} s; per-patient training mean {sum(per) / len(per):.2f} s "
        f"(max {max(per):.2f} s); wall {wall:.1f} s; report: {out / 'report.html'}"
    )
    keys = ("Acc", "Se", "Spe", "PPV")
    print(
        json.dumps(
            {
                "wall_s": round(wall, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "VEB": {k: summary["VEB"][k] for k in keys},
                "SVEB": {k: summary["SVEB"][k] for k in keys},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
