"""Zero-shot personalization (Kiranyaz et al., Sci Rep 2017): one person's CNN trained on their
own normal beats plus abnormal beats synthesized with other patients' ABS filters.

Protocol, per person (record):
- training: the person's beats labelled N with R peak in the first ``minutes`` minutes (never an
  S/V/F/Q beat of theirs) + synthetic S and V beats from a leave-one-out filter library;
- test: every beat of the rest of the record (minutes 5-30 for MIT-BIH).

Binary scoring: abnormal = S or V (AAMI SVEB/VEB), normal = N. F and Q beats count as neither:
fusion beats are half normal by definition and MIT-BIH's few Q beats are unclassifiable, so a
flag on them is neither a hit nor a false alarm (their counts and flag rate are reported).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import wfdb
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.data.io import resolve_root
from ecgcnn.data.splits import boundary_sample
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.synthesis.abs_filters import FilterLibrary, average_normal, build_library, synthesize
from ecgcnn.synthesis.normalize import normalize_person
from ecgcnn.training.loop import fit, predict, seed_everything, select_device, validation_split

N, S, V, F, Q = range(5)
SYNTH_PREFIX = "~"


# ----------------------------------------------------------------------------- data
def person_split(beats: BeatSet, minutes: float, fs: float) -> tuple[BeatSet, BeatSet]:
    """(normal beats of the first ``minutes``, every beat after them) of one person's record."""
    b = boundary_sample(minutes, fs)
    early = beats.sample < b
    normals = beats.subset(early & (beats.y == N))
    if len(normals) < 2:
        raise EcgError(f"record {beats.record[0] if len(beats) else '?'}: fewer than 2 normal "
                       f"beats in the first {minutes} min, nothing to personalize on")
    return normals, beats.subset(~early)


def check_training_set(train: BeatSet, person: str, boundary: int, lib: FilterLibrary) -> None:
    """Raise unless the training set holds, of real beats, only the person's early N beats and
    the filter library holds no filter fitted on the person (leave-one-out)."""
    synthetic = np.char.startswith(train.record.astype(str), SYNTH_PREFIX)
    real = ~synthetic
    if (train.record[real] != person).any():
        others = sorted(set(train.record[real].tolist()) - {person})
        raise EcgError(f"zeroshot: real beats of other records {others} in {person}'s training set")
    bad = real & ((train.y != N) | (train.sample >= boundary) | (train.sample < 0))
    if bad.any():
        raise EcgError(f"zeroshot: {int(bad.sum())} real beats of {person} in its training set "
                       f"are not normal beats of the first {boundary} samples")
    if (lib.record == person).any() or (train.record == SYNTH_PREFIX + person).any():
        raise EcgError(f"zeroshot: the ABS library of {person} holds filters fitted on {person}")


def rr_columns(names) -> list[int]:
    """Indices of the RR features ``names`` (model input masking: those columns are zeroed
    for training and test beats alike); an unknown name is an error."""
    unknown = sorted(set(map(str, names)) - set(RR_FEATURES))
    if unknown:
        raise EcgError(f"rr_drop: unknown RR features {unknown} (choose from {list(RR_FEATURES)})")
    return [RR_FEATURES.index(str(n)) for n in names]


def person_threshold(p_val_normal: np.ndarray, base: float, fpr: float) -> float:
    """Decision threshold of one person from *their own* held-out normal beats only.

    ``fpr`` 0 keeps ``base``. Otherwise the threshold is raised (never lowered) to the
    ``1 - fpr`` quantile of P(abnormal) over the person's validation N beats (first minutes,
    held out of the weight fit), so that at most a share ``fpr`` of them would be flagged. No
    abnormal beat of the person takes part: the choice stays zero-shot.
    """
    if not 0.0 <= fpr < 1.0:
        raise EcgError(f"threshold_fpr: must be in [0, 1), got {fpr}")
    if fpr == 0.0 or len(p_val_normal) == 0:
        return float(base)
    return float(max(base, np.quantile(p_val_normal, 1.0 - fpr)))


def test_hours(root, record: str, fs: float, boundary: int) -> float:
    """Hours of signal after the training minutes (from the WFDB header's length)."""
    hdr = wfdb.rdheader(str(Path(resolve_root(root)) / record))
    return max(0.0, hdr.sig_len * fs / hdr.fs - boundary) / fs / 3600.0


# ----------------------------------------------------------------------------- metrics
def binary_counts(y: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
    """TP/FN/FP/TN of abnormal (S, V) vs normal (N); F and Q beats are left out."""
    abn = np.isin(y, [S, V])
    nor = y == N
    return {"TP": int((abn & flagged).sum()), "FN": int((abn & ~flagged).sum()),
            "FP": int((nor & flagged).sum()), "TN": int((nor & ~flagged).sum())}


def binary_rates(c: dict[str, int]) -> dict[str, float | None]:
    """Se, Spe, +P (PPV), F1, Acc; None where the denominator is 0."""
    def r(a, b):
        return None if b == 0 else a / b
    return {"Se": r(c["TP"], c["TP"] + c["FN"]), "Spe": r(c["TN"], c["TN"] + c["FP"]),
            "PPV": r(c["TP"], c["TP"] + c["FP"]),
            "F1": r(2 * c["TP"], 2 * c["TP"] + c["FP"] + c["FN"]),
            "Acc": r(c["TP"] + c["TN"], sum(c.values()))}


def alarm_stats(test: BeatSet, flagged: np.ndarray, fs: float, hours: float,
                refractory_s: float, first: int = 3) -> dict:
    """Early-warning figures of one person.

    - ``detected_first3``: was at least one of the first ``first`` abnormal (S/V) test beats
      flagged (None without abnormal test beats);
    - ``p_detect_first3_model``: ``1 - (1 - Se)^3``, the chance of catching one of three
      abnormal beats if misses were independent with this person's miss rate ``1 - Se``;
    - ``triplets_detected``: fraction of all runs of 3 consecutive abnormal occurrences
      (consecutive in the abnormal-beat sequence) with at least one flag;
    - false alarms: an alarm fires at a flagged beat unless one fired less than
      ``refractory_s`` seconds before; an alarm fired by an N beat is false.
    """
    order = np.argsort(test.sample, kind="stable")
    y, fl, t = test.y[order], flagged[order], test.sample[order] / fs
    abn = np.flatnonzero(np.isin(y, [S, V]))
    out: dict = {"abnormal_beats": len(abn)}
    if len(abn):
        hits = fl[abn]
        se = float(hits.mean())
        out["detected_first3"] = bool(hits[:first].any())
        out["first_detected_index"] = int(np.argmax(hits)) + 1 if hits.any() else None
        out["p_detect_first3_model"] = 1.0 - (1.0 - se) ** first
        k = len(hits) - first + 1
        if k > 0:
            win = np.lib.stride_tricks.sliding_window_view(hits, first).any(axis=1)
            out["triplets_detected"] = float(win.mean())
        else:
            out["triplets_detected"] = float(hits.any())
    else:
        out.update(detected_first3=None, first_detected_index=None,
                   p_detect_first3_model=None, triplets_detected=None)
    last, alarms, false_alarms = -np.inf, 0, 0
    for i in np.flatnonzero(fl):
        if t[i] - last >= refractory_s:
            alarms += 1
            false_alarms += int(y[i] == N)
            last = t[i]
    out.update(alarms=alarms, false_alarms=false_alarms, hours=hours,
               false_alarms_per_hour=false_alarms / hours if hours > 0 else None,
               normal_flagged_per_hour=int((fl & (y == N)).sum()) / hours if hours > 0 else None)
    return out


# ----------------------------------------------------------------------------- pipeline
def run_patient(cfg, beats: dict[str, BeatSet], record: str, out_dir: Path | None = None,
                save_model: bool = False) -> dict:
    """Build the leave-one-out library, synthesize, train and test one person.

    Parameters
    ----------
    cfg : ``ZeroShotConfig`` (DictConfig)
    beats : record -> prepared beats; must hold ``record`` and the library records
    record : the person
    out_dir : where metrics.json, beats.png (and best.pt with ``save_model``) go; None: nowhere

    Returns
    -------
    dict of metrics (also written as ``metrics.json``)
    """
    from ecgcnn.apps import write_json

    if record not in beats:
        raise EcgError(f"record: {record} has no prepared beats")
    fs = float(cfg.data.fs)
    boundary = boundary_sample(cfg.minutes, fs)
    normals, test = person_split(beats[record], cfg.minutes, fs)
    a = cfg.abs
    lib = build_library(beats, list(cfg.library_records), record, a.taps, a.ridge,
                        a.per_patient, cfg.seed, tuple(a.classes), a.max_residual)
    s = cfg.synth
    synth = synthesize(normals, lib, {c: int(s.n_per_class) for c in a.classes}, cfg.seed,
                       s.from_average, s.scale, s.noise, s.shift, s.rr_mode)
    train = BeatSet.concat([normals, synth])
    check_training_set(train, record, boundary, lib)
    if cfg.labels == "binary":
        # one "abnormal" output (the V slot) for every synthetic beat: the app only ever asks
        # normal-vs-abnormal, and S/V filters can overlap in shape
        train.y = np.where(train.y == N, N, V)
    elif cfg.labels != "nsv":
        raise EcgError(f"labels: unknown '{cfg.labels}' (nsv | binary)")

    if int(cfg.ensemble) < 1:
        raise EcgError(f"ensemble: need at least 1 model per person, got {cfg.ensemble}")
    drop = rr_columns(cfg.rr_drop)
    train.rr[:, drop] = 0.0
    test = replace(test, rr=test.rr.copy())
    test.rr[:, drop] = 0.0
    views = [str(v) for v in cfg.template]
    if not views:
        raise EcgError("template: need at least one view, e.g. [none]")

    device = select_device(cfg.trainer.device)
    n_models = int(cfg.ensemble) * len(views)
    p_abn = np.zeros(len(test))
    p_views = {}  # view -> P(abnormal) averaged over that view's models
    p_val_n = None
    runs = []
    pl = RR_FEATURES.index("pre_local")
    for view in views:
        # one view of the same beats (see synthesis.normalize); every model of every view
        # sees the same training/validation split
        x_n, x_s, x_t = normalize_person(normals.x, synth.x, test.x,
                                         cfg.beat_scale, int(cfg.scale_window), view,
                                         int(cfg.template_window),
                                         (normals.rr[:, pl], test.rr[:, pl]),
                                         float(cfg.template_gate))
        tr, va = validation_split(replace(train, x=np.concatenate([x_n, x_s])),
                                  cfg.trainer.val_fraction, cfg.seed)
        te = replace(test, x=x_t)
        va_n = None if va is None else va.subset(va.y == N)
        if p_val_n is None:
            p_val_n = np.zeros(0 if va_n is None else len(va_n))
        for k in range(int(cfg.ensemble)):
            # members differ in initial weights, batch order and augmentation draws only
            trainer = OmegaConf.merge(cfg.trainer, {"seed": int(cfg.trainer.seed) + k})
            # the initial weights draw from the global RNG: seed it, or they depend on what
            # ran before in this process (another person, another view)
            seed_everything(int(trainer.seed))
            model = build_model(cfg.model, tr.x.shape[1], tr.x.shape[2], len(RR_FEATURES),
                                len(CLASSES))
            save = out_dir is not None and save_model and not runs
            runs.append(fit(model, tr, va, cfg.optim, trainer,
                            out_dir=Path(out_dir) if save else None,
                            desc=f"zeroshot {record} ({view})"))
            p_k = 1.0 - predict(model, te, device)[:, N]
            p_abn += p_k / n_models
            p_views[view] = p_views.get(view, 0.0) + p_k / int(cfg.ensemble)
            if len(p_val_n):
                p_val_n += (1.0 - predict(model, va_n, device)[:, N]) / n_models
    res = runs[0]
    threshold = person_threshold(p_val_n, cfg.threshold, cfg.threshold_fpr)
    flagged = p_abn > threshold
    counts = binary_counts(test.y, flagged)
    hours = test_hours(cfg.data.root, record, fs, boundary)
    metrics = {
        "record": record,
        "train": {"normal_beats": len(normals), "synthetic": synth.counts(),
                  "library_filters": lib.counts(),
                  "library_records": sorted(set(lib.record.tolist())),
                  "library_median_residual": float(np.median(lib.residual)),
                  "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
                  "ensemble": len(runs), "views": views,
                  "seconds": round(sum(r.seconds for r in runs), 2),
                  "threshold": float(threshold), "val_normal_beats": len(p_val_n)},
        "test": {"beats": len(test), "counts": test.counts(),
                 "F_flagged": int((flagged & (test.y == F)).sum()),
                 "Q_flagged": int((flagged & (test.y == Q)).sum())},
        "binary": {**counts, **binary_rates(counts)},
        "alarm": alarm_stats(test, flagged, fs, hours, cfg.alarm_refractory_s),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "metrics.json", metrics)
        # per-beat scores, to redraw the operating point (threshold) without retraining
        np.savez_compressed(out_dir / "scores.npz", sample=test.sample, y=test.y, p_abnormal=p_abn,
                            **{f"p_view_{v}": p for v, p in p_views.items()})
        if cfg.figures:
            beats_figure(normals, synth, test, record).savefig(out_dir / "beats.png", dpi=90)
    return metrics


# ----------------------------------------------------------------------------- figures
def beats_figure(normals: BeatSet, synth: BeatSet, test: BeatSet, record: str,
                 per_class: int = 25, before: int = 90, after: int = 162,
                 fs: float = 360.0) -> Figure:
    """Average normal beat, real test abnormal beats (display only) and synthetic ones."""
    avg = average_normal(normals)[0]
    t = (-before + np.linspace(0, before + after - 1, avg.shape[-1])) / fs * 1000.0
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)
    for ax, cls in zip(axes, (S, V)):
        for beats, colour, label in ((test, "tab:red", "real (test part)"),
                                     (synth, "tab:blue", "synthetic")):
            idx = np.flatnonzero(beats.y == cls)
            if len(idx) > per_class:
                idx = rng.choice(idx, per_class, replace=False)
            for j, i in enumerate(idx):
                ax.plot(t, beats.x[i, 0], color=colour, lw=0.6, alpha=0.35,
                        label=f"{label} ({int((beats.y == cls).sum())})" if j == 0 else None)
        ax.plot(t, avg, color="black", lw=2, label="average normal (first minutes)")
        ax.set_title(f"record {record}: {CLASSES[cls]} beats")
        ax.set_xlabel("ms from R peak")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("mV")
    fig.tight_layout()
    return fig
