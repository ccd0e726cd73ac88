#!/usr/bin/env python
"""Cross-database benchmark: an MIT-BIH reference kit personalized onto another database.

    python scripts/benchmark_crossdb.py [--kit DIR] [--db /work/shared/data/svdb] [--lead ECG1]
                                        [--workers 2] [--out DIR] [--mitdb] [--quick]

Builds the MIT-BIH kit (``ecgcnn-kit``; or reuses ``--kit DIR``), then personalizes every record
of ``--db`` (SVDB: 43 records at 128 Hz, leads ECG1/ECG2) both ways with ``ecgcnn-personalize``'s
function: patient-specific (the kit's common set + common models, fine-tuned on the record's
labelled first 5 minutes) and zero-shot (the record's normal beats of the first 5 minutes + beats
synthesized with the kit's ABS library). Patients run in ``--workers`` joblib processes. Scores:
EC57 gross VEB/SVEB Se/+P/Spe/Acc over the beats after the first 5 minutes (patient-specific),
binary abnormal-vs-normal Se/+P/F1 and the first-3 detection (zero-shot), next to the MIT-BIH
figures of the same kit (``--mitdb``: the 44 records patient-specific and the 34 persons of the
zero-shot protocol personalized through the same kit; otherwise not printed). ``--quick``: the
first 3 records of ``--db`` (with ``--kit``, a test's fixture kit).

Ends with one JSON line: {"wall_s", "peak_rss_mb", "patient_specific": {"VEB": {"Se", "PPV",
"Spe", "Acc"}, "SVEB": {...}}, "zero_shot": {"Se", "PPV", "F1", "p_detect_first3"}} (fractions).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

KEYS = ("Se", "PPV", "Spe", "Acc")


def _one(kit: str, record: str, mode: str, lead: str | None, out: str, minutes: float) -> dict:
    from omegaconf import OmegaConf

    from ecgcnn.config import PersonalizeConfig
    from ecgcnn.personalize.run import personalize_record

    cfg = OmegaConf.merge(
        OmegaConf.structured(PersonalizeConfig),
        {
            "kit": kit,
            "record": record,
            "mode": mode,
            "lead": lead,
            "threads": 1,
            "report": False,
            "minutes": minutes,
        },
    )
    m = personalize_record(cfg, Path(out))
    return {
        k: m[k]
        for k in ("record", "mode", "seconds", "beats", "confusion", "binary", "alarm")
        if k in m
    }


def run_all(
    kit: str,
    records: list[str],
    lead: str | None,
    out: Path,
    workers: int,
    modes=("patient_specific", "zero_shot"),
    minutes: float = 5.0,
) -> dict[str, list[dict]]:
    from joblib import Parallel, delayed

    jobs = [(kit, r, m, lead, str(out / m / Path(r).name), minutes) for m in modes for r in records]
    res = Parallel(n_jobs=workers, verbose=0)(delayed(_one)(*j) for j in jobs)
    by_mode: dict[str, list[dict]] = {m: [] for m in modes}
    for r in res:
        by_mode[r["mode"]].append(r)
        print(
            f"  {r['mode']:16s} {r['record']}: {r['beats']} beats, {r['seconds']:.1f} s", flush=True
        )
    return by_mode


def gross(by_mode: dict[str, list[dict]]) -> dict:
    from ecgcnn.evaluation.aami import combine
    from ecgcnn.synthesis.report import summarize

    out = {}
    if by_mode.get("patient_specific"):
        m = combine({r["record"]: r["confusion"] for r in by_mode["patient_specific"]})
        out["patient_specific"] = {c: {k: m[c][k] for k in KEYS} for c in ("VEB", "SVEB")}
    if by_mode.get("zero_shot"):
        s = summarize(by_mode["zero_shot"])
        g = s["binary_gross"]
        out["zero_shot"] = {
            "Se": g["Se"],
            "PPV": g["PPV"],
            "F1": g["F1"],
            "p_detect_first3": s["p_detect_first3"],
        }
    return out


def _fmt(x) -> str:
    return "   -" if x is None else f"{100 * x:5.1f}"


def print_table(figs: dict[str, dict]) -> None:
    print("patient-specific (EC57 gross, %):      VEB Se   +P  Spe  Acc | SVEB Se   +P  Spe  Acc")
    for name, f in figs.items():
        if "patient_specific" in f:
            v, s = f["patient_specific"]["VEB"], f["patient_specific"]["SVEB"]
            print(
                f"  {name:36s}"
                + " ".join(_fmt(v[k]) for k in KEYS)
                + " |"
                + " ".join(_fmt(s[k]) for k in KEYS)
            )
    print("zero-shot (binary, %):                  Se    +P    F1  first-3")
    for name, f in figs.items():
        if "zero_shot" in f:
            z = f["zero_shot"]
            print(
                f"  {name:36s}"
                + " ".join(_fmt(z[k]) for k in ("Se", "PPV", "F1", "p_detect_first3"))
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--kit", default=None, help="a built kit (default: build the MIT-BIH kit)")
    ap.add_argument("--db", default="/work/shared/data/svdb")
    ap.add_argument("--lead", default="ECG1")
    ap.add_argument("--records", default=None, help="comma list (default: RECORDS of --db)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=5.0, help="training minutes per patient")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--mitdb",
        action="store_true",
        help="also personalize the MIT-BIH records through the same kit",
    )
    ap.add_argument("--quick", action="store_true", help="the first 3 records only")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from ecgcnn.data.io import read_records_list
    from ecgcnn.errors import EcgError

    out = Path(args.out or f"outputs/benchmark_crossdb/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: output directory exists and is not empty", file=sys.stderr)
        return 2
    try:
        kit = args.kit
        if kit is None:
            from omegaconf import OmegaConf

            from ecgcnn.config import KitConfig
            from ecgcnn.personalize.kit import build_kit

            kit = str(
                build_kit(
                    OmegaConf.merge(
                        OmegaConf.structured(KitConfig),
                        {"out": str(out / "kit"), "workers": args.workers},
                    )
                )
            )
        from ecgcnn.personalize.kit import load_kit

        k = load_kit(kit)
        db = Path(args.db)
        names = args.records.split(",") if args.records else read_records_list(db)
        if args.quick:
            names = names[:3]
        print(f"kit {kit}; {len(names)} records of {db} (lead {args.lead}), {args.workers} workers")
        figs = {
            f"{db.name} ({len(names)} records)": gross(
                run_all(
                    kit,
                    [str(db / n) for n in names],
                    args.lead,
                    out / db.name,
                    args.workers,
                    minutes=args.minutes,
                )
            )
        }
        if args.mitdb:
            ref = Path(k.patient_specific.data.root or "")
            ps = [str(ref / r) for r in k.patient_specific.split.records]
            zs = [str(ref / r) for r in k.zero_shot.records]
            a = run_all(
                kit, ps, None, out / "mitdb", args.workers, ("patient_specific",), args.minutes
            )
            b = run_all(kit, zs, None, out / "mitdb", args.workers, ("zero_shot",), args.minutes)
            figs[f"MIT-BIH, same kit ({len(ps)} / {len(zs)})"] = gross({**a, **b})
    except EcgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(figs)
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    first = next(iter(figs.values()))
    write = out / "crossdb.json"
    write.parent.mkdir(parents=True, exist_ok=True)
    write.write_text(json.dumps(figs, indent=2))
    print(
        json.dumps(
            {"wall_s": round(wall, 2), "peak_rss_mb": round((own + kids) / 1024, 1), **first}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
