"""``ecgcnn-monitor``'s pipeline: a record streamed through detection, classification and
alarms, with its event log, summary and picture (the app is a thin wrapper around
:func:`monitor`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ecgcnn.atomic import write_json
from ecgcnn.data.beats import CLASSES
from ecgcnn.errors import EcgError
from ecgcnn.monitor.alarms import RULES, AlarmEngine
from ecgcnn.monitor.inputs import load_input
from ecgcnn.monitor.models import load_models
from ecgcnn.monitor.quality import QualityStage, shutdown_spans, shutdown_summary
from ecgcnn.monitor.replay import replay
from ecgcnn.monitor.scoring import score_stream
from ecgcnn.monitor.stream import BeatStream, Classifier


def _quality_signal(cfg: DictConfig, sig: np.ndarray, leads: list[str]) -> np.ndarray:
    """What the quality stage judges: the streamed leads, plus the record's next lead when the
    model reads one (lead agreement needs two)."""
    if sig.shape[1] >= 2 or cfg.record is None:
        return sig
    from ecgcnn.data.io import OTHER_LEAD, MissingLeadError, read_record, resolve_root

    try:
        rec = read_record(
            resolve_root(cfg.data.root),
            str(cfg.record),
            leads=[leads[0], OTHER_LEAD],
            annotator=None,
        )
    except MissingLeadError:
        return sig
    other = rec.signal[:, -1:]
    return np.concatenate([sig, other[: len(sig)]], axis=1) if len(other) >= len(sig) else sig


def _pct(v, q):
    return round(float(np.percentile(v, q)), 3) if len(v) else None


def monitor(
    cfg: DictConfig,
    out_dir: Path,
    classifier: Classifier | None = None,
    data_cfg: DictConfig | None = None,
    classes=None,
) -> dict:
    """Stream a record through detection, classification and alarms; write the outputs.

    Parameters
    ----------
    cfg : ``MonitorConfig``
    out_dir : where ``events.jsonl``, ``monitor_summary.json`` and ``monitor.png`` go
    classifier, data_cfg, classes : a classifier callable ``(x, rr) -> probs`` with the
        ``DataConfig`` its beats need and its class names, instead of ``cfg.checkpoint``

    Returns
    -------
    The summary written to ``monitor_summary.json``.
    """
    import torch

    out_dir = Path(out_dir)
    if cfg.num_threads < 1:
        raise EcgError(f"num_threads: must be >= 1, got {cfg.num_threads}")
    torch.set_num_threads(int(cfg.num_threads))
    zeroshot = None  # a zero-shot checkpoint's input settings
    if classifier is None:
        classifier, data_cfg, classes, zeroshot, _ = load_models(cfg)
    elif data_cfg is None:
        raise EcgError("monitor: a classifier callable needs its data_cfg")
    classes = list(classes or CLASSES)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise EcgError(f"checkpoint: classes {unknown} are not AAMI classes {CLASSES}")
    to_aami = np.asarray([CLASSES.index(c) for c in classes])
    name, sig, fs, ann_s, ann_y = load_input(cfg, list(data_cfg.leads))
    if cfg.max_duration_s is not None:
        sig = sig[: round(cfg.max_duration_s * fs)]
    if cfg.chunk_s <= 0:
        raise EcgError(f"chunk_s: must be > 0 s, got {cfg.chunk_s}")
    stream = BeatStream(data_cfg, fs, sig.shape[1], margin_s=cfg.margin_s, zeroshot=zeroshot)
    engine = AlarmEngine(cfg.alarms, fs, classes)
    qsig = (
        _quality_signal(cfg, sig, list(cfg.leads) or list(data_cfg.leads))
        if cfg.quality.enabled
        else None
    )
    quality = QualityStage(cfg.quality, fs, qsig.shape[1]) if cfg.quality.enabled else None

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "events.jsonl", "w") as fh:

        def on_event(ev: dict) -> None:
            if ev["type"] == "beat":
                ev = {
                    "type": "beat",
                    "t": round(ev["sample"] / fs, 3),
                    "sample": ev["sample"],
                    # a beat in an unreadable segment is noise: class Q, as in the WFDB output
                    "class": "Q" if ev.get("unreadable") else classes[ev["k"]],
                    "p": round(ev["p"], 4),
                    **({"unreadable": True} if ev.get("unreadable") else {}),
                }
            else:
                if cfg.realtime:
                    print(
                        f"[{ev['t_raised']:9.2f} s] ALARM {ev['rule']} ({ev['severity']}) "
                        f"at t={ev['t']:.2f} s",
                        flush=True,
                    )
            fh.write(json.dumps(ev) + "\n")

        res = replay(
            sig, fs, stream, classifier, cfg.chunk_s, cfg.realtime, engine, on_event, quality, qsig
        )
    pred = to_aami[res.probs.argmax(1)] if len(res.sample) else np.zeros(0, np.int64)
    spans = shutdown_spans(res.segments_unreadable, res.segment_samples, len(sig))
    pred = np.where(res.unreadable, CLASSES.index("Q"), pred) if len(res.unreadable) else pred
    by_rule = {k: sum(a["rule"] == k for a in res.alarms) for k in RULES}
    delay = (res.ready - res.sample) / fs
    det = stream.detector
    summary = {
        "record": name,
        "fs": fs,
        "duration_s": round(res.duration_s, 3),
        "checkpoint": cfg.checkpoint,
        "engine": cfg.engine,
        "chunk_s": cfg.chunk_s,
        "realtime": bool(cfg.realtime),
        "beats_detected": len(res.peaks),
        "beats_classified": len(res.sample),
        "beats_dropped_at_edges": int(res.dropped),
        "class_counts": {c: int((pred == i).sum()) for i, c in enumerate(CLASSES)},
        "alarms": len(res.alarms),
        "alarms_by_rule": by_rule,
        "processing": {
            "seconds": round(res.seconds, 3),
            "realtime_factor": round(res.duration_s / max(res.seconds, 1e-9), 1),
            "cpu_seconds": round(res.cpu_seconds, 3),
            "realtime_factor_cpu": round(res.duration_s / max(res.cpu_seconds, 1e-9), 1),
            "num_threads": int(cfg.num_threads),
        },
        # Compute time from the arrival of the chunk that completed a beat's data to its class.
        "latency_ms": {
            "p50": _pct(1e3 * res.latency_s, 50),
            "p99": _pct(1e3 * res.latency_s, 99),
            "max": _pct(1e3 * res.latency_s, 100),
        },
        # Structural delay: the stream must hold this much signal after an R peak.
        "delay_s": {
            "windows_and_filter_margin": round(stream.delay_samples / fs, 3),
            "detector_typical": round(det.delay / fs, 3),
            "detector_worst": round(det.max_delay_samples / fs, 3),
            "emitted_p50": _pct(delay, 50),
            "emitted_p99": _pct(delay, 99),
            "emitted_max": _pct(delay, 100),
        },
        "quality": shutdown_summary(res, spans, fs, round(cfg.score_from_s * fs), len(sig))
        if quality is not None
        else None,
        "score": None,
    }
    if ann_s is not None:
        kw = {"start": round(cfg.score_from_s * fs), "stop": len(sig)}
        summary["score"] = score_stream(ann_s, ann_y, res.peaks, res.sample, pred, fs, **kw)
        if quality is not None:
            summary["score_decided"] = score_stream(
                ann_s, ann_y, res.peaks, res.sample, pred, fs, shutdown=spans, **kw
            )
    write_json(out_dir / "monitor_summary.json", summary)
    if cfg.plot.enabled:
        plot_span(
            out_dir / "monitor.png",
            sig[:, 0],
            fs,
            res.sample,
            pred,
            res.alarms,
            cfg.plot.start_s,
            cfg.plot.duration_s,
            name,
        )
    return summary


_COLOURS = {"N": "tab:green", "S": "tab:orange", "V": "tab:red", "F": "tab:purple", "Q": "tab:gray"}


def plot_span(
    path: Path,
    x: np.ndarray,
    fs: float,
    samples,
    pred,
    alarms,
    start_s: float,
    duration_s: float,
    title: str,
) -> None:
    """Signal of ``[start_s, start_s + duration_s)``, beats coloured by class, alarms shaded."""
    from matplotlib.figure import Figure

    if duration_s <= 0 or start_s < 0:
        raise EcgError(f"plot: start_s={start_s}, duration_s={duration_s} is no time span")
    a = int(start_s * fs)
    b = min(len(x), int((start_s + duration_s) * fs))
    fig = Figure(figsize=(12, 3.6))
    ax = fig.add_subplot()
    t = np.arange(a, b) / fs
    ax.plot(t, x[a:b], lw=0.7, color="black")
    sel = (samples >= a) & (samples < b)
    for i, c in enumerate(CLASSES):
        m = sel & (pred == i)
        if m.any():
            ax.scatter(
                samples[m] / fs,
                x[samples[m]],
                s=18,
                color=_COLOURS[c],
                zorder=3,
                label=f"{c} ({int(m.sum())})",
            )
    for ev in alarms:
        if ev["t"] >= start_s and ev["t_start"] <= start_s + duration_s:
            ax.axvspan(
                max(ev["t_start"], start_s),
                max(ev["t"], ev["t_start"] + 0.05),
                color="red" if ev["severity"] == "high" else "gold",
                alpha=0.25,
            )
            ax.annotate(
                ev["rule"],
                (ev["t"], 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                ha="right",
                va="top",
                rotation=90,
            )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mV (raw)")
    ax.set_title(f"{title}: beats by class, alarms shaded")
    if sel.any():
        ax.legend(loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
