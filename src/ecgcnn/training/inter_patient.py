"""The global inter-patient model: trained on MIT-BIH DS1, for patients nobody has labelled.

The protocol (de Chazal et al. 2004) tests on DS2; everything chosen here is chosen on DS1:

* validation is **patient-wise**: :func:`cross_validate` deals DS1 into folds of whole
  records and picks the epoch count and the class priors on the out-of-fold predictions of all
  DS1 beats; the shipped model then trains on all of DS1 with them (``val_records`` empty).
  With ``val_records`` given, those whole DS1 records are held out instead, for early
  stopping and for the decision rule, never for the weights;
* the decision rule is a class-prior shift: the S and V probabilities are multiplied by the
  weights that maximise the SVEB / VEB F1 on the held-out DS1 patients (``calibrate``), and
  the shift is folded into the output layer's bias (``log w``), so the checkpoint stays a
  plain CNN1D whose argmax is the calibrated decision (the monitor and exporters run it as is);
* ``rr_standardize`` trains on standardized RR features and folds the scaling into the first
  head layer, so the checkpoint takes the raw features;
* RR features listed in ``rr_const`` are held at their DS1 mean while training and their
  weights folded into the bias afterwards, so the model ignores them (the stream still
  computes all ``RR_FEATURES``: the checkpoint's inputs do not change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ecgcnn.config import TrainConfig, check_config
from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import confusion, score, veb_sveb
from ecgcnn.models import CNN1D, build_model, count_parameters
from ecgcnn.training.checkpoint import save_checkpoint
from ecgcnn.training.loop import FitResult, fit, predict, seed_everything

#: Prior multipliers tried for each calibrated class: 1/4 ... 64 in quarter octaves.
CALIBRATION_GRID: tuple[float, ...] = tuple(float(2.0 ** (k / 4)) for k in range(-8, 25))


@dataclass
class InterPatientConfig(TrainConfig):
    """``configs/inter_patient.yaml``: DS1 training with patient-wise validation."""

    # DS1 records held out of training for early stopping and the decision rule (whole
    # patients: their beats never train the weights); must be a subset of split.train_records
    val_records: list[str] = field(default_factory=list)
    calibrate: list[str] = field(default_factory=lambda: ["S", "V"])  # classes given a prior w
    rr_const: list[str] = field(default_factory=list)  # RR features the model must ignore
    # what picks the epoch on the held-out patients: the sum of the calibrated SVEB and VEB F1
    # ("f1", the decision actually shipped) or the unweighted validation loss ("val_loss")
    select: str = "f1"
    # with val_records empty: train on all DS1 for trainer.max_epochs and fold these class-prior
    # multipliers (chosen by cross_validate on out-of-fold DS1 predictions) into the bias
    prior: dict[str, float] = field(default_factory=dict)
    cv_folds: int = 5  # cross_validate: folds of whole DS1 records
    # train on RR features standardized with the training beats' mean / std, folded into the
    # first head layer afterwards (the checkpoint still takes the raw features): the ratios
    # (pre_local ~ 1 +- 0.1) otherwise weigh little beside the conv features
    rr_standardize: bool = False


ConfigStore.instance().store(name="base_inter_patient", node=InterPatientConfig)


@dataclass
class GlobalModel:
    model: CNN1D
    fit: FitResult
    prior: dict[str, float]  # class -> multiplier folded into the output bias
    val_scores: dict  # EC57 scores on the held-out DS1 patients, calibrated decision
    val_scores_argmax: dict  # the same before calibration
    train_counts: dict[str, int]
    payload: dict  # the checkpoint


def split_ds1(
    beats: dict[str, BeatSet], train_records, val_records, test_records=()
) -> tuple[BeatSet, BeatSet | None]:
    """Training beats of the DS1 records not in ``val_records`` and validation beats of the
    ``val_records`` (whole records either way; None when ``val_records`` is empty). A
    validation record outside DS1, or a DS1 record that is also a test record, is an error:
    DS2 never takes part in any choice."""
    train_records, val_records = [str(r) for r in train_records], [str(r) for r in val_records]
    outside = sorted(set(val_records) - set(train_records))
    if outside:
        raise EcgError(f"val_records: {outside} are not training (DS1) records")
    leak = sorted(set(train_records) & {str(r) for r in test_records})
    if leak:
        raise EcgError(f"split: records {leak} are both training and test records")
    fit_recs = [r for r in train_records if r not in val_records]
    if not fit_recs:
        raise EcgError("val_records: hold out fewer records, none is left to train on")
    missing = [r for r in train_records if r not in beats]
    if missing:
        raise EcgError(f"split.train_records: records {missing} have no prepared beats")
    val = BeatSet.concat([beats[r] for r in val_records]) if val_records else None
    return BeatSet.concat([beats[r] for r in fit_recs]), val


def _f1(st: dict) -> float:
    se, ppv = st["Se"] or 0.0, st["PPV"] or 0.0
    return 0.0 if se + ppv == 0 else 2 * se * ppv / (se + ppv)


def calibrate_prior(
    y: np.ndarray, proba: np.ndarray, classes=("S", "V"), grid=CALIBRATION_GRID
) -> dict[str, float]:
    """Multipliers of the class probabilities that maximise each class's EC57 F1 (SVEB for S,
    VEB for V) on labelled beats ``y`` with probabilities ``proba`` (n, 5); one class at a
    time, in ``classes`` order, each search keeping the multipliers already found. Ties go to
    the multiplier closest to 1."""
    kind = {"S": "SVEB", "V": "VEB"}
    w = np.ones(len(CLASSES))
    out = {}
    for c in classes:
        if c not in kind:
            raise EcgError(f"calibrate: class '{c}' has no EC57 statistic (choose from S, V)")
        i = CLASSES.index(c)
        best, best_w = -1.0, 1.0
        for g in sorted(grid, key=lambda g: abs(np.log(g))):
            w[i] = g
            f1 = _f1(veb_sveb(confusion(y, (proba * w).argmax(1)))[kind[c]])
            if f1 > best + 1e-12:
                best, best_w = f1, g
        w[i] = best_w
        out[c] = float(best_w)
    return out


def calibrated_f1(y: np.ndarray, proba: np.ndarray, classes=("S", "V")) -> float:
    """SVEB F1 + VEB F1 (for the classes in ``classes``) after :func:`calibrate_prior`."""
    prior = calibrate_prior(y, proba, classes)
    w = np.ones(len(CLASSES))
    for c, g in prior.items():
        w[CLASSES.index(c)] = g
    st = veb_sveb(confusion(y, (proba * w).argmax(1)))
    return sum(_f1(st[{"S": "SVEB", "V": "VEB"}[c]]) for c in classes)


def fold_prior(model: CNN1D, prior: dict[str, float]) -> None:
    """Add ``log w`` to the output bias of each class in ``prior``: softmax(z + log w) is
    proportional to p * w, so the argmax becomes the calibrated decision."""
    unknown = sorted(set(map(str, prior)) - set(CLASSES))
    if unknown:
        raise EcgError(f"prior: unknown classes {unknown} (choose from {list(CLASSES)})")
    last = model.head[-1]
    with torch.no_grad():
        for c, w in prior.items():
            last.bias[CLASSES.index(c)] += float(np.log(w))


def _rr_const_idx(names) -> list[int]:
    unknown = sorted(set(map(str, names)) - set(RR_FEATURES))
    if unknown:
        raise EcgError(f"rr_const: unknown RR features {unknown} (choose from {list(RR_FEATURES)})")
    return [RR_FEATURES.index(str(n)) for n in names]


def _hold_rr(beats: BeatSet, idx: list[int], value: np.ndarray) -> BeatSet:
    if not idx:
        return beats
    rr = beats.rr.copy()
    rr[:, idx] = value
    return BeatSet(beats.x, rr, beats.y, beats.sample, beats.record, beats.symbol)


def fold_rr_const(model: CNN1D, idx: list[int], value: np.ndarray) -> None:
    """Make the model ignore RR features ``idx`` that it was trained on at constant ``value``:
    their first-layer weights times ``value`` go into the bias, the weights become 0."""
    if not idx:
        return
    first = model.head[0]
    cols = [model.n_features + i for i in idx]
    with torch.no_grad():
        w = first.weight[:, cols]
        first.bias += w @ torch.as_tensor(value, dtype=w.dtype)
        first.weight[:, cols] = 0.0


def ds1_folds(records, k: int) -> list[list[str]]:
    """``k`` folds of whole records, dealt in turn from the sorted record names (so each fold
    mixes early and late records; no class counts are looked at)."""
    records = sorted(map(str, records))
    if not 2 <= k <= len(records):
        raise EcgError(f"cv_folds: need 2 <= folds <= {len(records)} records, got {k}")
    return [records[i::k] for i in range(k)]


def _check(cfg) -> None:
    check_config(cfg)
    if cfg.split.name != "inter_patient":
        raise EcgError(
            f"split: the global model trains on the inter_patient split, got '{cfg.split.name}'"
        )
    if cfg.select not in ("f1", "val_loss"):
        raise EcgError(f"select: unknown '{cfg.select}' (f1 | val_loss)")


def cross_validate(cfg, beats: dict[str, BeatSet]) -> dict:
    """Leave-records-out cross-validation inside DS1: out-of-fold probabilities of every DS1
    beat after each epoch, and the epoch and class priors that maximise the pooled SVEB + VEB
    F1 of those probabilities (what a final all-DS1 training then uses).

    Each of ``cfg.cv_folds`` folds (:func:`ds1_folds`) trains on the other DS1 records for
    ``trainer.max_epochs`` epochs (no early stopping) with the settings of :func:`train_global`
    and predicts its own records after every epoch; DS2 takes no part.

    Returns
    -------
    dict: ``folds``, ``y`` (DS1 labels, records in sorted order), ``record``, ``proba`` (list
    over epochs of (n, 5) out-of-fold probabilities), ``epoch`` (1-based, best), ``prior``,
    ``scores`` (EC57 scores of the out-of-fold decision at that epoch and prior), ``f1`` (per
    epoch, calibrated SVEB + VEB F1).
    """
    _check(cfg)
    ds1 = sorted(map(str, cfg.split.train_records))
    folds = ds1_folds(ds1, int(cfg.cv_folds))
    const = _rr_const_idx(cfg.rr_const)
    classes = tuple(cfg.calibrate) or ("S", "V")
    order = {r: i for i, r in enumerate(ds1)}
    # the probabilities of each fold's records, per epoch, stored by the validation hook
    per_epoch: list[dict[str, np.ndarray]] = [{} for _ in range(int(cfg.trainer.max_epochs))]
    trainer = OmegaConf.merge(cfg.trainer, {"early_stopping_patience": cfg.trainer.max_epochs})
    for fold in folds:
        train, val = split_ds1(beats, ds1, fold, cfg.split.test_records)
        value = train.rr[:, const].mean(0) if const else np.zeros(0, np.float32)
        train_h, val_h = _hold_rr(train, const, value), _hold_rr(val, const, value)
        mu, sd = rr_scaling(train_h, bool(cfg.rr_standardize))
        train_h, val_h = _scale_rr(train_h, mu, sd), _scale_rr(val_h, mu, sd)
        seed_everything(cfg.trainer.seed)
        model = build_model(
            cfg.model, train.x.shape[1], train.x.shape[2], len(RR_FEATURES), len(CLASSES)
        )
        seen = iter(range(len(per_epoch)))

        def keep(p, fold=fold, val=val, seen=seen):
            e = next(seen)
            for r in fold:
                per_epoch[e][r] = p[val.record == r]
            return float(e)  # rising: every epoch counts as the best, nothing stops early

        fit(model, train_h, val_h, cfg.optim, trainer, desc=f"fold {fold}", val_metric=keep)
    y = np.concatenate([beats[r].y for r in ds1])
    rec = np.concatenate([beats[r].record for r in ds1])
    proba = [np.concatenate([pe[r] for r in sorted(pe, key=order.get)]) for pe in per_epoch]
    f1 = [calibrated_f1(y, p, classes) for p in proba]
    best = int(np.argmax(f1))
    prior = calibrate_prior(y, proba[best], classes)
    w = np.ones(len(CLASSES))
    for c, g in prior.items():
        w[CLASSES.index(c)] = g
    scores = score(y, (proba[best] * w).argmax(1), records=rec)
    return {
        "folds": folds,
        "y": y,
        "record": rec,
        "proba": proba,
        "f1": f1,
        "epoch": best + 1,
        "prior": prior,
        "scores": scores,
    }


def rr_scaling(train: BeatSet, on: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training beats' RR features (0 and 1 when ``on`` is false; a
    constant feature gets std 1)."""
    k = train.rr.shape[1]
    if not on:
        return np.zeros(k, np.float32), np.ones(k, np.float32)
    mu, sd = train.rr.mean(0), train.rr.std(0)
    return mu.astype(np.float32), np.where(sd > 1e-6, sd, 1.0).astype(np.float32)


def _scale_rr(beats: BeatSet | None, mu: np.ndarray, sd: np.ndarray) -> BeatSet | None:
    if beats is None:
        return None
    rr = ((beats.rr - mu) / sd).astype(np.float32)
    return BeatSet(beats.x, rr, beats.y, beats.sample, beats.record, beats.symbol)


def fold_rr_scale(model: CNN1D, mu: np.ndarray, sd: np.ndarray) -> None:
    """Make a model trained on RR features ``(rr - mu) / sd`` take the raw ``rr``: the
    first head layer's RR weights are divided by ``sd`` and ``w . mu / sd`` leaves the bias."""
    first = model.head[0]
    cols = slice(model.n_features, model.n_features + len(mu))
    with torch.no_grad():
        w = first.weight[:, cols] / torch.as_tensor(sd, dtype=first.weight.dtype)
        first.bias -= w @ torch.as_tensor(mu, dtype=w.dtype)
        first.weight[:, cols] = w


def train_global(cfg, beats: dict[str, BeatSet], out_dir: Path | None = None) -> GlobalModel:
    """Train the global model on DS1 (``cfg.split.train_records`` minus ``cfg.val_records``),
    stop early and calibrate on the held-out DS1 patients; with ``val_records`` empty, train
    on all of DS1 for ``trainer.max_epochs`` and fold the given ``cfg.prior`` instead (the
    epoch count and prior chosen by :func:`cross_validate`).

    Parameters
    ----------
    cfg : ``InterPatientConfig`` (DictConfig)
    beats : record -> beats prepared with ``cfg.data`` (DS1 at least)
    out_dir : where fit() writes its ``best.pt`` / ``metrics.csv`` (None: in memory only)

    Returns
    -------
    GlobalModel; ``payload`` is the calibrated checkpoint (``training.checkpoint`` format).
    """
    _check(cfg)
    train, val = split_ds1(beats, cfg.split.train_records, cfg.val_records, cfg.split.test_records)
    const = _rr_const_idx(cfg.rr_const)
    const_value = train.rr[:, const].mean(0) if const else np.zeros(0, np.float32)
    train_h = _hold_rr(train, const, const_value)
    val_h = _hold_rr(val, const, const_value) if val is not None else None
    mu, sd = rr_scaling(train_h, bool(cfg.rr_standardize))
    train_h, val_h = _scale_rr(train_h, mu, sd), _scale_rr(val_h, mu, sd)
    seed_everything(cfg.trainer.seed)  # the initial weights draw from the global RNG
    model = build_model(
        cfg.model, train.x.shape[1], train.x.shape[2], len(RR_FEATURES), len(CLASSES)
    )
    classes = tuple(cfg.calibrate) or ("S", "V")
    metric = None
    if val is not None and cfg.select == "f1":
        metric = lambda p: calibrated_f1(val.y, p, classes)
    res = fit(
        model,
        train_h,
        val_h,
        cfg.optim,
        cfg.trainer,
        out_dir=out_dir,
        desc="DS1",
        val_metric=metric,
    )
    model.eval()
    fold_rr_scale(model, mu, sd)  # the model now takes raw (held) RR features ...
    fold_rr_const(model, const, const_value)  # ... and ignores the held ones
    device = next(model.parameters()).device
    if val is not None:
        proba = predict(model, val, device)
        before = score(val.y, proba.argmax(1), records=val.record)
        prior = calibrate_prior(val.y, proba, tuple(cfg.calibrate)) if cfg.calibrate else {}
        fold_prior(model, prior)
        after = score(val.y, predict(model, val, device).argmax(1), records=val.record)
    else:
        prior = {str(c): float(w) for c, w in cfg.prior.items()}
        fold_prior(model, prior)
        before = after = {}
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    payload = {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_args": model.model_args,
        "classes": list(CLASSES),
        "epoch": res.best_epoch - 1,
        "best_metric": res.best_metric,
        "best_epoch": res.best_epoch,
        "config": plain,
        "data": plain["data"],
        "rr_features": list(RR_FEATURES),
        "inter_patient": {
            "prior": prior,
            "rr_const": list(cfg.rr_const),
            "val_records": list(map(str, cfg.val_records)),
            "parameters": count_parameters(model),
        },
    }
    return GlobalModel(model, res, prior, after, before, train.counts(), payload)


def save_global(gm: GlobalModel, path: Path) -> None:
    """Write the calibrated checkpoint (atomic; ``weights_only`` loadable)."""
    save_checkpoint(gm.payload, Path(path))


def evaluate_records(model: CNN1D, beats: dict[str, BeatSet], records) -> dict:
    """EC57 scores (gross, per record, average) of ``model``'s argmax on ``records``."""
    bs = BeatSet.concat([beats[str(r)] for r in records])
    proba = predict(model, bs, next(model.parameters()).device)
    return score(bs.y, proba.argmax(1), records=bs.record)
