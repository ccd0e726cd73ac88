#!/usr/bin/env python
"""The full patient-specific benchmark (Kiranyaz 2016 protocol) from raw records to the summary.

    python scripts/benchmark_patient_specific.py [OVERRIDES...] [--workers N] [--out DIR]
                                                 [--minutes 1,2,3,5] [--common-model train|none|PATH]
                                                 [--seeds 0,1,2] [--review [25]]

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
``--seeds 0,1,2`` runs the whole benchmark once per ``trainer.seed`` (common and patient models;
the 245-beat common set stays the protocol's) under ``OUT/seed<s>/``; the figures are then the
mean over seeds, with ``VEB_range``/``SVEB_range`` ([min, max]) and ``per_seed``. ``--review N``
(25 when no number follows; write the number when overrides follow) also runs the review-in-the-loop
protocol (``ecgcnn.personalize.review``, ``review.*`` overrides) on copies of the same models:
at most N beats per patient asked after the training minutes, not scored; its gross figures in
``"review"`` (with ``"asked"``: beats asked in all, per seed), the asked beats and why in
``OUT/[seed<s>/]review.json``. The strict figures of the same run are unchanged by it.
Prints the per-patient training time, the gross table, and ends with one JSON line:
{"wall_s", "peak_rss_mb", "VEB": {"Acc","Se","Spe","PPV"}, "SVEB": {...}[, "VEB_range",
"SVEB_range", "seeds", "per_seed"][, "review": {"VEB", "SVEB", "asked", ...}]}; peak_rss_mb is
the main process's peak RSS plus the largest worker's (what two such processes can hold at once).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


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
    overrides, view, out, minutes, epochs, seed = job
    cfg = common_config(overrides, view, minutes, epochs, seed=seed)
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
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma list of trainer.seed values, e.g. 0,1,2: one run each (common and patient "
        "models) under OUT/seed<s>/, figures as their mean with the range (default: one run "
        "with the config's seed)",
    )
    ap.add_argument(
        "--review",
        type=int,
        nargs="?",
        const=25,
        default=None,
        help="also run the review-in-the-loop protocol with this budget (25 if no value): "
        "review.budget beats asked after the training minutes; its figures in 'review'",
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    from ecgcnn.data.cache import load_beats
    from ecgcnn.personalize.patient_specific import prepared_template, view_data

    out = Path(args.out or f"outputs/benchmark_ps/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: output directory exists and is not empty", file=sys.stderr)
        return 2
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    if args.review is not None and args.review < 1:
        print(f"error: --review: got {args.review}, expected >= 1 beats", file=sys.stderr)
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
    runs = []
    for seed in seeds:
        sub = out if seed is None else out / f"seed{seed}"
        runs.append(_one_seed(args, views, patients, minutes, seed, sub, beats, prepared))
    wall = time.perf_counter() - t0
    per = [s for r in runs for _, _, s in r["times"]]
    print(
        f"prepare {t_prep:.1f} s; per-patient training mean {sum(per) / len(per):.2f} s "
        f"(max {max(per):.2f} s); wall {wall:.1f} s; report: {out / 'report.html'}"
    )
    line = {"wall_s": round(wall, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}
    line.update(seed_stats([r["summary"] for r in runs], seeds))
    if args.review is not None:
        rv = seed_stats([r["review"] for r in runs], seeds)
        rv["asked"] = sum(r["review"]["asked"] for r in runs) / len(runs)
        line["review"] = rv
    if len(seeds) > 1:
        print(seed_table(runs, seeds, args.review is not None))
    print(json.dumps(line))
    return 0


def _one_seed(args, views, patients, minutes, seed, out: Path, beats, prepared) -> dict:
    """One benchmark run (common models, every patient, summary) with ``trainer.seed=seed``
    (None: the config's) for the common and the patient models alike; the 245-beat common set
    is the protocol's and stays the same (``split.common_seed``)."""
    from joblib import Parallel, delayed

    from ecgcnn.evaluation.report import pct
    from ecgcnn.evaluation.summary import format_summary, summarize

    seeded = [] if seed is None else [f"trainer.seed={seed}"]
    overrides = [*args.overrides, *seeded]
    if args.review is not None:
        overrides.append(f"review.budget={args.review}")
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
                seed or 0,
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
    if seed is not None:
        print(f"seed {seed}:")
    print(format_summary(summary))
    if len(minutes) > 1:
        for k, v in summary["minutes_curve"].items():
            print(
                f"  {float(k):g} min: VEB Se {v['VEB']['Se']:.3f} +P {v['VEB']['PPV']:.3f}  "
                f"SVEB Se {v['SVEB']['Se']:.3f} +P {v['SVEB']['PPV']:.3f}"
            )
    result = {"summary": summary, "times": times}
    if args.review is not None:
        result["review"] = review_summary(out, summary["minutes"])
        g = result["review"]
        print(
            f"review-in-the-loop ({g['asked']} beats asked, not scored): VEB Se "
            f"{pct(g['VEB']['Se'])} +P {pct(g['VEB']['PPV'])}, SVEB Se "
            f"{pct(g['SVEB']['Se'])} +P {pct(g['SVEB']['PPV'])}"
        )
    return result


def review_summary(run_dir: Path, minutes: float) -> dict:
    """Gross review-in-the-loop figures of the patients' ``metrics.json`` ``review`` blocks,
    written to ``run_dir/review.json`` (beats asked per patient, with why)."""
    from ecgcnn.atomic import write_json
    from ecgcnn.evaluation.aami import combine

    found = {}
    for p in sorted(Path(run_dir).glob("*/metrics.json")):
        m = json.loads(p.read_text())
        if "review" in m and float(m.get("minutes", 5.0)) == minutes:
            found[m["record"]] = m["review"]
    g = combine({r: np.asarray(v["confusion"]) for r, v in found.items()})
    out = {
        "VEB": g["VEB"],
        "SVEB": g["SVEB"],
        "asked": sum(v["asked"] for v in found.values()),
        "asked_counts": {
            c: sum(v["asked_counts"][c] for v in found.values()) for c in ("N", "S", "V", "F", "Q")
        },
        "per_record": {
            r: {"asked": v["beats"], "VEB": v["VEB"], "SVEB": v["SVEB"]} for r, v in found.items()
        },
    }
    write_json(Path(run_dir) / "review.json", out)
    return out


_KEYS = ("Acc", "Se", "Spe", "PPV")


def seed_stats(summaries: list[dict], seeds) -> dict:
    """VEB/SVEB figures as the mean over seeds (the keys of one run), their ``[min, max]``
    range (``VEB_range``, ``SVEB_range``) and each seed's Se/+P."""
    out = {}
    for block in ("VEB", "SVEB"):
        vals = {k: [s[block][k] for s in summaries if s[block][k] is not None] for k in _KEYS}
        out[block] = {k: (float(np.mean(v)) if v else None) for k, v in vals.items()}
        if len(summaries) > 1:
            out[f"{block}_range"] = {k: [min(v), max(v)] if v else None for k, v in vals.items()}
    if len(summaries) > 1:
        out["seeds"] = list(seeds)
        out["per_seed"] = [
            {b: {k: s[b][k] for k in ("Se", "PPV")} for b in ("VEB", "SVEB")} for s in summaries
        ]
    return out


def seed_table(runs: list[dict], seeds, review: bool) -> str:
    """Se / +P per seed and their mean [min-max], strict (and review) rows, in %."""

    def cells(s):
        return [s[b][k] for b in ("VEB", "SVEB") for k in ("Se", "PPV")]

    def fmt(v):
        return ("-" if v is None else f"{100 * v:.1f}").rjust(11)

    lines = [f"{'seed':>12} {'VEB Se':>11} {'VEB +P':>11} {'SVEB Se':>11} {'SVEB +P':>11}"]
    kinds = [("strict", "summary")] + ([("review", "review")] if review else [])
    for name, key in kinds:
        for seed, r in zip(seeds, runs):
            lines.append(f"{name + ' ' + str(seed):>12} " + " ".join(map(fmt, cells(r[key]))))
        st = seed_stats([r[key] for r in runs], seeds)
        lines.append(f"{name + ' mean':>12} " + " ".join(map(fmt, cells(st))))
        rng = [st[f"{b}_range"][k] for b in ("VEB", "SVEB") for k in ("Se", "PPV")]
        lines.append(
            f"{name + ' range':>12} "
            + " ".join(
                ("-" if v is None else f"{100 * v[0]:.1f}-{100 * v[1]:.1f}").rjust(11) for v in rng
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
