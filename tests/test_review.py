"""Review-in-the-loop (ecgcnn.personalize.review): the budget and one question per interval,
causality (a beat's class never depends on a later answer), asked beats not scored, the
strict models untouched, bad settings refused. The benchmark's --review mode:
tests/test_benchmark_seeds.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose
from omegaconf import OmegaConf

from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.personalize.review import review_metrics, review_record
from ecgcnn.personalize.settings import ReviewConfig
from ecgcnn.training.loop import predict, seed_everything

FS = 360.0
START = 300 * 360  # first sample after 5 training minutes


def _beats(n: int, start: int, step_s: float, seed: int) -> BeatSet:
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 0, 0, 1, 2], size=n).astype(np.int64)
    x = rng.normal(size=(n, 2, 128)).astype(np.float32)
    x[:, 0, 50:70] += y[:, None].astype(np.float32)  # the classes differ a little
    return BeatSet(
        x=x,
        rr=rng.normal(size=(n, len(RR_FEATURES))).astype(np.float32),
        y=y,
        sample=(start + np.arange(n) * step_s * FS).astype(np.int64),
        record=np.full(n, "900"),
        symbol=np.full(n, "N"),
    )


@pytest.fixture(scope="module")
def setup():
    cfg = compose("finetune", ["record=100", "trainer=finetune"])
    seed_everything(0)
    model = build_model(cfg.model, 2, 128, len(RR_FEATURES), len(CLASSES))
    train = _beats(60, 0, 4.0, 1)
    # 10 minutes after the training minutes, one beat every 5 s: 120 beats, 10 intervals
    rest = _beats(120, START, 5.0, 2)
    return cfg, model, train, rest


def _review(setup, rest=None, **kw):
    cfg, model, train, rest0 = setup
    rcfg = OmegaConf.merge(OmegaConf.structured(ReviewConfig), {"budget": 6, **kw})
    return review_record(
        [("none", model)], "none", 2, train, rest0 if rest is None else rest, START, FS, rcfg,
        cfg.optim, cfg.trainer,
    )  # fmt: skip


def test_budget_one_question_per_interval_and_strict_model_untouched(setup):
    _, model, _, rest = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rv = _review(setup, retrain_s=120.0)
    assert len(rv.asked) == 6  # budget reached in the first 6 of 10 minutes
    minutes = ((rest.sample[rv.asked] - START) / FS // 60).astype(int)
    assert minutes.tolist() == [0, 1, 2, 3, 4, 5]  # one per minute, in time order
    # 10 min in rounds of 2 min: the answers of 3 rounds teach; the last round's would not
    assert rv.rounds == 3
    assert [b["label"] for b in rv.reasons] == [CLASSES[k] for k in rest.y[rv.asked]]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the first round is classified by the strict model itself
    first = (rest.sample - START) / FS < 120
    strict = predict(model, rest.subset(first), torch.device("cpu"))
    np.testing.assert_allclose(rv.proba[first], strict, rtol=1e-6)
    # the asked beat of each minute is that minute's least certain one under the model then
    top2 = np.sort(rv.proba, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    for i, m in zip(rv.asked, minutes):
        inm = ((rest.sample - START) / FS // 60).astype(int) == m
        assert margin[i] == margin[inm].min()


def test_no_beat_is_classified_with_a_later_answer(setup):
    rest = setup[3]
    rv = _review(setup)
    changed = rest.subset(np.arange(len(rest)))
    later = (rest.sample - START) / FS >= 300  # the second 5-min round
    changed.y = np.where(later, (rest.y + 1) % 3, rest.y)  # other answers from minute 5 on
    rv2 = _review(setup, rest=changed)
    np.testing.assert_array_equal(rv.proba[~later], rv2.proba[~later])
    assert rv.asked[:5].tolist() == rv2.asked[:5].tolist()


def test_asked_beats_are_not_scored(setup):
    rest = setup[3]
    rv = _review(setup)
    m = review_metrics(rest, rv)
    assert m["asked"] == 6 and m["n_test"] == len(rest) - 6
    assert int(np.asarray(m["confusion"]).sum()) == len(rest) - 6
    keep = np.setdiff1d(np.arange(len(rest)), rv.asked)
    tp_v = int(((rest.y[keep] == 2) & (rv.proba[keep].argmax(1) == 2)).sum())
    assert m["VEB"]["TP"] == tp_v
    assert sum(m["asked_counts"].values()) == 6


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"budget": -1}, "review.budget"),
        ({"interval_s": 0}, "review.interval_s"),
        ({"replay": -5}, "review.replay"),
    ],
)
def test_bad_settings_refused(setup, bad, key):
    with pytest.raises(EcgError, match=key):
        _review(setup, **bad)


def test_unknown_strategy_refused_at_compose():
    from omegaconf.errors import ValidationError

    with pytest.raises(ValidationError, match="strategy"):
        OmegaConf.merge(OmegaConf.structured(ReviewConfig), {"strategy": "oracle"})
