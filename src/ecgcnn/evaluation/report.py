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

import yaml
from matplotlib.figure import Figure

from ecgcnn.atomic import write_bytes_atomic
from ecgcnn.config import CONFIG_DIR
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import METRICS
from ecgcnn.evaluation.figures import (  # noqa: F401  (re-exported)
    KINDS,
    confusion_figure,
    operating_figure,
    per_record_figure,
)

PUBLISHED_PATH = Path(CONFIG_DIR) / "published.yaml"  # package data, beside the app configs
PROTOCOLS = ("patient_specific", "inter_patient")
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


#: Why the average over records sits below the gross figure (shown under that table).
AVERAGE_NOTE = (
    "Every record weighs the same here, however few S or V beats it holds: a record with a "
    "handful of S beats swings its SVEB Se and +P between 0 and 100 %, and those records pull "
    "the average below the gross figure, which weighs every beat the same (records without "
    "such beats, where a rate is undefined, are left out)."
)


def _tables(metrics: dict, published: dict | None) -> list[tuple]:
    """All report tables as (title, header, rows, note), shared by the Markdown and HTML
    writers."""
    both = _header()
    row = [*_stat_cells(metrics["VEB"]), *_stat_cells(metrics["SVEB"])]
    tables = [("Gross statistics (%)", ["", *both], [["gross", *row]], "")]
    if "average" in metrics:
        avg = metrics["average"]
        cells = [*_stat_cells(avg["VEB"]), *_stat_cells(avg["SVEB"])]
        tables.append(
            ("Average over records (%)", ["", *both], [["average", *cells]], AVERAGE_NOTE)
        )
    if published:
        # published_for(protocol) gives studies of our protocol: theirs is ours
        protocols = {str(s["protocol"]) for s in published.values()}
        protocol = metrics.get("split") or (protocols.pop() if len(protocols) == 1 else "")
        n_rec = metrics.get("n_patients") or len(metrics.get("per_record") or {}) or ""
        rows = [["this work (gross)", str(protocol), str(n_rec), *row]]
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
        tables.append(("Published results (%)", ["study", "protocol", "records", *both], rows, ""))
    if "per_record" in metrics:
        rows = [
            [name, str(r["n_beats"]), *_stat_cells(r["VEB"]), *_stat_cells(r["SVEB"])]
            for name, r in metrics["per_record"].items()
        ]
        tables.append(("Per-record statistics (%)", ["record", "beats", *both], rows, ""))
    return tables


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# ---------------------------------------------------------------- writers


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (cells as given; a "|" in a cell becomes "/")."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(
        lines + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    )


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table, every cell escaped."""
    esc = html.escape
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


#: Figure captions (a figure without one is captioned by its name).
CAPTIONS = {
    "confusion": "Confusion matrix of all test beats: rows the reference class, columns the "
    "predicted one; the colour is the share of the reference row, the text the beat count.",
    "per_record": "VEB and SVEB sensitivity (Se) and positive predictivity (+P) of each test "
    "record; n/a: undefined (no such beat in the record, or none predicted), 0: a defined 0 %.",
    "operating_points": "Operating points: Se against +P as one class's probability is "
    "multiplied by w before the argmax (w = 1 ringed: the decision reported above), with the "
    "published studies.",
    "minutes_curve": "Gross VEB and SVEB figures against the minutes of each patient's own "
    "ECG used for training.",
}


def _markdown(title, tables, notes, sources, images) -> str:
    lines = [f"# {title}", ""]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    for heading, header, rows, note in tables:
        lines += [f"## {heading}", "", markdown_table(header, rows), ""]
        lines += [note, ""] if note else []
    if sources:
        lines += ["## Sources of the published figures", ""]
        lines += [f"- {key}: {text}" for key, text in sources.items()]
        lines.append("")
    lines.append("## Figures")
    lines.append("")
    for name in images:
        lines += [f"![{CAPTIONS.get(name, name)}]({name}.png)", "", f"*{CAPTIONS.get(name, name)}*"]
        lines.append("")
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
    for heading, header, rows, note in tables:
        parts += [f"<h2>{esc(heading)}</h2>", html_table(header, rows)]
        parts += [f"<p>{esc(note)}</p>"] if note else []
    if sources:
        parts.append("<h2>Sources of the published figures</h2><ul>")
        parts += [f"<li>{esc(key)}: {esc(text)}</li>" for key, text in sources.items()]
        parts.append("</ul>")
    parts.append("<h2>Figures</h2>")
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        cap = esc(CAPTIONS.get(name, name))
        parts.append(
            f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>"
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
