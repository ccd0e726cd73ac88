"""The report of ``ecgcnn-analyze``: hourly heart rate and ectopic counts, and strips of the
first episode of each alarm type (matplotlib, Markdown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgcnn.data.beats import CLASSES

_COLOURS = {"N": "tab:green", "S": "tab:orange", "V": "tab:red", "F": "tab:purple", "Q": "tab:gray"}


def write_report(
    out_dir: Path,
    summary: dict,
    x: np.ndarray,
    fs: float,
    samples: np.ndarray,
    pred: np.ndarray,
    events: list[dict],
    bin_s: float,
    strip_s: float = 10.0,
) -> None:
    """``trend.png``, ``strips.png`` and ``report.md`` in ``out_dir``."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    trend = summary["trend"]
    t = np.array([b["t_s"] for b in trend]) / 3600.0
    fig = Figure(figsize=(11, 5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    hr = [np.nan if b["hr_bpm"] is None else b["hr_bpm"] for b in trend]
    ax1.step(t, hr, where="post", color="black")
    ax1.set_ylabel("median HR (bpm)")
    ax1.set_title(f"{summary['record']}: heart rate and ectopic beats per {bin_s:g} s")
    w = bin_s / 3600.0 * 0.4
    for k, c in enumerate(("S", "V")):
        ax2.bar(t + k * w, [b[c] for b in trend], width=w, align="edge", color=_COLOURS[c], label=c)
    ax2.set_ylabel("beats")
    ax2.set_xlabel("time (h)")
    ax2.legend(loc="upper right")
    # fixed margins: tight_layout draws the whole figure once more just to measure it
    fig.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.1, hspace=0.12)
    fig.savefig(out_dir / "trend.png", dpi=100)

    first: dict[str, dict] = {}
    for ev in events:
        first.setdefault(ev["rule"], ev)
    rules = sorted(first, key=lambda r: first[r]["t"])
    if rules:
        fig = Figure(figsize=(11, 1.9 * len(rules)))
        axes = np.atleast_1d(fig.subplots(len(rules), 1))
        for ax, rule in zip(axes, rules):
            ev = first[rule]
            a = max(0, int((ev["t"] - strip_s / 2) * fs))
            b = min(len(x), a + int(strip_s * fs))
            ax.plot(np.arange(a, b) / fs, x[a:b], lw=0.6, color="black")
            sel = (samples >= a) & (samples < b)
            for i, c in enumerate(CLASSES):
                m = sel & (pred == i)
                if m.any():
                    ax.scatter(
                        samples[m] / fs, x[samples[m]], s=12, color=_COLOURS[c], zorder=3, label=c
                    )
            ax.axvspan(
                max(ev["t_start"], a / fs),
                max(ev["t"], ev["t_start"] + 0.05),
                color="red" if ev["severity"] == "high" else "gold",
                alpha=0.25,
            )
            ax.set_title(f"{rule} at {ev['t']:.1f} s", fontsize=9)
            ax.ticklabel_format(axis="x", useOffset=False)  # seconds as they are
            ax.legend(loc="upper right", fontsize=6, ncol=5)
        axes[-1].set_xlabel("time (s)")
        h = 1.9 * len(rules)  # inches: margins of 0.35 in at the top, 0.5 in at the bottom
        fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.35 / h, bottom=0.5 / h, hspace=0.45)
        fig.savefig(out_dir / "strips.png", dpi=90)

    c = summary["class_counts"]
    lines = [
        f"# {summary['record']}: {summary['duration_s'] / 3600:.2f} h analysed",
        "",
        (
            f"Model: `{summary['model']}`. Beats classified: {summary['beats_classified']} "
            f"({', '.join(f'{k} {v}' for k, v in c.items())}); "
            f"{summary['beats_in_signal_loss']} detections inside signal loss not classified; "
            f"signal loss {summary['signal_loss_s']:.1f} s."
        ),
        "",
        "| alarm | count |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary["alarms_by_rule"].items() if v]
    lines += ["", "![trend](trend.png)", ""]
    if rules:
        lines += ["First episode of each alarm type:", "", "![strips](strips.png)", ""]
    q = (summary.get("score") or {}).get("qrs", {}).get("whole")
    if q:
        lines += [
            (f"QRS against the reference: Se {100 * q['se']:.2f} %, +P {100 * q['ppv']:.2f} %."),
            "",
        ]
    (out_dir / "report.md").write_text("\n".join(lines))
