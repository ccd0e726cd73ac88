"""Review-in-the-loop: a second patient-specific protocol, the one a clinic would run.

After the patient's labelled first minutes (the strict protocol's training data) the record is
read in time order. In every ``review.interval_s`` of it the personal model asks a cardiologist
for the label of at most one beat, the one it is least sure of (smallest margin between its two
likeliest classes), until ``review.budget`` beats have been asked; the answer is the reference
annotation. Every ``review.retrain_s`` the models are fine-tuned briefly (``review.epochs`` on
the training beats plus the answered beats, these repeated ``review.repeat`` times) from where
they are, and go on. A beat is always classified by the models as they were before the answers
of its own retraining round (causal: no label of a later beat is used for it); answered beats are
not test beats. This is a different protocol from the strict one (more labels of the patient),
so its figures are reported apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ecgcnn.data.beats import CLASSES, BeatSet, select_view
from ecgcnn.errors import EcgError
from ecgcnn.training.loop import fit, predict

#: Beat-selection strategies: ``margin``, the beat with the smallest gap between the two
#: likeliest classes (uncertainty sampling); ``abnormal``, the beat most likely to be S or V
#: that the model is not sure of (smallest margin among beats not called N first).
STRATEGIES = ("margin", "abnormal")


@dataclass
class Reviewed:
    """What :func:`review_record` gives back."""

    proba: np.ndarray  # (n, classes) probabilities of every beat of ``rest`` as it was classified
    asked: np.ndarray  # indices into ``rest`` of the beats whose labels were asked, in time order
    reasons: list[dict]  # per asked beat: sample, time_s, label, predicted, margin, why
    rounds: int  # retraining rounds run


def check_review(rcfg: DictConfig) -> None:
    """Refuse review settings that cannot work, naming the setting."""
    if int(rcfg.budget) < 0:
        raise EcgError(f"review.budget: got {rcfg.budget}, expected >= 0 beats (0: off)")
    for key in ("interval_s", "retrain_s"):
        if float(rcfg[key]) <= 0:
            raise EcgError(f"review.{key}: got {rcfg[key]}, expected > 0 seconds")
    if int(rcfg.replay) < 0:
        raise EcgError(f"review.replay: got {rcfg.replay}, expected >= 0 beats (0: all)")
    if int(rcfg.epochs) < 1 or int(rcfg.repeat) < 1:
        raise EcgError(
            f"review.epochs / review.repeat: got {rcfg.epochs} / {rcfg.repeat}, expected >= 1"
        )
    if rcfg.strategy not in STRATEGIES:
        raise EcgError(f"review.strategy: unknown '{rcfg.strategy}' ({' | '.join(STRATEGIES)})")


def _margin(proba: np.ndarray) -> np.ndarray:
    top2 = np.sort(proba, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _choose(proba: np.ndarray, strategy: str) -> tuple[int, str]:
    """Index (into ``proba``'s rows) of the beat to ask for, and why."""
    margin = _margin(proba)
    if strategy == "abnormal":
        pred = proba.argmax(1)
        off_n = np.flatnonzero(pred != CLASSES.index("N"))
        if len(off_n):
            i = off_n[np.argmin(margin[off_n])]
            return int(i), f"called {CLASSES[pred[i]]}, least certain such beat of the interval"
        # no beat called abnormal: the one most likely to be S or V
        sv = proba[:, CLASSES.index("S")] + proba[:, CLASSES.index("V")]
        i = int(np.argmax(sv))
        return i, f"most likely S or V of the interval (P(S)+P(V) {sv[i]:.2f})"
    i = int(np.argmin(margin))
    return i, "least certain beat of the interval"


def review_record(
    models: list[tuple[str, torch.nn.Module]],
    prepared: str,
    plain: int,
    train_all: BeatSet,
    rest: BeatSet,
    start: int,
    fs: float,
    rcfg: DictConfig,
    optim_cfg: DictConfig,
    trainer_cfg: DictConfig,
) -> Reviewed:
    """Classify ``rest`` in time order, asking for labels and fine-tuning as it goes.

    Parameters
    ----------
    models : (view, model) of the patient's strict-protocol models; copies are fine-tuned,
        the originals are left as they are
    prepared, plain : how the beats were prepared (``select_view`` cuts each view from them)
    train_all : the patient's training beats (common set + own first minutes)
    rest : the beats after the training minutes, in time order (candidates and test beats)
    start : first sample after the training minutes (``boundary_sample``)
    fs : sampling rate of ``sample``
    rcfg : ``ReviewConfig``; optim_cfg, trainer_cfg : the patient model's training settings

    Returns
    -------
    Reviewed
    """
    check_review(rcfg)
    if len(rest) and np.any(np.diff(rest.sample) < 0):
        raise EcgError("review: the beats after the training minutes must be in time order")
    models = [(v, copy.deepcopy(m)) for v, m in models]
    device = next(models[0][1].parameters()).device
    proba = np.zeros((len(rest), len(CLASSES)), dtype=np.float64)
    asked: list[int] = []
    reasons: list[dict] = []
    budget, interval, period = int(rcfg.budget), float(rcfg.interval_s), float(rcfg.retrain_s)
    t = (rest.sample - start) / fs  # seconds after the training minutes
    n_rounds = int(np.floor(t.max() / period)) + 1 if len(rest) else 0
    rounds = 0
    for r in range(n_rounds):
        idx = np.flatnonzero((t >= r * period) & (t < (r + 1) * period))
        if len(idx) == 0:
            continue
        chunk = rest.subset(idx)
        p = sum(predict(m, select_view(chunk, prepared, v, plain), device) for v, m in models)
        proba[idx] = p / len(models)
        new = []
        for w in np.unique(np.floor(t[idx] / interval)):
            if len(asked) >= budget:
                break
            inw = np.flatnonzero(np.floor(t[idx] / interval) == w)
            j, why = _choose(proba[idx[inw]], str(rcfg.strategy))
            i = int(idx[inw[j]])
            asked.append(i)
            new.append(i)
            reasons.append(
                {
                    "sample": int(rest.sample[i]),
                    "time_s": round(float(rest.sample[i] / fs), 2),
                    "label": CLASSES[int(rest.y[i])],
                    "predicted": CLASSES[int(proba[i].argmax())],
                    "margin": round(float(_margin(proba[i : i + 1])[0]), 4),
                    "why": why,
                }
            )
        if new and r < n_rounds - 1:  # answers of the last round teach nothing still to come
            answered = rest.subset(np.asarray(asked))
            base = train_all
            if 0 < int(rcfg.replay) < len(train_all):
                # a fresh sample of the training beats each round keeps what the model knew
                # at a fraction of the cost of the whole set
                rng = np.random.default_rng(int(trainer_cfg.seed) + r)
                base = train_all.subset(
                    np.sort(rng.choice(len(train_all), int(rcfg.replay), False))
                )
            data = BeatSet.concat([base, *([answered] * int(rcfg.repeat))])
            tcfg = OmegaConf.merge(
                trainer_cfg,
                {"max_epochs": int(rcfg.epochs), "val_fraction": 0.0, "progress": False},
            )
            for v, m in models:
                tcfg.seed = int(trainer_cfg.seed) + 1000 + r
                fit(m, select_view(data, prepared, v, plain), None, optim_cfg, tcfg, out_dir=None)
            rounds += 1
    return Reviewed(proba, np.asarray(asked, dtype=np.int64), reasons, rounds)


def review_metrics(rest: BeatSet, reviewed: Reviewed) -> dict:
    """EC57 figures of the beats that were not asked for, plus the asked list."""
    from ecgcnn.evaluation.aami import score

    keep = np.ones(len(rest), dtype=bool)
    keep[reviewed.asked] = False
    m = score(rest.y[keep], reviewed.proba[keep].argmax(1))
    return {
        "confusion": m["confusion"],
        "VEB": m["VEB"],
        "SVEB": m["SVEB"],
        "n_test": int(keep.sum()),
        "asked": len(reviewed.asked),
        "asked_counts": {
            c: int((rest.y[reviewed.asked] == k).sum()) for k, c in enumerate(CLASSES)
        },
        "rounds": reviewed.rounds,
        "beats": reviewed.reasons,
    }
