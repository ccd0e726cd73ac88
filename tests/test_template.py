"""The running-template input view (data.beat.template) and its channel views."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synth_ecg, write_record
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from ecgcnn.apps.finetune import init_paths, prepared_template, view_files
from ecgcnn.config import DataConfig, check_config
from ecgcnn.data.beats import RR_FEATURES, extract_beats, running_median, select_view
from ecgcnn.data.io import read_record
from ecgcnn.errors import EcgError


def naive(x, window, eligible):
    out = np.empty_like(x)
    for i in range(len(x)):
        past = [j for j in range(i) if eligible[j]][-window:]
        out[i] = np.median(x[past], axis=0) if past else x[i]
    return out


@pytest.mark.parametrize("window", [1, 4, 30])
def test_running_median_is_the_median_of_the_last_eligible_beats(window):
    rng = np.random.default_rng(window)
    x = rng.normal(size=(70, 2, 9)).astype(np.float32)
    eligible = rng.random(70) > 0.3
    eligible[:3] = False  # the first beats have no eligible past: their own reference
    got = running_median(x, window, eligible)
    assert np.array_equal(got, naive(x, window, eligible))
    assert np.array_equal(got[0], x[0]) and np.array_equal(got[3], x[3])
    assert np.array_equal(running_median(x, window), naive(x, window, np.ones(70, bool)))


def test_running_median_is_causal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 1, 5)).astype(np.float32)
    y = x.copy()
    y[30:] += 100.0  # the future changes
    eligible = np.ones(50, bool)
    a, b = running_median(x, 10, eligible), running_median(y, 10, eligible)
    assert np.array_equal(a[:31], b[:31])  # beat 30's template uses beats 20..29 only
    assert not np.array_equal(a[31:], b[31:])
    with pytest.raises(EcgError, match="at least 1 beat"):
        running_median(x, 0)
    with pytest.raises(EcgError, match="eligibility flags"):
        running_median(x, 3, np.ones(4, bool))


def _cfg(root, template):
    cfg = OmegaConf.merge(
        OmegaConf.structured(DataConfig),
        {
            "root": str(root),
            "cache_dir": str(root / "cache"),
            "beat": {"template": template, "template_window": 5},
        },
    )
    return cfg


def test_views_cut_from_add_equal_their_own_preparation(tmp_path):
    sig, r, syms = synth_ecg(90, v_every=6)
    write_record(tmp_path, "t1", sig, r, syms)
    rec = read_record(tmp_path, "t1", ["MLII"])
    b = {t: extract_beats(rec, _cfg(tmp_path, t))[0] for t in ("none", "add", "replace")}
    assert b["none"].x.shape[1] == 2 and b["add"].x.shape[1] == 4 and b["replace"].x.shape[1] == 2
    for view in ("none", "add", "replace"):
        cut = select_view(b["add"], "add", view, plain_channels=2)
        assert np.array_equal(cut.x, b[view].x)
        assert np.array_equal(cut.rr, b[view].rr) and np.array_equal(cut.y, b[view].y)
    # the template is built from non-premature beats: a V beat stands out against it, the N
    # beats (whose template is made of N beats like them) hardly do
    diff = np.abs(b["replace"].x[:, 0]).max(axis=1)
    v, n = b["none"].y == 2, b["none"].y == 0
    premature = b["none"].rr[:, RR_FEATURES.index("pre_local")] < 0.9
    assert premature[v].all()
    assert diff[v].min() > 5 * np.median(diff[n][5:])
    with pytest.raises(EcgError, match="prepare with 'add'"):
        select_view(b["none"], "none", "add", 2)
    with pytest.raises(ValidationError, match="'median', expected one of \\[none, add, replace\\]"):
        _cfg(tmp_path, "median")  # refused when the config is made
    with pytest.raises(EcgError, match="data.beat.template_window"):
        bad = _cfg(tmp_path, "add")
        bad.beat.template_window = 0
        check_config(OmegaConf.create({"data": bad}))


def test_views_files_and_init_from():
    assert view_files(["none", "add"], 1) == [("none", "model.pt"), ("add", "model_add.pt")]
    assert view_files(["add"], 2) == [("add", "model_add_0.pt"), ("add", "model_add_1.pt")]
    assert prepared_template(["none"]) == "none" and prepared_template(["none", "add"]) == "add"
    assert prepared_template(["replace", "none"]) == "add"
    with pytest.raises(EcgError, match="views"):
        prepared_template(["median"])
    cfg = OmegaConf.create({"views": ["none", "add"], "init_from": None})
    assert init_paths(cfg) == [None, None]
    cfg.init_from = ["a.pt", "b.pt"]
    assert init_paths(cfg) == ["a.pt", "b.pt"]
    cfg.init_from = "a.pt"
    with pytest.raises(EcgError, match="one common model per view"):
        init_paths(cfg)
    cfg.init_from = ["a.pt"]
    with pytest.raises(EcgError, match="1 checkpoints for 2 views"):
        init_paths(cfg)


@pytest.mark.parametrize("window", [1, 2, 7, 30, 31])
def test_median_last_is_numpys_median(window):
    from ecgcnn.data.beats import median_last

    a = np.random.default_rng(window).normal(size=(9, 2, 16, window)).astype(np.float32)
    a[..., : window // 2] = a[..., -1:]  # ties
    assert np.array_equal(median_last(a), np.median(a, axis=-1))


def test_running_median_block_by_block_equals_one_call():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 2, 8)).astype(np.float32)
    eligible = rng.random(90) > 0.3
    whole = running_median(x, 10, eligible)
    parts, hist = [], np.zeros((0, 2, 8), np.float32)
    for a, b in ((0, 5), (5, 6), (6, 47), (47, 90)):
        parts.append(running_median(x[a:b], 10, eligible[a:b], history=hist))
        hist = np.concatenate([hist, x[a:b][eligible[a:b]]])[-10:]
    assert np.array_equal(np.concatenate(parts), whole)
