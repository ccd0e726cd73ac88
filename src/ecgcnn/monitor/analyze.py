"""``ecgcnn-analyze``'s pipeline: a whole recording (24 h Holter and more) classified offline.

The batch path is the stream fed in large blocks: :class:`~ecgcnn.monitor.stream.BeatStream`
(QRS detection, filter, windows, templates, RR features) gets ``block_s`` of signal at a time
and returns every beat those samples made ready, so the model classifies hundreds of beats per
call and memory stays bounded by the block, not the recording. Every stage is chunk-invariant,
so the beats and classes are those ``ecgcnn-monitor`` gives on the same signal.

Outputs (``out_dir``): ``<record>.<annotator>`` (WFDB annotations at the record's own rate,
MIT-BIH symbols N/S/V/F/Q), ``events.jsonl`` (alarms and signal-loss episodes),
``summary.json`` (beat counts, heart-rate trend, episodes, score against the reference when
the record has one) and ``report.md`` with ``trend.png`` and ``strips.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ecgcnn.atomic import write_json
from ecgcnn.data.annotations import write_annotations
from ecgcnn.data.beats import CLASSES
from ecgcnn.data.preprocess import resample, to_model_rate, to_record_rate
from ecgcnn.errors import EcgError
from ecgcnn.monitor.alarms import RULES, AlarmEngine
from ecgcnn.monitor.models import load_models
from ecgcnn.monitor.quality import (
    QualityStage,
    read_quality_leads,
    shutdown_spans,
    shutdown_summary,
)
from ecgcnn.monitor.replay import replay
from ecgcnn.monitor.scoring import score_stream
from ecgcnn.monitor.stream import BeatStream


def _in_spans(s: np.ndarray, spans, pad: int = 0) -> np.ndarray:
    """``s`` within ``pad`` of a sorted, disjoint ``[start, stop)`` span (one search each)."""
    if not len(spans):
        return np.zeros(s.shape, bool)
    a, b = (np.asarray(v, np.int64) for v in zip(*spans))
    j = np.searchsorted(b + pad, s, side="right")  # the first span ending after s
    return (j < len(a)) & (s >= a[np.minimum(j, len(a) - 1)] - pad)


def lost_mask(samples: np.ndarray, spans, pad: int) -> np.ndarray:
    """Beats within ``pad`` samples of a span of lost signal (sorted, disjoint ``[start,
    stop)`` pairs, as ``SignalQuality.spans``)."""
    return _in_spans(np.asarray(samples, np.int64), spans, pad)


def heart_rate_trend(
    samples: np.ndarray, pred: np.ndarray, fs: float, duration_s: float, bin_s: float, spans=()
) -> list[dict]:
    """Per ``bin_s`` bin: median heart rate (RR intervals not spanning lost signal) and the
    counts of each class."""
    s = np.asarray(samples, np.int64)
    rr = np.diff(s) / fs
    ok = np.ones(len(rr), bool)
    if len(spans) and len(rr):
        # an interval (s[i], s[i+1]) spans lost signal when a span starts before s[i+1] and
        # ends after s[i]: the first span ending after s[i] decides (spans are disjoint)
        a, b = (np.asarray(v, np.int64) for v in zip(*spans))
        j = np.searchsorted(b, s[:-1], side="right")
        ok = ~((j < len(a)) & (a[np.minimum(j, len(a) - 1)] < s[1:]))
    t_rr, t_b = s[1:] / fs, s / fs
    out = []
    for k in range(int(np.ceil(duration_s / bin_s)) if duration_s > 0 else 0):
        lo, hi = k * bin_s, (k + 1) * bin_s
        m = (t_rr >= lo) & (t_rr < hi) & ok
        b = (t_b >= lo) & (t_b < hi)
        out.append(
            {
                "t_s": lo,
                "hr_bpm": round(float(60.0 / np.median(rr[m])), 1) if m.any() else None,
                **{c: int((pred[b] == i).sum()) for i, c in enumerate(CLASSES)},
            }
        )
    return out


def analyze(
    cfg: DictConfig,
    out_dir: Path,
    classifier=None,
    data_cfg: DictConfig | None = None,
    classes=None,
) -> dict:
    """Classify every beat of ``cfg.record``; write annotations, events, summary and report.

    Parameters
    ----------
    cfg : ``AnalyzeConfig``
    out_dir : output folder (created; existing outputs are never overwritten)
    classifier, data_cfg, classes : a classifier callable ``(x, rr) -> probs`` with the
        ``DataConfig`` its beats need and its class names, instead of ``cfg.checkpoint``

    Returns
    -------
    The summary written to ``summary.json``.
    """
    import torch

    if cfg.num_threads < 1:
        raise EcgError(f"num_threads: must be >= 1, got {cfg.num_threads}")
    if cfg.block_s <= 0:
        raise EcgError(f"block_s: must be > 0 s, got {cfg.block_s}")
    if not cfg.record:
        raise EcgError("record: required (a WFDB record path, an .edf or a .csv file)")
    torch.set_num_threads(int(cfg.num_threads))
    t0 = time.perf_counter()
    zeroshot = None  # a zero-shot checkpoint's input settings
    if classifier is None:
        classifier, data_cfg, classes, zeroshot, path = load_models(cfg)
    elif data_cfg is None or classes is None:
        raise EcgError("analyze: a classifier callable needs its data_cfg and classes")
    else:
        path = "(classifier callable)"
    to_aami = np.asarray([CLASSES.index(c) for c in classes])
    kw = {"lead": cfg.lead, "fs": cfg.fs, "annotator": cfg.data.annotator or None}
    # the quality stage also reads the record's next lead when the model takes one
    rec = read_quality_leads(cfg.record, list(data_cfg.leads), cfg.quality, **kw)
    n_model = len(data_cfg.leads)
    t_read = time.perf_counter() - t0
    fs_rec, fs = float(rec.fs), float(data_cfg.fs)
    sig = rec.signal
    if fs_rec != fs:
        if not data_cfg.resample:
            raise EcgError(
                f"{cfg.record}: {fs_rec:g} Hz, the model expects {fs:g} Hz "
                "(data.resample=false refuses to resample)"
            )
        sig = resample(sig, fs_rec, fs)
    out_dir = Path(out_dir)
    ann_path = out_dir / f"{rec.name}.{cfg.annotator}"
    if ann_path.exists():
        raise EcgError(f"{ann_path}: already exists (choose another output folder)")
    out_dir.mkdir(parents=True, exist_ok=True)

    stream = BeatStream(data_cfg, fs, n_model, margin_s=cfg.margin_s, zeroshot=zeroshot)
    engine = AlarmEngine(cfg.alarms, fs, classes)
    stage = QualityStage(cfg.quality, fs, sig.shape[1]) if cfg.quality.enabled else None
    res = replay(
        sig[:, :n_model],
        fs,
        stream,
        classifier,
        cfg.block_s,
        alarms=engine,
        quality=stage,
        quality_signal=sig if stage else None,
    )
    pred = to_aami[res.probs.argmax(1)] if len(res.sample) else np.zeros(0, np.int64)
    shut = shutdown_spans(res.segments_unreadable, res.segment_samples, len(sig))
    if len(res.unreadable):  # beats in unreadable seconds are noise (Q), as in the monitor
        pred = np.where(res.unreadable, CLASSES.index("Q"), pred)
    spans = [tuple(s) for s in engine.quality.spans]
    lost = lost_mask(res.sample, spans, engine.quality.hop)
    keep = ~lost  # beats inside lost signal are not classified (the steps look like QRS)
    smp_model, pred = res.sample[keep], pred[keep]
    smp_rec = to_record_rate(smp_model, fs, fs_rec)
    t_ana = time.perf_counter() - t0 - t_read
    # shutdown as bxb reads it: '~' of subtype 0x30 (both signals unreadable) opens it, 0 ends it
    edges = to_record_rate(np.asarray(shut, np.int64).reshape(-1), fs, fs_rec)
    write_annotations(
        out_dir,
        rec.name,
        np.concatenate([smp_rec, edges]),
        [*np.asarray(CLASSES)[pred], *["~"] * len(edges)],
        fs_rec,
        annotator=cfg.annotator,
        subtype=[0] * len(smp_rec) + [0x30, 0] * len(shut),
    )
    # offline, when the stream raised an alarm says nothing (it depends on the block size)
    events = [{k: v for k, v in a.items() if k != "t_raised"} for a in res.alarms]
    with open(out_dir / "events.jsonl", "x") as fh:
        fh.writelines(
            json.dumps(
                {"type": "signal_loss", "t_start": round(a / fs, 3), "t_stop": round(b / fs, 3)}
            )
            + "\n"
            for a, b in spans
        )
        fh.writelines(
            json.dumps(
                {"type": "shutdown", "t_start": round(a / fs, 3), "t_stop": round(b / fs, 3)}
            )
            + "\n"
            for a, b in shut
        )
        fh.writelines(json.dumps(ev) + "\n" for ev in events)
    duration = sig.shape[0] / fs
    summary = {
        "record": rec.name,
        "fs": fs_rec,
        "model_fs": fs,
        "duration_s": round(duration, 3),
        "model": str(path),
        "also": list(cfg.also),
        "beats_detected": len(res.peaks),
        "beats_classified": len(pred),
        "beats_in_signal_loss": int(lost.sum()),
        "beats_dropped_at_edges": int(res.dropped),
        "class_counts": {c: int((pred == i).sum()) for i, c in enumerate(CLASSES)},
        "signal_loss": [
            {"t_start": round(a / fs, 3), "t_stop": round(b / fs, 3)} for a, b in spans
        ],
        "signal_loss_s": round(sum(b - a for a, b in spans) / fs, 3),
        "alarms_by_rule": {k: sum(a["rule"] == k for a in events) for k in RULES},
        "episodes": events,
        "trend": heart_rate_trend(smp_model, pred, fs, duration, cfg.trend_bin_s, spans),
        "annotations": str(ann_path),
        "seconds": {
            "read": round(t_read, 3),
            "analyze": round(t_ana, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
        "quality": shutdown_summary(res, shut, fs, 0, len(sig)) if stage else None,
        "score": None,
    }
    if len(rec.ann_samples):
        ref = to_model_rate(rec.ann_samples, fs_rec, fs)
        summary["score"] = score_stream(
            ref,
            rec.ann_symbols,
            res.peaks[~lost_mask(res.peaks, spans, engine.quality.hop)],
            smp_model,
            pred,
            fs,
            shutdown=shut,  # beats in shutdown left out on both sides, as bxb
        )
    if cfg.report:
        from ecgcnn.monitor.holter_report import write_report

        write_report(out_dir, summary, sig[:, 0], fs, smp_model, pred, events, cfg.trend_bin_s)
    summary["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    write_json(out_dir / "summary.json", summary)
    return summary
