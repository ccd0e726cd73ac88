"""``ecgcnn-monitor``: replay a record as a live stream, classify every beat, raise alarms.

``ecgcnn-monitor checkpoint=outputs/finetune/<run>/model.pt record=208`` streams MIT-BIH
record 208 (lead by name, default the model's, MLII) in ``chunk_s`` chunks, at full speed or
paced to real time (``realtime=true``), with no annotations at run time: QRS detection,
beat windows and RR features (``monitor.stream``), the patient's CNN, alarm rules
(``monitor.alarms``). ``input=ecg.csv fs=250 columns=[1]`` streams a CSV or ``.npy`` file.

Outputs in the Hydra run directory: ``events.jsonl`` (one line per beat and per alarm, written
as they happen), ``monitor_summary.json`` and ``monitor.png`` (``plot.start_s``,
``plot.duration_s``). When the record has reference annotations the summary also scores the
detector (EC57 QRS Se/+P, 150 ms window) and the classification after detection, see
:func:`score_stream` for how missed and extra beats enter the AAMI matrices.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides, write_json
from ecgcnn.data.beats import AAMI_MAP, CLASSES, RR_FEATURES
from ecgcnn.data.io import read_record, resolve_root
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.evaluation.aami import score
from ecgcnn.monitor.alarms import RULES, AlarmEngine
from ecgcnn.monitor.quality import QualityStage, shutdown_spans, shutdown_summary
from ecgcnn.monitor.scoring import (
    MATCH_TOLERANCE_S,
    match_beats,
    qrs_se_ppv,
    reference_beats,
    vf_episodes,
)
from ecgcnn.monitor.stream import BeatStream, Classifier, replay, softmax

# ----------------------------------------------------------------------------- config


# ----------------------------------------------------------------------------- inputs
def load_classifier(path, engine: str = "fused") -> tuple[Classifier, dict, list[str]]:
    """``(classifier, data settings, class names)`` of a checkpoint or exported model.

    ``engine="fused"`` runs :func:`ecgcnn.export.runtime.load_runtime` (the BN-folded,
    pool-first CNN for a checkpoint; TorchScript / ONNX for exported files); ``"torch"`` runs
    the checkpoint's ``nn.Module`` under ``torch.inference_mode``.
    """
    import torch

    from ecgcnn.export.runtime import load_runtime
    from ecgcnn.training.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise EcgError(f"checkpoint: {path}: file not found")
    if engine == "fused":
        rt = load_runtime(path, num_threads=torch.get_num_threads())
        data = load_checkpoint(path).get("data") if rt.kind == "checkpoint" else \
            rt.meta.get("preprocessing")
        classes, n_rr = list(rt.classes), rt.n_rr

        def classify(x, rr):
            return softmax(rt(x, rr[:, :n_rr] if n_rr else None))
    elif engine == "torch":
        from ecgcnn.apps.evaluate import load_model

        model, ck = load_model(path)
        data, classes, n_rr = ck.get("data"), list(ck["classes"]), model.n_rr

        def classify(x, rr):
            with torch.inference_mode():
                return torch.softmax(model(torch.from_numpy(x), torch.from_numpy(rr)), 1).numpy()
    else:
        raise EcgError(f"engine: unknown '{engine}' (fused | torch)")
    if n_rr not in (0, len(RR_FEATURES)):
        raise EcgError(f"checkpoint: {path}: the model takes {n_rr} RR features, this version "
                       f"computes {len(RR_FEATURES)} ({', '.join(RR_FEATURES)}); retrain it")
    if not data:
        raise EcgError(f"checkpoint: {path}: holds no data settings (filter, beat windows)")
    return classify, {"data": data}, classes


def _read_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False)
    else:
        with open(path) as fh:
            first = fh.readline()
        try:  # a header line of column names is skipped, numbers are data
            [float(v) for v in first.replace(";", ",").split(",") if v.strip()]
            skip = 0
        except ValueError:
            skip = 1
        try:
            x = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise EcgError(f"input: {path}: not a numeric CSV ({exc})") from None
    x = np.asarray(x, dtype=np.float32)
    return x[:, None] if x.ndim == 1 else x


def load_input(cfg: DictConfig, model_leads: list[str]):
    """``(name, signal (n, leads) mV, fs, ann_samples | None, ann_symbols | None)``."""
    if (cfg.record is None) == (cfg.input is None):
        raise EcgError("record / input: give exactly one (record=208 or input=ecg.csv fs=360)")
    if cfg.input is not None:
        path = Path(cfg.input)
        if not path.is_file():
            raise EcgError(f"input: {path}: file not found")
        if cfg.fs is None:
            raise EcgError(f"fs: required with input={path} (CSV/NumPy files carry no "
                           "sampling rate)")
        x = _read_array(path)
        cols = list(cfg.columns)
        if len(cols) != len(model_leads):
            raise EcgError(f"columns: {cols} gives {len(cols)} lead(s), the model takes "
                           f"{len(model_leads)} ({model_leads})")
        bad = [c for c in cols if not -x.shape[1] <= c < x.shape[1]]
        if bad:
            raise EcgError(f"columns: {bad} not in {path} ({x.shape[1]} columns)")
        sig = x[:, cols]
        if not np.all(np.isfinite(sig)):
            raise EcgError(f"input: {path}: NaN or inf samples in columns {cols}")
        return path.stem, sig, float(cfg.fs), None, None
    root = resolve_root(cfg.data.root)
    leads = list(cfg.leads) or list(model_leads)
    if len(leads) != len(model_leads):
        raise EcgError(f"leads: {leads} but the model takes {len(model_leads)} ({model_leads})")
    ann = cfg.data.annotator
    has_ann = bool(ann) and (root / f"{cfg.record}.{ann}").is_file()
    rec = read_record(root, str(cfg.record), leads=leads, annotator=ann if has_ann else None)
    if cfg.fs is not None and float(cfg.fs) != rec.fs:
        raise EcgError(f"fs: {cfg.fs} Hz given, but record {cfg.record} is at {rec.fs} Hz")
    if not has_ann:
        print(f"note: no {root / f'{cfg.record}.{ann}'}: nothing to score against")
        return rec.name, rec.signal, rec.fs, None, None
    return rec.name, rec.signal, rec.fs, rec.ann_samples, rec.ann_symbols


# ----------------------------------------------------------------------------- scoring
def score_stream(ann_samples, ann_symbols, peaks, beat_samples, beat_pred, fs: float,
                 start: int = 0, exclude=(), stop: int | None = None, shutdown=()) -> dict:
    """Score the detector and the end-to-end classification against reference annotations.

    QRS: every detected R peak against every reference beat, EC57 150 ms window, both on the
    whole scored part and without ventricular flutter episodes (as EC57 does).

    Classification (AAMI VEB/SVEB with :func:`ecgcnn.evaluation.aami.score`): each classified
    beat matched to a reference beat takes the reference label. Following EC57/bxb:
    a reference beat with no classified beat (missed by the detector, or too near the record
    edge for a window) is scored as predicted N, so a missed V or S beat is a false negative
    exactly as bxb's ``Vo``/``So`` (``VFN = Vn+Vs+Vf+Vq+Vo``); a classified beat with no
    reference beat is scored as reference N, so one called V or S is a false positive as
    bxb's ``Ov``/``Os`` (``VFP = Nv+Sv+Ov``) and one called N/F/Q is a true negative as in
    bxb's ``VTN``; extra beats inside ventricular flutter episodes are not counted (bxb's
    ``*``). Se and +P are therefore bxb's; the one difference is that a missed
    N/F/Q beat adds to TN here (bxb leaves ``No`` out of TN), so Spe and Acc read slightly
    high when the detector misses beats. Counts of missed and extra beats are reported.

    Parameters
    ----------
    ann_samples, ann_symbols : reference annotations
    peaks : every detected R peak
    beat_samples, beat_pred : classified beats and their class indices (``CLASSES`` order)
    fs : sampling rate
    start, stop : score only beats in ``[start, stop)`` (bxb ``-f``, ``-t``)
    exclude : reference beat samples to leave out (e.g. beats that were training data)
    shutdown : ``[a, b)`` spans the analyzer declared unreadable: detections and reference
        beats there are left out of every figure (bxb's "missed in shutdown" are not misses),
        so the figures are those of the decided beats
    """
    ann_samples, ann_symbols = np.asarray(ann_samples), np.asarray(ann_symbols)
    ref = reference_beats(ann_samples, ann_symbols)
    vf = vf_episodes(ann_samples, ann_symbols)
    shutdown = [tuple(map(int, ab)) for ab in shutdown]
    if shutdown:
        sd = (lambda v: np.asarray(v, np.int64)[~_in_spans(np.asarray(v, np.int64), shutdown)])
        exclude = np.concatenate([np.asarray(exclude, np.int64),
                                  np.setdiff1d(ref, sd(ref))])
        keep = ~_in_spans(np.asarray(beat_samples, np.int64), shutdown)
        beat_samples, beat_pred = np.asarray(beat_samples)[keep], np.asarray(beat_pred)[keep]
    whole = qrs_se_ppv(ref, peaks, fs, start=start, stop=stop, skip=shutdown)
    ec57 = qrs_se_ppv(ref, peaks, fs, start=start, stop=stop, skip=list(vf) + shutdown)
    end = np.iinfo(np.int64).max if stop is None else stop
    is_beat = np.isin(ann_symbols, list(AAMI_MAP))
    r_smp, r_sym = ann_samples[is_beat], ann_symbols[is_beat]
    lut = {s: CLASSES.index(c) for s, c in AAMI_MAP.items()}
    r_cls = dict(zip(r_smp.tolist(), (lut[s] for s in r_sym.tolist())))
    keep_r = r_smp[(r_smp >= start) & (r_smp < end)]
    b_smp = np.asarray(beat_samples, dtype=np.int64)
    b_cls = dict(zip(b_smp.tolist(), np.asarray(beat_pred).tolist()))
    keep_b = b_smp[(b_smp >= start) & (b_smp < end)]
    _, _, _, pairs = match_beats(keep_r, keep_b, round(MATCH_TOLERANCE_S * fs))
    excl = set(np.asarray(exclude, dtype=np.int64).tolist())
    matched_r, matched_b = set(pairs[:, 0].tolist()), set(pairs[:, 1].tolist())
    y_true, y_pred = [], []
    for rv, dv in pairs.tolist():
        if rv not in excl:
            y_true.append(r_cls[rv])
            y_pred.append(b_cls[dv])
    missed = [r_cls[v] for v in keep_r.tolist() if v not in matched_r and v not in excl]
    # bxb does not count test beats inside reference-marked VF (its pseudo-label '*').
    in_vf = (lambda v: any(a <= v < b for a, b in vf))
    extra = [b_cls[v] for v in keep_b.tolist() if v not in matched_b and not in_vf(v)]
    y_true += missed + [0] * len(extra)
    y_pred += [0] * len(missed) + extra
    out = score(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64))
    count = (lambda ks: {c: int(sum(k == i for k in ks)) for i, c in enumerate(CLASSES)})
    out["missed_reference_by_class"] = count(missed)  # bxb's "o" column
    out["extra_detections_by_predicted_class"] = count(extra)  # bxb's "O" row
    qrs = {k: {"tp": s.tp, "fn": s.fn, "fp": s.fp, "se": s.se, "ppv": s.ppv}
           for k, s in (("whole", whole), ("ec57_no_vf", ec57))}
    return {"qrs": qrs, "classification": out, "from_s": start / fs,
            "to_s": None if stop is None else stop / fs}


def _in_spans(v: np.ndarray, spans) -> np.ndarray:
    out = np.zeros(len(v), bool)
    for a, b in spans:
        out |= (v >= a) & (v < b)
    return out


# ----------------------------------------------------------------------------- app
def _averaged(cfg: DictConfig, first: Classifier, first_data: DictConfig, classes):
    """One classifier averaging ``checkpoint`` and every ``also`` model, and the beat settings
    that serve them all: the models may differ in their input view (``data.beat.template``)
    only, and the stream then cuts every model's channels from the running-template superset."""
    from ecgcnn.apps.evaluate import checkpoint_data_config
    from ecgcnn.apps.finetune import prepared_template, view_data
    from ecgcnn.data.beats import plain_channels, view_slice

    def key(d):
        c = OmegaConf.to_container(d, resolve=True)
        c["beat"] = {k: v for k, v in c["beat"].items() if k != "template"}
        return c

    models = [(first, first_data)]
    for path in cfg.also:
        clf, ck, cls = load_classifier(path, cfg.engine)
        d = checkpoint_data_config(ck, cfg.data, source=path)
        if list(cls) != list(classes) or key(d) != key(first_data):
            raise EcgError(f"also: {path} does not fit {cfg.checkpoint}: the models must share "
                           "classes and beat settings (they may differ in data.beat.template)")
        models.append((clf, d))
    prepared = prepared_template([d.beat.template for _, d in models])
    plain = plain_channels(first_data)
    cuts = [(clf, view_slice(prepared, d.beat.template, plain)) for clf, d in models]

    def classify(x, rr):
        return sum(clf(np.ascontiguousarray(x[:, ch]), rr) for clf, ch in cuts) / len(cuts)

    return classify, view_data(first_data, prepared)


def _quality_signal(cfg: DictConfig, sig: np.ndarray, leads: list[str]) -> np.ndarray:
    """What the quality stage judges: the streamed leads, plus the record's next lead when the
    model reads one (lead agreement needs two)."""
    if sig.shape[1] >= 2 or cfg.record is None:
        return sig
    from ecgcnn.data.io import OTHER_LEAD, MissingLeadError

    try:
        rec = read_record(resolve_root(cfg.data.root), str(cfg.record),
                          leads=[leads[0], OTHER_LEAD], annotator=None)
    except MissingLeadError:
        return sig
    other = rec.signal[:, -1:]
    return np.concatenate([sig, other[: len(sig)]], axis=1) if len(other) >= len(sig) else sig


def _pct(v, q):
    return round(float(np.percentile(v, q)), 3) if len(v) else None


def monitor(cfg: DictConfig, out_dir: Path, classifier: Classifier | None = None,
            data_cfg: DictConfig | None = None, classes=None) -> dict:
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

    from ecgcnn.apps.evaluate import checkpoint_data_config

    out_dir = Path(out_dir)
    if cfg.num_threads < 1:
        raise EcgError(f"num_threads: must be >= 1, got {cfg.num_threads}")
    torch.set_num_threads(int(cfg.num_threads))
    if classifier is None:
        if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.checkpoint:
            raise EcgError("checkpoint: required setting not given "
                           "(e.g. checkpoint=outputs/finetune/<run>/model.pt)")
        classifier, ck, classes = load_classifier(cfg.checkpoint, cfg.engine)
        data_cfg = checkpoint_data_config(ck, cfg.data, source=cfg.checkpoint)
        if cfg.also:
            classifier, data_cfg = _averaged(cfg, classifier, data_cfg, classes)
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
    stream = BeatStream(data_cfg, fs, sig.shape[1], margin_s=cfg.margin_s)
    engine = AlarmEngine(cfg.alarms, fs, classes)
    qsig = _quality_signal(cfg, sig, list(cfg.leads) or list(data_cfg.leads)) if cfg.quality.enabled else None
    quality = QualityStage(cfg.quality, fs, qsig.shape[1]) if cfg.quality.enabled else None

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "events.jsonl", "w") as fh:
        def on_event(ev: dict) -> None:
            if ev["type"] == "beat":
                # a beat in an unreadable segment is noise: class Q, as in the WFDB output
                ev = {"type": "beat", "t": round(ev["sample"] / fs, 3), "sample": ev["sample"],
                      "class": "Q" if ev.get("unreadable") else classes[ev["k"]],
                      "p": round(ev["p"], 4), **({"unreadable": True} if ev.get("unreadable")
                                                 else {})}
            else:
                if cfg.realtime:
                    print(f"[{ev['t_raised']:9.2f} s] ALARM {ev['rule']} ({ev['severity']}) "
                          f"at t={ev['t']:.2f} s", flush=True)
            fh.write(json.dumps(ev) + "\n")

        res = replay(sig, fs, stream, classifier, cfg.chunk_s, cfg.realtime, engine, on_event,
                     quality, qsig)
    pred = to_aami[res.probs.argmax(1)] if len(res.sample) else np.zeros(0, np.int64)
    spans = shutdown_spans(res.segments_unreadable, res.segment_samples, len(sig))
    pred = np.where(res.unreadable, CLASSES.index("Q"), pred) if len(res.unreadable) else pred
    by_rule = {k: sum(a["rule"] == k for a in res.alarms) for k in RULES}
    delay = (res.ready - res.sample) / fs
    det = stream.detector
    summary = {
        "record": name, "fs": fs, "duration_s": round(res.duration_s, 3),
        "checkpoint": None if OmegaConf.is_missing(cfg, "checkpoint") else cfg.checkpoint,
        "engine": cfg.engine, "chunk_s": cfg.chunk_s, "realtime": bool(cfg.realtime),
        "beats_detected": len(res.peaks), "beats_classified": len(res.sample),
        "beats_dropped_at_edges": int(res.dropped),
        "class_counts": {c: int((pred == i).sum()) for i, c in enumerate(CLASSES)},
        "alarms": len(res.alarms), "alarms_by_rule": by_rule,
        "processing": {"seconds": round(res.seconds, 3),
                       "realtime_factor": round(res.duration_s / max(res.seconds, 1e-9), 1),
                       "cpu_seconds": round(res.cpu_seconds, 3),
                       "realtime_factor_cpu": round(res.duration_s / max(res.cpu_seconds, 1e-9),
                                                    1),
                       "num_threads": int(cfg.num_threads)},
        # Compute time from the arrival of the chunk that completed a beat's data to its class.
        "latency_ms": {"p50": _pct(1e3 * res.latency_s, 50), "p99": _pct(1e3 * res.latency_s, 99),
                       "max": _pct(1e3 * res.latency_s, 100)},
        # Structural delay: the stream must hold this much signal after an R peak.
        "delay_s": {"windows_and_filter_margin": round(stream.delay_samples / fs, 3),
                    "detector_typical": round(det.delay / fs, 3),
                    "detector_worst": round(det.max_delay_samples / fs, 3),
                    "emitted_p50": _pct(delay, 50), "emitted_p99": _pct(delay, 99),
                    "emitted_max": _pct(delay, 100)},
        "quality": shutdown_summary(res, spans, fs, round(cfg.score_from_s * fs), len(sig))
        if quality is not None else None,
        "score": None,
    }
    if ann_s is not None:
        kw = {"start": round(cfg.score_from_s * fs), "stop": len(sig)}
        summary["score"] = score_stream(ann_s, ann_y, res.peaks, res.sample, pred, fs, **kw)
        if quality is not None:
            summary["score_decided"] = score_stream(ann_s, ann_y, res.peaks, res.sample, pred,
                                                    fs, shutdown=spans, **kw)
    write_json(out_dir / "monitor_summary.json", summary)
    if cfg.plot.enabled:
        plot_span(out_dir / "monitor.png", sig[:, 0], fs, res.sample, pred, res.alarms,
                  cfg.plot.start_s, cfg.plot.duration_s, name)
    return summary


_COLOURS = {"N": "tab:green", "S": "tab:orange", "V": "tab:red", "F": "tab:purple",
            "Q": "tab:gray"}


def plot_span(path: Path, x: np.ndarray, fs: float, samples, pred, alarms, start_s: float,
              duration_s: float, title: str) -> None:
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
            ax.scatter(samples[m] / fs, x[samples[m]], s=18, color=_COLOURS[c], zorder=3,
                       label=f"{c} ({int(m.sum())})")
    for ev in alarms:
        if ev["t"] >= start_s and ev["t_start"] <= start_s + duration_s:
            ax.axvspan(max(ev["t_start"], start_s), max(ev["t"], ev["t_start"] + 0.05),
                       color="red" if ev["severity"] == "high" else "gold", alpha=0.25)
            ax.annotate(ev["rule"], (ev["t"], 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, ha="right", va="top", rotation=90)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mV (raw)")
    ax.set_title(f"{title}: beats by class, alarms shaded")
    if sel.any():
        ax.legend(loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="monitor")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    s = monitor(cfg, out)
    p = s["processing"]
    print(f"{s['record']}: {s['beats_classified']} beats {s['class_counts']}, "
          f"{s['alarms']} alarms {({k: v for k, v in s['alarms_by_rule'].items() if v})}; "
          f"{p['realtime_factor']}x real time, latency p99 {s['latency_ms']['p99']} ms, "
          f"delay {s['delay_s']['emitted_p50']} s")
    if s["score"]:
        q, c = s["score"]["qrs"]["whole"], s["score"]["classification"]

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}%"

        print(f"QRS Se {pct(q['se'])} +P {pct(q['ppv'])}; VEB Se {pct(c['VEB']['Se'])} "
              f"+P {pct(c['VEB']['PPV'])}; SVEB Se {pct(c['SVEB']['Se'])} "
              f"+P {pct(c['SVEB']['PPV'])} (EC57/bxb conventions, see score_stream)")
    print(f"outputs: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
