"""Zero-shot personalization (Kiranyaz et al., Sci Rep 2017), one person: their CNN trained on
their own normal beats of the first minutes plus abnormal beats synthesized with ABS filters of
other patients (leave-one-out). The ABS maths and the scoring live in ``ecgcnn.synthesis``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ecgcnn.atomic import write_json
from ecgcnn.config import check_config
from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.data.splits import boundary_sample
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.synthesis.abs_filters import FilterLibrary, build_library, synthesize
from ecgcnn.synthesis.normalize import normalize_person
from ecgcnn.synthesis.zeroshot import (
    F,
    N,
    Q,
    S,
    V,
    alarm_stats,
    beats_figure,
    binary_counts,
    binary_rates,
    check_training_set,
    person_split,
    person_threshold,
    rr_columns,
    test_hours,
)
from ecgcnn.training.loop import fit, predict, seed_everything, select_device, validation_split

#: The ZeroShotConfig fields that say how a zero-shot model's input is made beyond ``data``
#: (saved in its checkpoint under "zeroshot", so the monitor can rebuild the same input).
INPUT_FIELDS = (
    "beat_scale",
    "scale_window",
    "template_window",
    "template_gate",
    "rr_drop",
    "labels",
    "threshold",
)


def check_person(cfg, record: str | None) -> str:
    """The person's record name, after the checks every zero-shot entry point makes."""
    check_config(cfg)
    if cfg.minutes <= 0:
        raise EcgError(f"minutes: got {cfg.minutes}, expected > 0 minutes")
    if not record:
        raise EcgError("record: name the person, e.g. record=208 (or summarize=DIR)")
    return str(record)


def run_patient(
    cfg,
    beats: dict[str, BeatSet],
    record: str,
    out_dir: Path | None = None,
    save_model: bool = False,
    library: FilterLibrary | None = None,
    hours: float | None = None,
) -> dict:
    """Build the leave-one-out library, synthesize, train and test one person.

    Parameters
    ----------
    cfg : ``ZeroShotConfig`` (DictConfig)
    beats : record -> prepared beats; must hold ``record`` (and the library records unless
        ``library`` is given)
    record : the person
    out_dir : where metrics.json, beats.png (and best.pt with ``save_model``) go; None: nowhere
    library : a prebuilt ABS library (a reference kit's); the person's own filters are dropped
    hours : hours of signal after the training minutes; None: from the WFDB header under
        ``cfg.data.root``

    Returns
    -------
    dict of metrics (also written as ``metrics.json``)
    """
    if record not in beats:
        raise EcgError(f"record: {record} has no prepared beats")
    fs = float(cfg.data.fs)
    boundary = boundary_sample(cfg.minutes, fs)
    normals, test = person_split(beats[record], cfg.minutes, fs)
    lib = person_library(cfg, beats, record, library)
    fitted = fit_person(cfg, normals, lib, record, test, out_dir, save_model)
    p_abn, threshold, runs = fitted["p_abnormal"], fitted["threshold"], fitted["runs"]
    synth = fitted["synth"]
    flagged = p_abn > threshold
    counts = binary_counts(test.y, flagged)
    if hours is None:
        hours = test_hours(cfg.data.root, record, fs, boundary)
    res = runs[0]
    metrics = {
        "record": record,
        "train": {
            "normal_beats": len(normals),
            "synthetic": synth.counts(),
            "library_filters": lib.counts(),
            "library_records": sorted(set(lib.record.tolist())),
            "library_median_residual": float(np.median(lib.residual)),
            "epochs_run": res.epochs_run,
            "best_epoch": res.best_epoch,
            "ensemble": len(runs),
            "views": fitted["views"],
            "seconds": round(sum(r.seconds for r in runs), 2),
            "threshold": float(threshold),
            "val_normal_beats": fitted["val_normal_beats"],
        },
        "test": {
            "beats": len(test),
            "counts": test.counts(),
            "F_flagged": int((flagged & (test.y == F)).sum()),
            "Q_flagged": int((flagged & (test.y == Q)).sum()),
        },
        "binary": {**counts, **binary_rates(counts)},
        "alarm": alarm_stats(test, flagged, fs, hours, cfg.alarm_refractory_s),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "metrics.json", metrics)
        # per-beat scores, to redraw the operating point (threshold) without retraining
        np.savez_compressed(
            out_dir / "scores.npz",
            sample=test.sample,
            y=test.y,
            p_abnormal=p_abn,
            **{f"p_view_{v}": p for v, p in fitted["p_views"].items()},
        )
        if cfg.figures:
            beats_figure(normals, synth, test, record).savefig(out_dir / "beats.png", dpi=90)
    return metrics


def person_library(
    cfg, beats: dict[str, BeatSet], record: str, library: FilterLibrary | None = None
) -> FilterLibrary:
    """The person's leave-one-out ABS library: fitted on ``cfg.library_records`` minus the
    person, or ``library`` (prebuilt, e.g. a kit's) without the person's own filters."""
    if library is None:
        a = cfg.abs
        return build_library(
            beats,
            list(cfg.library_records),
            record,
            a.taps,
            a.ridge,
            a.per_patient,
            cfg.seed,
            tuple(a.classes),
            a.max_residual,
        )
    lib = library.subset(library.record != record)
    if not len(lib):
        raise EcgError(f"ABS library: no filter from a record other than {record}")
    return lib


def fit_person(
    cfg,
    normals: BeatSet,
    lib: FilterLibrary,
    record: str,
    test: BeatSet,
    out_dir: Path | None = None,
    save_model: bool = False,
) -> dict:
    """Synthesize the person's abnormal beats, train their models (every view x ensemble) and
    score ``test``.

    Parameters
    ----------
    cfg : ``ZeroShotConfig``
    normals : the person's normal beats of the first minutes (their only real training beats)
    lib : ABS filters of other patients
    record : the person's name (the training-set checks and the synthetic beats refer to it)
    test : the beats to classify, in time order (their running normalisation looks back to
        ``normals`` and to the test beats before each one)
    out_dir, save_model : the first model is saved as ``out_dir/best.pt`` with its input
        settings (``data`` and, under ``zeroshot``, :data:`INPUT_FIELDS` and its view)

    Returns
    -------
    dict with ``p_abnormal`` (len(test),), ``p_sv`` (len(test), 2) mean P(S), P(V), ``p_views`` (view -> P(abnormal)), ``threshold``,
    ``runs`` (fit results), ``synth`` (the synthetic beats), ``views``, ``val_normal_beats``
    """
    fs = float(cfg.data.fs)
    boundary = boundary_sample(cfg.minutes, fs)
    s, a = cfg.synth, cfg.abs
    synth = synthesize(
        normals,
        lib,
        {c: int(s.n_per_class) for c in a.classes},
        cfg.seed,
        s.from_average,
        s.scale,
        s.noise,
        s.shift,
        s.rr_mode,
    )
    train = BeatSet.concat([normals, synth])
    check_training_set(train, record, boundary, lib)
    if cfg.labels == "binary":
        # one "abnormal" output (the V slot) for every synthetic beat: the app only ever asks
        # normal-vs-abnormal, and S/V filters can overlap in shape
        train.y = np.where(train.y == N, N, V)

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
    p_sv = np.zeros((len(test), 2))  # mean P(S), P(V): which abnormal class a flag is
    p_views = {}  # view -> P(abnormal) averaged over that view's models
    p_val_n = None
    runs = []
    pl = RR_FEATURES.index("pre_local")
    for view in views:
        # one view of the same beats (see synthesis.normalize); every model of every view
        # sees the same training/validation split
        x_n, x_s, x_t = normalize_person(
            normals.x,
            synth.x,
            test.x,
            cfg.beat_scale,
            int(cfg.scale_window),
            view,
            int(cfg.template_window),
            (normals.rr[:, pl], test.rr[:, pl]),
            float(cfg.template_gate),
        )
        tr, va = validation_split(
            replace(train, x=np.concatenate([x_n, x_s])), cfg.trainer.val_fraction, cfg.seed
        )
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
            model = build_model(
                cfg.model, tr.x.shape[1], tr.x.shape[2], len(RR_FEATURES), len(CLASSES)
            )
            save = out_dir is not None and save_model and not runs
            runs.append(
                fit(
                    model,
                    tr,
                    va,
                    cfg.optim,
                    trainer,
                    out_dir=Path(out_dir) if save else None,
                    extra=checkpoint_extra(cfg, record, view) if save else None,
                    desc=f"zeroshot {record} ({view})",
                )
            )
            proba = predict(model, te, device)
            p_k = 1.0 - proba[:, N]
            p_sv += proba[:, [S, V]] / n_models
            p_abn += p_k / n_models
            p_views[view] = p_views.get(view, 0.0) + p_k / int(cfg.ensemble)
            if len(p_val_n):
                p_val_n += (1.0 - predict(model, va_n, device)[:, N]) / n_models
    threshold = person_threshold(p_val_n, cfg.threshold, cfg.threshold_fpr)
    return {
        "p_abnormal": p_abn,
        "p_sv": p_sv,
        "p_views": p_views,
        "threshold": threshold,
        "runs": runs,
        "synth": synth,
        "views": views,
        "val_normal_beats": len(p_val_n),
    }


def checkpoint_extra(cfg, record: str, view: str) -> dict:
    """What a zero-shot checkpoint carries beside the weights: the beat settings (``data``),
    how its input is normalised (``zeroshot``: :data:`INPUT_FIELDS` with the ZeroShotConfig
    names, plus its ``template`` view), the person and the RR feature order."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    zs = {k: plain[k] for k in INPUT_FIELDS}
    return {
        "data": OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True),
        "zeroshot": {**zs, "template": view},
        "record": str(record),
        "view": view,
        "rr_features": list(RR_FEATURES),
    }
