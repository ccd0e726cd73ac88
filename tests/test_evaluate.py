"""ecgcnn-eval: checkpoints load weights-only with clear errors; evaluate scores the right beats."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose

from ecgcnn.apps import evaluate as ev
from ecgcnn.apps.evaluate import evaluate, load_model
from ecgcnn.apps.train import train
from ecgcnn.data.beats import CLASSES, RR_FEATURES
from ecgcnn.data.cache import load_beats
from ecgcnn.data.splits import boundary_sample, draw_common_set
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.training.checkpoint import load_checkpoint, save_checkpoint
from ecgcnn.training.loop import predict


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = compose("train", [f"model={name}"]).model
    return build_model(cfg, 2, 128, len(RR_FEATURES), len(CLASSES))


def _payload(net, **kw) -> dict:
    return {
        "model": net.state_dict(),
        "model_args": net.model_args,
        "classes": list(CLASSES),
        "epoch": 0,
        "best_metric": 0.5,
        **kw,
    }


class Boom:
    """A pickle payload that runs a shell command when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def synth_eval(tmp_path, synth_split):
    """Overrides for two synthetic records (s1 trains, s2 tests) plus a trained checkpoint."""
    common = synth_split
    train(
        compose(
            "train",
            common + ["trainer.max_epochs=2", "trainer.progress=false", "trainer.num_threads=1"],
        ),
        tmp_path / "train",
    )
    return common, tmp_path / "train" / "best.pt"


# ----------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    m = _model("deep").eval()
    save_checkpoint(_payload(m), tmp_path / "ck.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind
    m2, ck = load_model(tmp_path / "ck.pt")
    assert ck["classes"] == list(CLASSES) and not m2.training
    x, rr = torch.randn(3, 2, 128), torch.randn(3, len(RR_FEATURES))
    assert torch.equal(m(x, rr), m2(x, rr))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(EcgError, match=r"nope\.pt: checkpoint file not found"):
        load_model(tmp_path / "nope.pt")


def test_garbage_bytes_are_refused(tmp_path):
    p = tmp_path / "garbage.pt"
    p.write_bytes(os.urandom(4096))
    with pytest.raises(EcgError, match=r"garbage\.pt: not a loadable ecgcnn checkpoint"):
        load_model(p)


def test_truncated_checkpoint_is_refused(tmp_path):
    save_checkpoint(_payload(_model("kiranyaz2016")), tmp_path / "full.pt")
    blob = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(EcgError, match=r"cut\.pt: not a loadable ecgcnn checkpoint"):
        load_model(tmp_path / "cut.pt")


def test_weights_of_another_model_shape_are_refused(tmp_path):
    deep, small = _model("deep"), _model("kiranyaz2016")
    save_checkpoint(_payload(small, model=deep.state_dict()), tmp_path / "mixed.pt")
    with pytest.raises(EcgError, match=r"mixed\.pt: checkpoint does not fit its model"):
        load_model(tmp_path / "mixed.pt")


@pytest.mark.parametrize(
    "bad",
    [
        {"model_args": {"in_channels": 2}},  # CNN1D lacks arguments
        {"model_args": [1, 2]},
        {"model": 5},
    ],
)
def test_bad_model_args_or_weights_name_the_file(tmp_path, bad):
    save_checkpoint(_payload(_model("kiranyaz2016"), **bad), tmp_path / "bad.pt")
    with pytest.raises(EcgError, match=r"bad\.pt: "):
        load_model(tmp_path / "bad.pt")


def test_not_a_checkpoint_dict(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(EcgError, match=r"other\.pt: not an ecgcnn checkpoint"):
        load_model(tmp_path / "other.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_unsafe_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    payload = _payload(_model("kiranyaz2016"), extra=Boom(marker))
    path = tmp_path / "evil.pt"
    if how == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    with pytest.raises(EcgError, match=r"evil\.pt: not a loadable ecgcnn checkpoint"):
        load_model(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- evaluate()
def test_evaluate_scores_exactly_the_test_record(tmp_path, synth_eval):
    common, ck = synth_eval
    cfg = compose("eval", common + [f"checkpoint={ck}", "device=cpu"])
    m = evaluate(cfg, tmp_path / "eval")
    s2 = load_beats(cfg.data, records=["s2"]).beats["s2"]
    assert m["n_beats"] == len(s2)
    cm = np.array(m["confusion"])
    assert cm.sum() == len(s2)
    assert cm.sum(1).tolist() == [s2.counts()[c] for c in CLASSES]  # reference classes
    assert set(m["per_record"]) == {"s2"}
    assert m["split"] == "inter_patient"
    assert set(m["published"]) == {"dechazal2004", "zhang2014", "niu2020", "zahid2023"}
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk == m
    for f in ("report.html", "report.md", "confusion.png"):
        assert (tmp_path / "eval" / f).is_file(), f
    # the model is scored with its own predictions: recompute them
    model, _ = load_model(ck)
    pred = predict(model, s2, torch.device("cpu")).argmax(1)
    assert m["VEB"]["TP"] == int(((s2.y == 2) & (pred == 2)).sum())


def test_evaluate_uses_the_checkpoint_beat_settings(tmp_path, synth_eval):
    common, ck = synth_eval
    # a different window length here must not matter: the checkpoint's settings rule
    cfg = compose("eval", common + [f"checkpoint={ck}", "device=cpu", "data.beat.length=64"])
    m = evaluate(cfg, tmp_path / "eval")
    assert m["n_beats"] > 0


def test_evaluate_refuses_test_records_outside_data_records(tmp_path, synth_eval):
    common, ck = synth_eval
    cfg = compose("eval", common + [f"checkpoint={ck}", 'data.records=["s1"]'])
    with pytest.raises(EcgError, match=r"data.records: .*\['s2'\]"):
        evaluate(cfg, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_evaluate_refuses_bad_data_settings_in_checkpoint(tmp_path, synth_eval):
    common, ck = synth_eval
    payload = load_checkpoint(ck)
    payload["data"] = {**payload["data"], "bogus": 1}
    save_checkpoint(payload, tmp_path / "odd.pt")
    cfg = compose("eval", common + [f"checkpoint={tmp_path / 'odd.pt'}"])
    with pytest.raises(EcgError, match=r"odd\.pt: checkpoint data settings"):
        evaluate(cfg, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_patient_specific_test_beats_follow_the_protocol(tmp_path, mitdb):
    cfg = compose(
        "eval",
        [
            "split=patient_specific",
            'split.records=["100","119"]',
            f"data.root={mitdb}",
            f"data.cache_dir={tmp_path / 'c'}",
            "checkpoint=x",
        ],
    )
    beats = ev.test_beats(cfg.data, cfg.split)
    data = load_beats(cfg.data, records=list(cfg.split.common_records))
    common = draw_common_set(
        data.beats,
        list(cfg.split.common_records),
        dict(cfg.split.common_counts),
        cfg.split.common_seed,
    )
    b = boundary_sample(5.0, 360.0)
    assert b == 108_000
    expected = 0
    for rec in ("100", "119"):
        pb = data.beats[rec]
        after = pb.sample >= b
        in_common = np.isin(pb.keys(), common.keys())
        expected += int((after & ~in_common).sum())
        assert in_common.any() or rec == "100"  # 119 holds V beats of the common set
    assert len(beats) == expected
    assert beats.sample.min() >= b
    assert not np.isin(beats.keys(), common.keys()).any()
    assert set(np.unique(beats.record)) == {"100", "119"}
