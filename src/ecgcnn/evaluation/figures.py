"""The report's figures, drawn on bare :class:`matplotlib.figure.Figure` objects (no pyplot):
they render PNG through the Agg canvas and never touch the global backend or a display."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ecgcnn.evaluation.aami import CLASSES

KINDS = ("VEB", "SVEB")


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
    marked "n/a" at the axis; a defined 0 % is a "0" in the bar's colour, so neither is read
    as the other.
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
            bars = ax.bar(x + offset, heights, width, label=label)
            colour = bars.patches[0].get_facecolor() if bars.patches else "grey"
            for xi, v in zip(x, vals):
                if v is None or v == 0:
                    text, c = ("n/a", "grey") if v is None else ("0", colour)
                    ax.text(
                        xi + offset,
                        1.0,
                        text,
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        color=c,
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
