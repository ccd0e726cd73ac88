#!/usr/bin/env python
"""Inter-patient benchmark: train the global model on DS1, score it on DS2 and on SVDB.

    python scripts/benchmark_inter_patient.py [--out DIR] [overrides…]
    python scripts/benchmark_inter_patient.py --ship      # rebuild the shipped model + card
    python scripts/benchmark_inter_patient.py --quick     # 3 DS1 records, 1 epoch (the test)

Trains with ``configs/inter_patient.yaml`` (DS1 minus its ``val_records``; early stopping and
the S/V decision rule on those held-out DS1 patients), then scores DS2 (de Chazal 2004) and
the 43 records of the MIT-BIH Supraventricular Arrhythmia Database (``--svdb``, 128 Hz, lead
ECG1; another database, never trained on) with EC57 gross statistics, printed beside the
published inter-patient rows. Ends with one JSON line:
``{"wall_s", "train_s", "DS2": {"VEB": {Se, PPV, Spe, Acc}, "SVEB": {…}}, "SVDB": {…}}``.
Needs ``ECGCNN_DATA_DIR`` (or ``data.root=…``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ecgcnn.apps import CONFIG_DIR
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import read_records_list
from ecgcnn.evaluation.aami import METRICS
from ecgcnn.evaluation.report import console_table, pct, published_for
from ecgcnn.models.shipped import CHECKPOINT_NAME, GENERIC_DIR, MODEL_CARD_NAME
from ecgcnn.training.inter_patient import (
    cross_validate,
    evaluate_records,
    save_global,
    train_global,
)

SVDB_DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "svdb"
QUICK = [
    "split.train_records=[118,209,220]",
    "split.test_records=[232]",
    "trainer.max_epochs=1",
]


def svdb_scores(model, data_cfg, root: Path, records: list[str] | None) -> dict:
    """EC57 scores on SVDB records, read with the model's beat settings but lead ECG1."""
    cfg = OmegaConf.merge(data_cfg, {"root": str(root), "leads": ["ECG1"], "records": []})
    names = records or read_records_list(root)
    beats = load_beats(cfg, records=names, workers=2).beats
    return evaluate_records(model, beats, [r for r in names if r in beats])


def gross(m: dict) -> dict:
    return {k: {s: m[k][s] for s in METRICS} for k in ("VEB", "SVEB")}


def card_text(cfg, gm, ds2: dict, svdb: dict, train_s: float, command: str) -> str:
    """The shipped model's card: what it was trained on, how, and its DS2 / SVDB figures."""
    c = OmegaConf.to_container(cfg, resolve=True)
    val = [str(r) for r in c["val_records"]]
    fit_recs = [str(r) for r in c["split"]["train_records"] if str(r) not in val]

    def table(m):
        rows = ["| | Se | +P | Spe | Acc |", "|---|---|---|---|---|"]
        rows += [
            f"| {k} | " + " | ".join(pct(m[k][s]) for s in ("Se", "PPV", "Spe", "Acc")) + " |"
            for k in ("VEB", "SVEB")
        ]
        return "\n".join(rows)

    figures = {"DS2": gross(ds2), "SVDB": gross(svdb)}
    if val:
        training = f"""- trained on: {", ".join(fit_recs)} ({sum(gm.train_counts.values()):,} beats {gm.train_counts})
- held out (whole patients, DS1): {", ".join(val)}: early stopping (best epoch
  {gm.fit.best_epoch} of {gm.fit.epochs_run}) and the decision rule. DS2 and SVDB chose nothing.
- decision rule: class-prior multipliers {gm.prior} chosen for the best SVEB / VEB F1 on the
  held-out DS1 patients, folded into the output bias (the argmax is the decision).
- held-out DS1 patients, calibrated: VEB Se {pct(gm.val_scores["VEB"]["Se"])} +P
  {pct(gm.val_scores["VEB"]["PPV"])}, SVEB Se {pct(gm.val_scores["SVEB"]["Se"])} +P
  {pct(gm.val_scores["SVEB"]["PPV"])}."""
    else:
        training = f"""- trained on all 22 DS1 records: {", ".join(fit_recs)}
  ({sum(gm.train_counts.values()):,} beats {gm.train_counts}), {c["trainer"]["max_epochs"]} epochs.
- the epoch count and the decision rule (class-prior multipliers {gm.prior}, folded into the
  output bias, so the argmax is the decision) were chosen by leave-records-out
  cross-validation inside DS1 (`scripts/benchmark_inter_patient.py --cv`, {c["cv_folds"]} folds of
  whole records: the best pooled out-of-fold SVEB + VEB F1; figures in `docs/experiments.md`).
  DS2 and SVDB chose nothing."""
    return f"""# Global inter-patient model (`{CHECKPOINT_NAME}`)

The default model of `ecgcnn-analyze` / `ecgcnn-monitor` when no checkpoint is given: a
{gm.payload["inter_patient"]["parameters"]:,}-parameter CNN1D (`configs/model/{c["model"]["name"]}.yaml`)
for a patient nobody has labelled. Rebuilt with `{command}` ({train_s:.0f} s of training).

## Training data (MIT-BIH Arrhythmia Database, DS1 of de Chazal et al. 2004)
{training}
- inputs: lead {", ".join(c["data"]["leads"])} at {c["data"]["fs"]:g} Hz, filter
  {c["data"]["filter"]["kind"]}, beat normalize={c["data"]["beat"]["normalize"]},
  template={c["data"]["beat"]["template"]}, trio={c["data"]["beat"]["trio"]}, the 9 RR
  features of `ecgcnn.data.beats.RR_FEATURES`{" (held constant: " + ", ".join(c["rr_const"]) + ")" if c["rr_const"] else ""}{", standardized while training (folded into the first layer)" if c.get("rr_standardize") else ""};
  all causal except post_rr/post_local (one beat of delay), so `ecgcnn-monitor` computes them.
- training: {c["optim"]["name"]} lr {c["optim"]["lr"]}, batch {c["trainer"]["batch_size"]},
  class weighting {c["trainer"]["class_weighting"]}, balanced sampling
  {c["trainer"]["balanced_sampling"]}, dropout {c["model"]["dropout"]}, seed {c["trainer"]["seed"]}.

## DS2 (22 MIT-BIH records, {ds2["n_beats"]:,} beats), EC57 gross
{table(ds2)}

## SVDB (MIT-BIH Supraventricular Arrhythmia Database, 43 records, lead ECG1, {svdb["n_beats"]:,} beats)
{table(svdb)}

## License and citation of the training data
MIT-BIH Arrhythmia Database (PhysioNet), Open Data Commons Attribution License v1.0: Moody GB,
Mark RG, IEEE Eng Med Biol 20(3):45-50 (2001); Goldberger AL et al., Circulation
101(23):e215-e220 (2000). SVDB (scored only): Greenwald SD, MIT 1990, via PhysioNet.

## Figures (read by tests/test_inter_patient.py)
```json
{json.dumps(figures, indent=1)}
```
"""


def run_cv(cfg, t0: float, out: Path) -> None:
    """``--cv``: leave-records-out cross-validation inside DS1 only (DS2 is not even read);
    the out-of-fold probabilities of every epoch go to ``out/cv_oof.npz``."""
    ds1 = list(map(str, cfg.split.train_records))
    beats = load_beats(cfg.data, records=ds1, workers=2).beats
    t1 = time.perf_counter()
    cv = cross_validate(cfg, beats)
    cv_s = time.perf_counter() - t1
    print(f"DS1 {len(cv['folds'])}-fold CV (whole records) {cv_s:.1f} s, folds {cv['folds']}")
    for e, f1 in enumerate(cv["f1"], 1):
        print(f"  epoch {e}: calibrated SVEB + VEB F1 {f1:.3f}")
    print(f"chosen on DS1 out-of-fold: epoch {cv['epoch']}, prior {cv['prior']}")
    print(console_table(cv["scores"], None, label="DS1 out-of-fold"))
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "cv_oof.npz", y=cv["y"], record=cv["record"], proba=np.stack(cv["proba"])
    )
    got = {"epoch": cv["epoch"], "prior": cv["prior"], "f1": [round(f, 4) for f in cv["f1"]]}
    res = {"wall_s": round(time.perf_counter() - t0, 1), "cv_s": round(cv_s, 1)}
    print(json.dumps({**res, "cv": got, "DS1_oof": gross(cv["scores"])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 DS1 records, 1 epoch, 1 SVDB record")
    ap.add_argument(
        "--ship", action="store_true", help=f"write {CHECKPOINT_NAME} + card into the package"
    )
    ap.add_argument(
        "--cv", action="store_true", help="cross-validate inside DS1 (cv_folds) and stop"
    )
    ap.add_argument("--out", default=None, help="folder for global.pt (default outputs/…)")
    ap.add_argument("--svdb", default=str(SVDB_DEFAULT), help="SVDB record folder")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/inter_patient.yaml")
    args = ap.parse_args()
    if args.quick and args.ship:
        ap.error("--quick models are not shipped")
    t0 = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("inter_patient", overrides=(QUICK if args.quick else []) + args.overrides)
    out = Path(args.out or f"outputs/bench_inter_patient/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if args.cv:
        return run_cv(cfg, t0, out)
    ds1, ds2_recs = list(map(str, cfg.split.train_records)), list(map(str, cfg.split.test_records))
    beats = load_beats(cfg.data, records=ds1 + ds2_recs, workers=2).beats
    t1 = time.perf_counter()
    gm = train_global(cfg, {r: beats[r] for r in ds1})  # DS2 beats are not even passed
    train_s = time.perf_counter() - t1
    ds2 = evaluate_records(gm.model, beats, ds2_recs)
    svdb = svdb_scores(gm.model, cfg.data, Path(args.svdb), ["800"] if args.quick else None)
    published = published_for("inter_patient")
    print(
        f"DS1 training {train_s:.1f} s, best epoch {gm.fit.best_epoch}/{gm.fit.epochs_run}, "
        f"prior {gm.prior}; held-out DS1 {list(cfg.val_records)}"
    )
    if gm.val_scores:
        print(console_table(gm.val_scores, None, label="DS1 held out"))
    print(f"DS2 ({len(ds2_recs)} records, {ds2['n_beats']} beats):")
    print(console_table(ds2, published))
    print(f"SVDB ({len(svdb['per_record'])} records, {svdb['n_beats']} beats, lead ECG1):")
    print(console_table(svdb, None, label="SVDB"))

    gm.payload["inter_patient"].update(DS2=gross(ds2), SVDB=gross(svdb))
    save_global(gm, out / "global.pt")
    if args.ship:
        command = "python scripts/benchmark_inter_patient.py --ship " + " ".join(args.overrides)
        save_global(gm, GENERIC_DIR / CHECKPOINT_NAME)
        (GENERIC_DIR / MODEL_CARD_NAME).write_text(
            card_text(cfg, gm, ds2, svdb, train_s, command.strip())
        )
        print(f"shipped: {GENERIC_DIR / CHECKPOINT_NAME} + {MODEL_CARD_NAME}")
    print(
        json.dumps(
            {
                "wall_s": round(time.perf_counter() - t0, 1),
                "train_s": round(train_s, 1),
                "DS2": gross(ds2),
                "SVDB": gross(svdb),
            }
        )
    )


if __name__ == "__main__":
    main()
