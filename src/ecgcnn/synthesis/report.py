"""Zero-shot summary over persons: gross binary metrics, early-warning figures, report.md/html.

``summarize`` gathers per-person ``metrics.json`` payloads of
:func:`ecgcnn.personalize.zero_shot.run_patient`; ``write_summary`` writes summary.json,
report.md (+ summary.png) and a self-contained report.html; ``summarize_dir`` does both for a
folder (a Hydra multirun or the benchmark's output).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ecgcnn.errors import EcgError
from ecgcnn.evaluation.report import pct
from ecgcnn.synthesis.zeroshot import binary_rates


def _mean(vals) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def summarize(results: list[dict]) -> dict:
    """Summary over persons: gross binary metrics (summed counts), per-person means and the
    early-warning figures. ``p_detect_first3`` (headline) is the fraction of persons with
    abnormal test beats whose first three were caught by at least one flag."""
    if not results:
        raise EcgError("summarize: no per-patient metrics to summarize")
    counts = {k: sum(r["binary"][k] for r in results) for k in ("TP", "FN", "FP", "TN")}
    with_abn = [r["alarm"] for r in results if r["alarm"]["abnormal_beats"] > 0]
    hours = sum(r["alarm"]["hours"] for r in results)
    false = sum(r["alarm"]["false_alarms"] for r in results)
    return {
        "patients": len(results),
        "patients_with_abnormal_test_beats": len(with_abn),
        "binary_gross": {**counts, **binary_rates(counts)},
        "binary_mean": {
            k: _mean(r["binary"][k] for r in results) for k in ("Se", "Spe", "PPV", "F1", "Acc")
        },
        "p_detect_first3": _mean(float(a["detected_first3"]) for a in with_abn),
        "p_detect_first3_model": _mean(a["p_detect_first3_model"] for a in with_abn),
        "p_detect_triplets": _mean(a["triplets_detected"] for a in with_abn),
        "missed_first3": [r["record"] for r in results if r["alarm"]["detected_first3"] is False],
        "false_alarms": false,
        "hours": hours,
        "false_alarms_per_hour": false / hours if hours > 0 else None,
        "normal_flagged_per_hour": _mean(r["alarm"]["normal_flagged_per_hour"] for r in results),
    }


def _fmt(x, as_pct=True) -> str:
    return pct(x) if as_pct or x is None else f"{x:.2f}"


def _table(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = [
        "record",
        "N test",
        "S+V test",
        "Se %",
        "Spe %",
        "+P %",
        "F1 %",
        "Acc %",
        "first-3 hit",
        "1st hit #",
        "false alarms/h",
    ]
    rows = []
    for r in results:
        b, a, c = r["binary"], r["alarm"], r["test"]["counts"]
        rows.append(
            [
                r["record"],
                str(c["N"]),
                str(c["S"] + c["V"]),
                _fmt(b["Se"]),
                _fmt(b["Spe"]),
                _fmt(b["PPV"]),
                _fmt(b["F1"]),
                _fmt(b["Acc"]),
                {True: "yes", False: "NO", None: "–"}[a["detected_first3"]],
                str(a["first_detected_index"] or "–"),
                _fmt(a["false_alarms_per_hour"], as_pct=False),
            ]
        )
    return head, rows


def summary_figure(results: list[dict]) -> Figure:
    names = [r["record"] for r in results]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.3 * len(names) + 2), 3.6))
    ax = fig.add_subplot()
    for off, key in ((-0.27, "Se"), (0.0, "Spe"), (0.27, "F1")):
        ax.bar(x + off, [100 * (r["binary"][key] or 0) for r in results], 0.27, label=key)
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def write_summary(
    results: list[dict],
    out_dir: Path,
    title: str = "Zero-shot ABS",
    figures: dict[str, Path] | None = None,
) -> dict:
    """summary.json, report.md (+ summary.png) and a self-contained report.html.

    ``figures``: record -> that person's ``beats.png`` (average normal beat, real test-part and
    synthetic abnormal beats); default ``out_dir/<record>/beats.png`` where it exists. They
    are linked from report.md and embedded in report.html, one section per person."""
    import base64
    import html
    import io

    from ecgcnn.atomic import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: r["record"])
    summ = summarize(results)
    write_json(out_dir / "summary.json", {**summ, "per_patient": results})
    g = summ["binary_gross"]
    notes = [
        (
            f"{summ['patients']} patients; gross binary (abnormal = S or V; F, Q not scored): "
            f"Se {_fmt(g['Se'])}, Spe {_fmt(g['Spe'])}, +P {_fmt(g['PPV'])}, "
            f"F1 {_fmt(g['F1'])}, Acc {_fmt(g['Acc'])} %"
        ),
        (
            f"one of the first 3 abnormal beats flagged: {_fmt(summ['p_detect_first3'])} % "
            f"of {summ['patients_with_abnormal_test_beats']} patients (missed: "
            f"{', '.join(summ['missed_first3']) or 'none'}); as a probability from per-beat "
            f"detection (how Sci Rep 2017 states it), mean over patients of 1-(1-Se)^3: "
            f"{_fmt(summ['p_detect_first3_model'])} %; all abnormal triplets: "
            f"{_fmt(summ['p_detect_triplets'])} %"
        ),
        (
            f"false alarms: {summ['false_alarms']} in {summ['hours']:.2f} h = "
            f"{_fmt(summ['false_alarms_per_hour'], as_pct=False)} per hour"
        ),
    ]
    head, rows = _table(results)
    png = io.BytesIO()
    summary_figure(results).savefig(png, format="png", dpi=100)
    (out_dir / "summary.png").write_bytes(png.getvalue())
    if figures is None:
        figures = {r["record"]: out_dir / r["record"] / "beats.png" for r in results}
    figures = {rec: Path(p) for rec, p in figures.items() if Path(p).is_file()}
    md = [
        f"# {title}",
        "",
        *[f"- {n}" for n in notes],
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "![summary](summary.png)",
        "",
    ]
    for rec, path in figures.items():
        rel = os.path.relpath(path, out_dir)
        alt = f"record {rec}: normal, real and synthetic abnormal beats"
        md += [f"## Record {rec}", "", f"![{alt}]({rel})", ""]
    (out_dir / "report.md").write_text("\n".join(md))
    e = html.escape
    img = base64.b64encode(png.getvalue()).decode()
    doc = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        (
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}</style></head><body>"
        ),
        f"<h1>{e(title)}</h1><ul>",
        *[f"<li>{e(n)}</li>" for n in notes],
        "</ul><table>",
        "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>",
        *["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows],
        f"</table><img src='data:image/png;base64,{img}'>",
        *[
            f"<h2>Record {e(rec)}</h2><img alt='record {e(rec)} beats' src='data:image/png;"
            f"base64,{base64.b64encode(path.read_bytes()).decode()}'>"
            for rec, path in figures.items()
        ],
        "</body></html>",
    ]
    (out_dir / "report.html").write_text("\n".join(doc))
    return summ


def summarize_dir(root: Path, out_dir: Path | None = None) -> dict:
    """Gather every ``metrics.json`` under ``root`` (e.g. a Hydra multirun folder) and write
    the summary into ``out_dir`` (default ``root``)."""
    import json

    paths = sorted(Path(root).rglob("metrics.json"))
    if not paths:
        raise EcgError(f"{root}: no metrics.json found below this folder")
    results = [json.loads(p.read_text()) for p in paths]
    recs = [r.get("record") for r in results]
    if len(set(recs)) != len(recs):
        raise EcgError(
            f"{root}: several metrics.json for the same record "
            f"{sorted({r for r in recs if recs.count(r) > 1})}"
        )
    figures = {r["record"]: p.parent / "beats.png" for r, p in zip(results, paths)}
    return write_summary(results, Path(out_dir) if out_dir else Path(root), figures=figures)
