"""Summary of patient-specific runs: one ``summary.json`` and report over many patients.

``summarize(DIR)`` gathers the ``*/metrics.json`` (and ``scores.npz``) that ``ecgcnn-finetune``
writes per patient: gross and average VEB/SVEB figures, each input view alone, the
minutes-vs-accuracy curve when several ``split.minutes`` ran, and the operating points of
the averaged probabilities (``aami.prior_sweep``), next to the published studies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import combine, prior_sweep
from ecgcnn.evaluation.report import (
    console_table,
    operating_figure,
    pct,
    published_for,
    write_report,
)


def summarize(run_dir: Path, out_dir: Path | None = None) -> dict:
    """Gather every ``*/metrics.json`` of patient runs under ``run_dir`` into one summary.

    Gross figures are computed from the summed per-patient confusion matrices (equal to scoring
    the concatenated test beats); averages are per-patient means. When runs with several
    ``minutes`` settings are present, one summary per setting and a minutes-vs-accuracy plot.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir or run_dir)
    found = sorted(run_dir.glob("*/metrics.json")) or sorted(run_dir.glob("**/metrics.json"))
    found = [p for p in found if p.parent != out_dir]
    if not found:
        raise EcgError(f"{run_dir}: no patient runs (*/metrics.json) to summarize")

    by_minutes: dict[float, dict[str, dict]] = {}
    dirs: dict[tuple[str, float], Path] = {}  # (record, minutes) -> the patient's run folder
    for p in found:
        m = json.loads(p.read_text())
        if "record" not in m:
            continue
        minutes = float(m.get("minutes", 5.0))
        by_minutes.setdefault(minutes, {})[m["record"]] = m
        dirs[m["record"], minutes] = p.parent
    if not by_minutes:
        raise EcgError(f"{run_dir}: metrics.json files found but none from ecgcnn-finetune")
    curves = {}
    for minutes, runs in sorted(by_minutes.items()):
        payload = combine({r: np.asarray(m["confusion"]) for r, m in runs.items()})
        curves[minutes] = payload
    main_minutes = 5.0 if 5.0 in curves else max(curves)
    summary = curves[main_minutes]
    runs = by_minutes[main_minutes]
    views = list(next(iter(runs.values())).get("view_confusion", {}))
    by_view = {}
    if len(views) > 1 and all(
        set(m.get("view_confusion", {})) == set(views) for m in runs.values()
    ):
        for v in views:
            g = combine({r: np.asarray(m["view_confusion"][v]) for r, m in runs.items()})
            by_view[v] = {"VEB": g["VEB"], "SVEB": g["SVEB"]}
    summary.update(
        {
            "split": "patient_specific",
            "minutes": main_minutes,
            "n_patients": len(runs),
            "published": published_for("patient_specific"),
            "train_seconds": {r: m.get("seconds") for r, m in sorted(runs.items())},
            "by_view": by_view,
            "minutes_curve": {
                str(k): {"VEB": v["VEB"], "SVEB": v["SVEB"], "n_patients": len(by_minutes[k])}
                for k, v in curves.items()
            },
        }
    )
    sweep = _prior_sweep([dirs[r, main_minutes] for r in sorted(runs)])
    summary["prior_sweep"] = sweep
    figs = {}
    if len(curves) > 1:
        figs["minutes_curve"] = _minutes_figure(curves)
    if sweep:
        figs["operating_points"] = operating_figure(sweep, summary["published"])
    write_report(
        summary,
        out_dir,
        title=f"Patient-specific benchmark: {len(runs)} patients, "
        f"first {main_minutes:g} min for training",
        published=summary["published"],
        extra_figures=figs or None,
        notes=[
            "Gross figures: summed per-patient confusion matrices (AAMI EC57).",
            "Common-set beats are excluded from every test set.",
            *[f"View '{v}' alone: {_view_line(g)}." for v, g in by_view.items()],
            *(["Operating points other than the argmax: the figure below."] if sweep else []),
        ],
    )
    (out_dir / "summary.json").write_bytes((out_dir / "metrics.json").read_bytes())
    return summary


def _prior_sweep(patient_dirs: list[Path]) -> dict:
    """:func:`prior_sweep` of the patients' concatenated test scores (``scores.npz`` beside
    each ``metrics.json``); empty when a patient has none (runs of older versions)."""
    paths = [d / "scores.npz" for d in patient_dirs]
    if not all(p.is_file() for p in paths):
        return {}
    ys, ps = [], []
    for path in paths:
        with np.load(path) as z:
            ys.append(z["y"])
            ps.append(z["proba"])
    return prior_sweep(np.concatenate(ys), np.concatenate(ps))


def _sweep_lines(sweep: dict) -> list[str]:
    """One line per class: Se / +P (%) as its probability is scaled by each weight."""
    return [
        f"{kind} operating points, its probability x w before the argmax (w: Se/+P): "
        + ", ".join(f"{p['w']:g}: {pct(p['Se'])}/{pct(p['PPV'])}" for p in pts)
        + "."
        for kind, pts in sweep.items()
    ]


def _view_line(g: dict) -> str:
    return ", ".join(f"{k} Se {pct(g[k]['Se'])} +P {pct(g[k]['PPV'])}" for k in ("VEB", "SVEB"))


def _minutes_figure(curves: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    xs = sorted(curves)
    for kind, style in (("VEB", "-"), ("SVEB", "--")):
        for m, marker in (("Se", "o"), ("PPV", "s"), ("Acc", "^")):
            ys = [100 * (curves[x][kind][m] or 0) for x in xs]
            ax.plot(xs, ys, style, marker=marker, label=f"{kind} {m if m != 'PPV' else '+P'}")
    ax.set_xlabel("minutes of the patient's own ECG used for training")
    ax.set_ylabel("%")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Patient-specific accuracy vs training minutes (gross, AAMI)")
    return fig


def format_summary(s: dict) -> str:
    """The summary as console text: the gross table, each view alone, the operating points."""
    views = "".join(f"\nview '{v}' alone: {_view_line(g)}" for v, g in s.get("by_view", {}).items())
    sweep = "".join(f"\n{line}" for line in _sweep_lines(s.get("prior_sweep") or {}))
    return (
        f"{s['n_patients']} patients, gross (AAMI EC57)\n"
        + console_table(s, s.get("published"))
        + views
        + sweep
    )
