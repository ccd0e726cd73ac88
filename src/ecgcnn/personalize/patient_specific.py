"""Patient-specific models (Kiranyaz, Ince & Gabbouj 2016): one CNN per patient, trained on the
common beat set plus the patient's own first minutes, one model per input view, probabilities
averaged. ``finetune_patient`` is what ``ecgcnn-finetune`` and the benchmark run per patient.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgcnn.atomic import write_json, write_npz_atomic
from ecgcnn.config import check_config
from ecgcnn.data.beats import (
    CLASSES,
    RR_FEATURES,
    TEMPLATES,
    BeatSet,
    plain_channels,
    select_view,
)
from ecgcnn.data.cache import load_beats
from ecgcnn.data.splits import boundary_sample, patient_specific, patient_train_set
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import score
from ecgcnn.evaluation.report import published_for, write_report
from ecgcnn.models import build_model
from ecgcnn.training.checkpoint import load_model, save_checkpoint
from ecgcnn.training.loop import fit, predict, seed_everything, select_device, validation_split


def model_file(view: str, k: int, ensemble: int) -> str:
    """Checkpoint file name of a patient's ``k``-th model of ``view``: ``model.pt``
    (``model_<k>.pt`` for ensembles) is the plain view, what the monitor and the noise stress
    test load first; another view ``v`` is ``model_<v>.pt`` (``model_<v>_<k>.pt``)."""
    stem = "model" if view == "none" else f"model_{view}"
    return f"{stem}.pt" if ensemble == 1 else f"{stem}_{k}.pt"


def view_files(views, ensemble: int) -> list[tuple[str, str]]:
    """(view, checkpoint file name) of every model of a patient (see :func:`model_file`)."""
    return [(v, model_file(v, k, ensemble)) for v in views for k in range(ensemble)]


def init_paths(cfg: DictConfig) -> list[str | None]:
    """``init_from`` as one common-model checkpoint (or None) per view."""
    views, init = list(cfg.views), cfg.init_from
    if init is None or isinstance(init, str):
        if init is not None and len(views) > 1:
            raise EcgError(
                f"init_from: one checkpoint for {len(views)} views {views}; give a "
                f"list with one common model per view, e.g. init_from=[a.pt,b.pt]"
            )
        return [init] * len(views)
    init = [str(p) for p in init]
    if len(init) != len(views):
        raise EcgError(f"init_from: {len(init)} checkpoints for {len(views)} views {views}")
    return init


def _init_model(
    cfg: DictConfig, init_from: str | None, view: str, in_ch: int, length: int
) -> torch.nn.Module:
    if init_from:
        model, ck = load_model(init_from)
        trained_on = ((ck.get("data") or {}).get("beat") or {}).get("template", "none")
        if trained_on != view or model.in_channels != in_ch:
            raise EcgError(
                f"init_from: {init_from} was trained on '{trained_on}' input "
                f"({model.in_channels} channels), view '{view}' has {in_ch} channels "
                f"(one common model per view, in the order of views)"
            )
        if cfg.freeze_conv:
            for p in model.features.parameters():
                p.requires_grad_(False)
        return model
    if cfg.freeze_conv:
        raise EcgError("freeze_conv: needs init_from (a common model) to freeze its conv layers")
    return build_model(cfg.model, in_ch, length, len(RR_FEATURES), len(CLASSES))


def prepared_template(views) -> str:
    """The ``data.beat.template`` that every view can be cut from (see ``select_view``)."""
    bad = [v for v in views if v not in TEMPLATES]
    if bad or not views:
        raise EcgError(f"views: {bad or 'empty'} (each one of {TEMPLATES})")
    return views[0] if len(set(views)) == 1 else "add"


def view_data(data_cfg: DictConfig, view: str) -> DictConfig:
    """The data settings a model of input ``view`` was trained with (stored in its checkpoint)."""
    return OmegaConf.merge(data_cfg, {"beat": {"template": view}})


def finetune_patient(cfg: DictConfig, out_dir: Path, beats: dict | None = None) -> dict:
    """Train and score one patient's model.

    Parameters
    ----------
    cfg : ``FinetuneConfig``
    out_dir : where ``model.pt``, ``metrics.json`` (and the report) are written
    beats : prepared beats (record -> BeatSet) to reuse across patients; loaded when None

    Returns
    -------
    The metrics payload of ``ecgcnn-eval`` plus ``record``, ``train_counts``, ``seconds``.
    """
    check_config(cfg)
    t0 = time.perf_counter()
    rec = str(cfg.record)
    if rec not in cfg.split.records:
        raise EcgError(f"record: '{rec}' is not one of the split's patients (split.records)")
    if cfg.ensemble < 1:
        raise EcgError(f"ensemble: must be >= 1, got {cfg.ensemble}")
    views = list(cfg.views)
    prepared = prepared_template(views)
    inits = init_paths(cfg)
    done = _finished(Path(out_dir), cfg) if cfg.trainer.resume else None
    if done is not None:
        return done  # a rerun of a killed multirun: this patient had finished
    data_cfg = view_data(cfg.data, prepared)
    if beats is None:
        needed = sorted(
            set(cfg.split.common_records)
            | {rec}
            | (set(cfg.split.records) if cfg.synth.n_per_class > 0 else set())
        )
        beats = load_beats(data_cfg, records=needed).beats
    sub = {r: beats[r] for r in set(cfg.split.common_records) | {rec} if r in beats}
    if cfg.train_peaks == "detector":
        from ecgcnn.monitor.align import detector_aligned

        before = boundary_sample(cfg.split.minutes, cfg.data.fs)
        sub[rec] = detector_aligned(sub[rec], data_cfg, rec, before)
    plain = plain_channels(cfg.data)
    want = plain * (2 if prepared == "add" else 1)
    got = {r: b.x.shape[1] for r, b in sub.items() if b.x.shape[1] != want}
    if got:
        raise EcgError(
            f"views {views}: beats of records {sorted(got)} have {set(got.values())} "
            f"channels, expected {want} (prepare them with "
            f"data.beat.template={prepared})"
        )
    split = OmegaConf.merge(cfg.split, {"records": [rec]})
    common, patients = patient_specific(sub, split, cfg.data.fs)
    patient = patients[rec]
    train_all = patient_train_set(common, patient)
    if cfg.synth.n_per_class > 0:
        if prepared != "none":
            raise EcgError(
                "synth.n_per_class: synthetic beats have no running template; "
                "use them with views=[none]"
            )
        train_all = BeatSet.concat([train_all, synthetic_beats(cfg, beats, rec, patient.own_train)])
    out_dir = Path(out_dir)
    by_view, n_params = train_views(cfg, train_all, patient.test, rec, out_dir, prepared, inits)
    n_models = len(views) * cfg.ensemble
    proba = sum(by_view.values()) / n_models
    pred = proba.argmax(1)
    # per-beat probabilities, for operating points other than the argmax (summary's prior sweep)
    write_npz_atomic(
        out_dir / "scores.npz",
        y=patient.test.y,
        sample=patient.test.sample,
        proba=proba.astype(np.float32),
        **{f"proba_{v}": (p / cfg.ensemble).astype(np.float32) for v, p in by_view.items()},
    )
    metrics = score(patient.test.y, pred, records=patient.test.record)
    metrics.update(
        {
            "record": rec,
            "split": "patient_specific",
            "minutes": float(cfg.split.minutes),
            "train_counts": train_all.counts(),
            "test_counts": patient.test.counts(),
            "parameters": n_params,
            "ensemble": int(cfg.ensemble),
            "views": views,
            # each view's models alone, to see what the combination adds
            "view_confusion": {
                v: score(patient.test.y, p.argmax(1))["confusion"] for v, p in by_view.items()
            },
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    if cfg.report:
        write_report(
            metrics,
            out_dir,
            title=f"Patient {rec}: patient-specific CNN",
            published=published_for("patient_specific"),
        )
    else:
        write_json(out_dir / "metrics.json", metrics)
    return metrics


def train_views(
    cfg: DictConfig,
    train_all: BeatSet,
    test: BeatSet,
    rec: str,
    out_dir: Path,
    prepared: str,
    inits: list[str | None],
) -> tuple[dict[str, np.ndarray], int]:
    """Train a patient's models, ``cfg.ensemble`` per view of ``cfg.views``, save each one
    (``model_file``) with its data settings, and give each view's summed class probabilities
    on ``test``.

    Parameters
    ----------
    cfg : ``FinetuneConfig``
    train_all : the patient's training beats (common set + own first minutes), prepared with
        ``data.beat.template=prepared`` (every view is cut from them)
    test : beats to classify, prepared the same way
    rec : the patient's name (stored in the checkpoints)
    out_dir : where the checkpoints go
    inits : one common-model checkpoint (or None: from scratch) per view

    Returns
    -------
    (view -> (len(test), classes) probabilities summed over the view's models, parameters)
    """
    views = list(cfg.views)
    train_full, val_full = validation_split(train_all, cfg.trainer.val_fraction, cfg.trainer.seed)
    device = select_device(cfg.trainer.device)
    plain = plain_channels(cfg.data)
    out_dir = Path(out_dir)
    n_params, by_view = 0, {}
    for view, init in zip(views, inits):

        def cut(b, v=view):
            return None if b is None else select_view(b, prepared, v, plain)

        train_set, val_set, te = cut(train_full), cut(val_full), cut(test)
        for k in range(cfg.ensemble):
            tcfg = OmegaConf.merge(cfg.trainer, {"seed": cfg.trainer.seed + k, "progress": False})
            seed_everything(tcfg.seed)  # the initial weights depend on the seed alone
            model = _init_model(cfg, init, view, train_set.x.shape[1], train_set.x.shape[2])
            fit(model, train_set, val_set, cfg.optim, tcfg, out_dir=None, desc=f"patient {rec}")
            by_view[view] = predict(model, te, device) + by_view.get(view, 0)
            n_params += sum(q.numel() for q in model.parameters())
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "model_args": model.model_args,
                    "classes": list(CLASSES),
                    "epoch": -1,
                    "best_metric": float("nan"),
                    "record": rec,
                    "view": view,
                    "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                    "data": OmegaConf.to_container(
                        view_data(cfg.data, view), resolve=True, enum_to_str=True
                    ),
                    "rr_features": list(RR_FEATURES),
                },
                out_dir / model_file(view, k, cfg.ensemble),
            )
    return by_view, n_params


def synthetic_beats(
    cfg: DictConfig, beats: dict[str, BeatSet], rec: str, own_train: BeatSet
) -> BeatSet:
    """Abnormal beats synthesized for patient ``rec`` (Sci Rep 2017's ABS filters as data
    augmentation): filters fitted on the *other* patients of the split, on their first
    ``split.minutes`` only (beats that are training data under this protocol), applied to the
    patient's own training N beats. A patient with few S beats of their own in the first
    minutes still gets S beats in their own morphology."""
    from ecgcnn.synthesis.abs_filters import build_library, synthesize

    boundary = boundary_sample(cfg.split.minutes, cfg.data.fs)
    lib_beats = {
        r: beats[r].subset(beats[r].sample < boundary)
        for r in map(str, cfg.split.records)
        if r != rec and r in beats
    }
    a, s = cfg.abs, cfg.synth
    lib = build_library(
        lib_beats,
        sorted(lib_beats),
        rec,
        int(a.taps),
        float(a.ridge),
        int(a.per_patient),
        int(cfg.trainer.seed),
        tuple(a.classes),
        float(a.max_residual),
    )
    normals = own_train.subset(own_train.y == CLASSES.index("N"))
    if len(normals) == 0:
        raise EcgError(
            f"synth.n_per_class: patient {rec} has no N beat in the first "
            f"{cfg.split.minutes:g} min to synthesize from"
        )
    return synthesize(
        normals,
        lib,
        {c: int(s.n_per_class) for c in a.classes},
        int(cfg.trainer.seed),
        float(s.from_average),
        float(s.scale),
        float(s.noise),
        int(s.shift),
        str(s.rr_mode),
    )


def _finished(out_dir: Path, cfg: DictConfig) -> dict | None:
    """The patient's earlier result in ``out_dir`` when that run completed (its metrics.json,
    written last and atomically, is there for the same record and minutes), else None."""
    path = out_dir / "metrics.json"
    if not path.is_file() or (cfg.report and not (out_dir / "report.html").is_file()):
        return None
    try:
        m = json.loads(path.read_text())
    except ValueError:
        return None
    same = m.get("record") == str(cfg.record) and m.get("minutes") == float(cfg.split.minutes)
    return m if same else None
