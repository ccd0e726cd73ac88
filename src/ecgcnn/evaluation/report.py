"""Evaluation reports: metrics.json, report.md and a self-contained report.html with figures.

Figures are drawn on bare :class:`matplotlib.figure.Figure` objects (no pyplot), which render
PNG through the Agg canvas and never touch the global backend or a display.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from ecgcnn.atomic import write_bytes_atomic
from ecgcnn.config import CONFIG_DIR
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import CLASSES, METRICS

PUBLISHED_PATH = Path(CONFIG_DIR) / "published.yaml"  # package data, beside the app configs
PROTOCOLS = ("patient_specific", "inter_patient")
KINDS = ("VEB", "SVEB")
# Column order of every VEB/SVEB table, as the literature prints it (Acc, Se, Spe, +P).
TABLE_COLS = (("Acc", "Acc"), ("Se", "Se"), ("Spe", "Spe"), ("PPV", "+P"))
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "th{background:#eee}img{max-width:100%}"
)


# ---------------------------------------------------------------- published figures


def load_published(path: str | os.PathLike | None = None) -> dict:
    """Read the published VEB/SVEB figures (``configs/published.yaml``).

    Parameters
    ----------
    path : path-like, optional
        YAML file; default ``configs/published.yaml`` at the repository root.

    Returns
    -------
    dict
        ``{study_key: {"citation", "protocol", "records", "VEB": {...}, "SVEB": {...},
        "note"?}}`` with metric values as fractions or None.
    """
    path = Path(path) if path is not None else PUBLISHED_PATH
    if not path.is_file():
        raise EcgError(f"{path}: published-results file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EcgError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise EcgError(f"{path}: expected a mapping of study keys to results")
    for key, study in data.items():
        where = f"{path}: {key}"
        if not isinstance(study, dict):
            raise EcgError(f"{where}: expected a mapping")
        missing = {"citation", "protocol", "records", *KINDS} - set(study)
        if missing:
            raise EcgError(f"{where}: missing {sorted(missing)}")
        if study["protocol"] not in PROTOCOLS:
            raise EcgError(f"{where}: protocol {study['protocol']!r} not in {PROTOCOLS}")
        for kind in KINDS:
            block = study[kind]
            if not isinstance(block, dict) or set(block) != set(METRICS):
                raise EcgError(f"{where}.{kind}: expected exactly the keys {METRICS}")
            for metric, value in block.items():
                if value is not None and not (
                    isinstance(value, (int, float)) and 0.0 <= value <= 1.0
                ):
                    raise EcgError(f"{where}.{kind}.{metric}: {value!r} is not a fraction")
    return data


def published_for(protocol: str) -> dict:
    """The studies of ``configs/published.yaml`` that used ``protocol``."""
    return {k: v for k, v in load_published().items() if v.get("protocol") == protocol}


# ---------------------------------------------------------------- formatting helpers


def pct(x) -> str:
    """A fraction as a percentage with one decimal; "–" when undefined."""
    return "–" if x is None else f"{100.0 * x:.1f}"


def console_table(metrics: dict, published: dict | None = None, label: str = "ours") -> str:
    """Gross VEB/SVEB Acc, Se, Spe, +P (%) as plain text, published studies underneath."""
    lines = [f"{'':<19}{'Acc':>6}{'Se':>6}{'Spe':>6}{'+P':>6}"]
    for kind in KINDS:
        rows = [(label, metrics[kind])] + [
            (name, p.get(kind) or {}) for name, p in (published or {}).items()
        ]
        for name, b in rows:
            cells = "".join(f"{pct(b.get(k)):>6}" for k in ("Acc", "Se", "Spe", "PPV"))
            lines.append(f"{kind:<5}{name:<14}{cells}")
    return "\n".join(lines)


def _stat_cells(block: dict) -> list[str]:
    return [pct(block.get(k)) for k, _ in TABLE_COLS]


def _header() -> list[str]:
    return [f"{kind} {label}" for kind in KINDS for _, label in TABLE_COLS]


def _tables(metrics: dict, published: dict | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """All report tables as (title, header, rows), shared by the Markdown and HTML writers."""
    both = _header()
    tables = [
        (
            "Gross statistics (%)",
            ["", *both],
            [["gross", *_stat_cells(metrics["VEB"]), *_stat_cells(metrics["SVEB"])]],
        )
    ]
    if "average" in metrics:
        avg = metrics["average"]
        tables.append(
            (
                "Average over records (%)",
                ["", *both],
                [["average", *_stat_cells(avg["VEB"]), *_stat_cells(avg["SVEB"])]],
            )
        )
    if published:
        rows = [
            [
                "this work (gross)",
                "",
                "",
                *_stat_cells(metrics["VEB"]),
                *_stat_cells(metrics["SVEB"]),
            ]
        ]
        for key, study in published.items():
            rows.append(
                [
                    f"{key}: {study['citation']}",
                    study["protocol"],
                    str(study["records"]),
                    *_stat_cells(study["VEB"]),
                    *_stat_cells(study["SVEB"]),
                ]
            )
        tables.append(("Published results (%)", ["study", "protocol", "records", *both], rows))
    if "per_record" in metrics:
        rows = [
            [name, str(r["n_beats"]), *_stat_cells(r["VEB"]), *_stat_cells(r["SVEB"])]
            for name, r in metrics["per_record"].items()
        ]
        tables.append(("Per-record statistics (%)", ["record", "beats", *both], rows))
    return tables


# ---------------------------------------------------------------- figures


def confusion_figure(cm, title: str = "Confusion matrix") -> Figure:
    """Confusion matrix figure: colour = row-normalised fraction, text = beat counts."""
    cm = np.asarray(cm, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    # Row-normalised colours keep rare classes (S, F) visible next to tens of thousands of N.
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="fraction of reference row")
    fig.tight_layout()
    return fig


def per_record_figure(per_record: dict) -> Figure:
    """Per-record Se and +P bar charts, one panel for VEB and one for SVEB.

    Undefined values (no such beats in the record, or none predicted) are left as gaps
    and marked "n/a" at the axis, so a missing bar is never read as 0 %.
    """
    names = list(per_record)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.32 * len(names) + 2.0), 6.0))
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.4
    for ax, kind in zip(axes, KINDS):
        for offset, (metric, label) in ((-width / 2, ("Se", "Se")), (width / 2, ("PPV", "+P"))):
            vals = [per_record[n][kind][metric] for n in names]
            heights = [100.0 * v if v is not None else 0.0 for v in vals]
            ax.bar(x + offset, heights, width, label=label)
            for xi, v in zip(x, vals):
                if v is None:
                    ax.text(
                        xi + offset,
                        1.0,
                        "n/a",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        color="grey",
                    )
        ax.set_ylim(0, 105)
        ax.set_ylabel(f"{kind} (%)")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x, names, rotation=90, fontsize=7)
    axes[-1].set_xlabel("record")
    fig.tight_layout()
    return fig


def operating_figure(sweep: dict, published: dict | None = None) -> Figure:
    """Se vs +P as one class's probability is scaled (``aami.prior_sweep``), one panel for VEB
    and one for SVEB; the plain argmax (w = 1) ringed, published studies as labelled points."""
    fig = Figure(figsize=(9.0, 4.2))
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, KINDS):
        pts = [p for p in sweep.get(kind, []) if p["Se"] is not None and p["PPV"] is not None]
        ax.plot(
            [100 * p["Se"] for p in pts],
            [100 * p["PPV"] for p in pts],
            "o-",
            ms=3,
            label="ours, class probability x w",
        )
        for p in pts:
            if p["w"] == 1.0:
                ax.plot(
                    100 * p["Se"],
                    100 * p["PPV"],
                    "o",
                    ms=10,
                    mfc="none",
                    color="C3",
                    label="ours, argmax (w = 1)",
                )
            ax.annotate(
                f"{p['w']:g}",
                (100 * p["Se"], 100 * p["PPV"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        for i, (name, study) in enumerate((published or {}).items()):
            b = study.get(kind) or {}
            if b.get("Se") is not None and b.get("PPV") is not None:
                ax.plot(100 * b["Se"], 100 * b["PPV"], "s", color=f"C{i + 4}", label=name)
        ax.set_xlabel(f"{kind} Se (%)")
        ax.set_ylabel(f"{kind} +P (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Operating points (gross): sensitivity vs positive predictivity")
    fig.tight_layout()
    return fig


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# ---------------------------------------------------------------- writers


def _markdown(title, tables, notes, sources, images) -> str:
    lines = [f"# {title}", ""]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    for heading, header, rows in tables:
        lines += [
            f"## {heading}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
        lines.append("")
    if sources:
        lines += ["## Sources of the published figures", ""]
        lines += [f"- {key}: {text}" for key, text in sources.items()]
        lines.append("")
    lines.append("## Figures")
    lines.append("")
    for name in images:
        lines += [f"![{name}]({name}.png)", ""]
    return "\n".join(lines)


def _html(title, tables, notes, sources, images: dict[str, bytes]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    for heading, header, rows in tables:
        parts.append(f"<h2>{esc(heading)}</h2><table>")
        parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    if sources:
        parts.append("<h2>Sources of the published figures</h2><ul>")
        parts += [f"<li>{esc(key)}: {esc(text)}</li>" for key, text in sources.items()]
        parts.append("</ul>")
    parts.append("<h2>Figures</h2>")
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(name)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    metrics: dict,
    out_dir: str | os.PathLike,
    title: str,
    published: dict | None = None,
    extra_figures: dict[str, Figure] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write metrics.json, report.md, report.html and the PNG figures to ``out_dir``.

    Parameters
    ----------
    metrics : dict
        Payload from :func:`ecgcnn.evaluation.aami.score` or ``combine``.
    out_dir : path-like
        Output folder (created if missing).
    title : str
        Report title.
    published : dict, optional
        Published figures (:func:`load_published`) shown next to ours.
    extra_figures : dict of str to Figure, optional
        More figures; each is saved as ``<name>.png`` and embedded. Names may hold only
        letters, digits, ``_`` and ``-``.
    notes : list of str, optional
        Lines printed under the title (protocol, checkpoint, ...).

    Returns
    -------
    dict of str to Path
        ``{"metrics", "markdown", "html", <figure name>...}`` -> files written.
    """
    for key in ("confusion", "VEB", "SVEB"):
        if key not in metrics:
            raise EcgError(f"metrics: missing {key!r}; pass the payload of aami.score/combine")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    try:
        blob = json.dumps(metrics, indent=2, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise EcgError(f"metrics: not JSON-serialisable without NaN ({exc})") from exc
    written["metrics"] = out / "metrics.json"
    write_bytes_atomic(written["metrics"], blob)

    figures: dict[str, Figure] = {"confusion": confusion_figure(metrics["confusion"])}
    if metrics.get("per_record"):
        figures["per_record"] = per_record_figure(metrics["per_record"])
    for name, fig in (extra_figures or {}).items():
        if not _SAFE_NAME.match(name) or name in figures:
            raise EcgError(f"extra_figures: bad or duplicate figure name {name!r}")
        figures[name] = fig
    images = {name: _png_bytes(fig) for name, fig in figures.items()}
    for name, png in images.items():
        written[name] = out / f"{name}.png"
        write_bytes_atomic(written[name], png)

    tables = _tables(metrics, published)
    notes = list(notes or [])
    # The YAML notes say where each published figure comes from and which are unverified.
    sources = {key: study["note"] for key, study in (published or {}).items() if study.get("note")}
    written["markdown"] = out / "report.md"
    write_bytes_atomic(
        written["markdown"], _markdown(title, tables, notes, sources, images).encode()
    )
    written["html"] = out / "report.html"
    write_bytes_atomic(written["html"], _html(title, tables, notes, sources, images).encode())
    return written
