"""The classifier a stream feeds: a checkpoint or an exported model, or several averaged.

``load_classifier`` gives ``(classifier, data settings, class names)``; ``averaged`` joins a
patient's models that differ only in their input view (``data.beat.template``) into one
classifier over the running-template superset of their channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ecgcnn.data.beats import RR_FEATURES
from ecgcnn.errors import EcgError
from ecgcnn.monitor.replay import softmax
from ecgcnn.monitor.stream import Classifier


def resolve_checkpoint(path) -> Path:
    """``path``, or the shipped generic model when none is given (no silent fallback: a
    missing shipped model is an error naming it)."""
    if path is None or str(path) in ("", "???"):
        from ecgcnn.models.shipped import default_checkpoint

        return Path(default_checkpoint())
    return Path(path)


def load_classifier(path, engine: str = "torch") -> tuple[Classifier, dict, list[str]]:
    """``(classifier, data settings, class names)`` of a checkpoint or exported model.

    Runs :func:`ecgcnn.export.runtime.load_runtime`: a checkpoint as the BN-folded,
    pool-first CNN in eager PyTorch (``engine="torch"``) or in ONNX Runtime (``"onnx"``);
    an exported TorchScript / ONNX file in its own runtime.
    """
    import torch

    from ecgcnn.export.runtime import load_runtime
    from ecgcnn.training.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise EcgError(f"checkpoint: {path}: file not found")
    rt = load_runtime(path, num_threads=torch.get_num_threads(), engine=engine)
    ck = load_checkpoint(path) if rt.kind == "checkpoint" else {}
    data = ck.get("data") if rt.kind == "checkpoint" else rt.meta.get("preprocessing")
    zs = ck.get("zeroshot") if rt.kind == "checkpoint" else rt.meta.get("zeroshot")
    classes, n_rr = list(rt.classes), rt.n_rr

    def classify(x, rr):
        return softmax(rt(x, rr[:, :n_rr] if n_rr else None))

    if n_rr not in (0, len(RR_FEATURES)):
        raise EcgError(
            f"checkpoint: {path}: the model takes {n_rr} RR features, this version "
            f"computes {len(RR_FEATURES)} ({', '.join(RR_FEATURES)}); retrain it"
        )
    if not data:
        raise EcgError(f"checkpoint: {path}: holds no data settings (filter, beat windows)")
    if zs and zs.get("rr_drop"):  # a zero-shot model trained with some RR features zeroed
        from ecgcnn.synthesis.zeroshot import rr_columns

        drop, inner = rr_columns(zs["rr_drop"]), classify

        def classify(x, rr):
            rr = rr.copy()
            rr[:, drop] = 0.0
            return inner(x, rr)

    # zeroshot: how a zero-shot model's input is normalised (running scale, template view);
    # BeatStream(zeroshot=...) computes it
    return classify, {"data": data, "zeroshot": zs}, classes


def averaged(cfg: DictConfig, first: Classifier, first_data: DictConfig, classes):
    """``cfg.checkpoint`` (``first``) and every ``cfg.also`` model as one classifier.

    One classifier averaging ``checkpoint`` and every ``also`` model, and the beat settings
    that serve them all: the models may differ in their input view (``data.beat.template``)
    only, and the stream then cuts every model's channels from the running-template superset."""
    from ecgcnn.data.beats import plain_channels, view_slice
    from ecgcnn.personalize.patient_specific import prepared_template, view_data
    from ecgcnn.training.checkpoint import checkpoint_data_config

    def key(d):
        c = OmegaConf.to_container(d, resolve=True)
        c["beat"] = {k: v for k, v in c["beat"].items() if k != "template"}
        return c

    models = [(first, first_data)]
    for path in cfg.also:
        clf, ck, cls = load_classifier(path, cfg.engine)
        if ck.get("zeroshot"):
            raise EcgError(
                f"also: {path} is a zero-shot model; the stream averages "
                "patient-specific views only (monitor one zero-shot model)"
            )
        d = checkpoint_data_config(ck, cfg.data, source=path)
        if list(cls) != list(classes) or key(d) != key(first_data):
            raise EcgError(
                f"also: {path} does not fit {cfg.checkpoint}: the models must share "
                "classes and beat settings (they may differ in data.beat.template)"
            )
        models.append((clf, d))
    prepared = prepared_template([d.beat.template for _, d in models])
    plain = plain_channels(first_data)
    cuts = [(clf, view_slice(prepared, d.beat.template, plain)) for clf, d in models]

    def classify(x, rr):
        return sum(clf(np.ascontiguousarray(x[:, ch]), rr) for clf, ch in cuts) / len(cuts)

    return classify, view_data(first_data, prepared)


def load_models(cfg: DictConfig):
    """``cfg.checkpoint`` (the shipped model when None) and its ``cfg.also`` views as one
    classifier, for the monitor and ``ecgcnn-analyze`` alike.

    Returns
    -------
    ``(classifier, data settings, class names, zero-shot input settings or None, path)``
    """
    from omegaconf import OmegaConf

    from ecgcnn.training.checkpoint import checkpoint_data_config

    path = resolve_checkpoint(cfg.checkpoint)
    classifier, ck, classes = load_classifier(path, cfg.engine)
    data_cfg = checkpoint_data_config(ck, cfg.data, source=path)
    zeroshot = ck.get("zeroshot")
    if cfg.also and zeroshot:
        raise EcgError(
            f"also: {path} is a zero-shot model; the stream averages "
            "patient-specific views only (monitor one zero-shot model)"
        )
    if cfg.also:
        views = OmegaConf.create(
            {
                "checkpoint": str(path),
                "also": list(cfg.also),
                "engine": cfg.engine,
                "data": cfg.data,
            }
        )
        classifier, data_cfg = averaged(views, classifier, data_cfg, classes)
    return classifier, data_cfg, classes, zeroshot, path
