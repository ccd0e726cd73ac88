"""Tables, figure and headline of a noise stress test summary (``ecgcnn-noise-stress``)."""

from __future__ import annotations


def snr_key(snr: float) -> str:
    """JSON key of an SNR: ``12.0 -> "12"``, ``-6.0 -> "-6"``."""
    return f"{snr:g}"


def figure(s: dict):
    """VEB/SVEB Se and +P against SNR, one colour per noise type (solid: whole test part,
    dotted: noise-on beats), clean baselines dashed/dotted in black."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    snrs = s["snr_db"]
    for ax, (kind, m) in zip(
        axes.flat, [("VEB", "Se"), ("VEB", "PPV"), ("SVEB", "Se"), ("SVEB", "PPV")]
    ):
        for i, t in enumerate(s["noise_types"]):
            col = f"C{i}"
            for part, style in (("all", "-o"), ("noisy_only", ":s")):
                ys = [
                    100
                    * (
                        (
                            s["by_noise"][t][snr_key(x)]
                            if part == "all"
                            else s["by_noise"][t][snr_key(x)]["noisy_only"]
                        )[kind][m]
                        or 0
                    )
                    for x in snrs
                ]
                ax.plot(
                    snrs,
                    ys,
                    style,
                    color=col,
                    ms=4,
                    label=f"{t} ({'whole test' if part == 'all' else 'noisy segments'})",
                )
        for part, style, label in (
            (s["clean"], "--", "clean"),
            (s["clean"]["noisy_only"], ":", "clean, noise-on beats"),
        ):
            ax.axhline(100 * (part[kind][m] or 0), color="k", lw=0.8, ls=style, label=label)
        if (kind, m) == ("VEB", "Se"):
            ax.axhline(90, color="r", lw=0.6, ls="-.", label="goal 90 %")
        ax.set_title(f"{kind} {'+P' if m == 'PPV' else m}")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("SNR (dB, nst definition)")
    axes[0, 0].invert_xaxis()  # shared: high SNR (clean) on the left, as the NST tables read
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"MIT-BIH noise stress test, {s['n_patients']} patient-specific models")
    return fig


def format_table(s: dict, markdown: bool = False) -> str:
    """Table of VEB/SVEB Se and +P per noise type and SNR (whole test part | noisy segments)."""

    def p(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    head = [
        "noise",
        "SNR",
        "VEB Se",
        "VEB +P",
        "SVEB Se",
        "SVEB +P",
        "| noisy: VEB Se",
        "VEB +P",
        "SVEB Se",
        "SVEB +P",
        "meas. SNR",
    ]
    c = s["clean"]
    rows = [
        ["clean", "-"]
        + [p(x[k][m]) for x in (c, c["noisy_only"]) for k in ("VEB", "SVEB") for m in ("Se", "PPV")]
        + [""]
    ]
    for t in s["noise_types"]:
        for snr in map(snr_key, s["snr_db"]):
            b = s["by_noise"][t][snr]
            nb = b["noisy_only"]
            rows.append(
                [t, snr]
                + [p(x[k][m]) for x in (b, nb) for k in ("VEB", "SVEB") for m in ("Se", "PPV")]
                + [f"{b['measured_snr_db']['median']:.2f}"]
            )
    mon = [
        f"monitor {t} {snr}: QRS Se {p(b['QRS']['Se'])} +P {p(b['QRS']['PPV'])}, VEB Se "
        f"{p(b['VEB']['Se'])} +P {p(b['VEB']['PPV'])}, SVEB Se {p(b['SVEB']['Se'])} "
        f"+P {p(b['SVEB']['PPV'])}"
        for t, d in s.get("monitor", {}).items()
        for snr, b in d.items()
    ]
    if markdown:
        lines = [
            f"# MIT-BIH noise stress test: {s['n_patients']} patients\n",
            (
                "Gross AAMI figures (%) from summed per-patient confusions. Left: every test "
                "beat (minutes 5-30, as the NST scores); right: beats in noise-on segments only. "
                "SNR as PhysioNet's nst defines it; em is synthetic.\n"
            ),
            "| " + " | ".join(h.strip("| ") for h in head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if mon:
            lines += [
                "",
                "Streaming monitor (detected beats, bxb conventions, from minute 5; %):",
                "",
            ] + [f"- {m}" for m in mon]
        return "\n".join(lines) + "\n"
    fmt = "{:<6}{:>5}  " + "{:>8}" * 4 + "  {:>15}" + "{:>8}" * 3 + "{:>11}"
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows] + mon)


def headline(s: dict) -> dict:
    """The one-line JSON: VEB Se at 12 dB per noise type (whole test part), plus the clean one."""

    def at(db, kind, m):
        return {
            t: s["by_noise"][t][snr_key(db)][kind][m]
            for t in s["noise_types"]
            if snr_key(db) in s["by_noise"][t]
        }

    return {
        "veb_se_12db": at(12, "VEB", "Se"),
        "veb_ppv_12db": at(12, "VEB", "PPV"),
        "sveb_se_12db": at(12, "SVEB", "Se"),
        "clean_veb_se": s["clean"]["VEB"]["Se"],
        "n_patients": s["n_patients"],
        "wall_s": s.get("wall_s"),
        **(
            {
                "monitor_qrs_se": {
                    f"{t} {k}": b["QRS"]["Se"]
                    for t, d in s["monitor"].items()
                    for k, b in d.items()
                }
            }
            if "monitor" in s
            else {}
        ),
    }
