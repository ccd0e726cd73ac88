"""Protocol facts on the real MIT-BIH copy ($ECGCNN_DATA_DIR)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose, load_group

from ecgcnn.apps.prepare import prepare
from ecgcnn.data.beats import CLASSES
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import MITDB_RECORDS, PACED_RECORDS
from ecgcnn.data.splits import (
    boundary_sample,
    inter_patient,
    patient_specific,
    patient_train_set,
)

pytestmark = pytest.mark.slow

PUBLISHED_44 = {"N": 90125, "S": 2781, "V": 7009, "F": 803, "Q": 15}


@pytest.fixture(scope="module")
def prepared(mitdb, tmp_path_factory):
    cfg = compose(
        "prepare", [f"data.root={mitdb}", f"data.cache_dir={tmp_path_factory.mktemp('cache')}"]
    )
    out = tmp_path_factory.mktemp("prep")
    summary = prepare(cfg, out)
    return cfg, summary, out


def test_prepare_reproduces_published_aami_counts(prepared):
    _cfg, summary, out = prepared
    assert json.loads((out / "summary.json").read_text())["totals_44"] == summary["totals_44"]
    t = summary["totals_44"]
    dropped = {c: 0 for c in CLASSES}
    for rec, info in summary["records"].items():
        if rec not in PACED_RECORDS:
            for c in CLASSES:
                dropped[c] += info["dropped_by_class"][c]
    for c in CLASSES:
        assert t[c] + dropped[c] == PUBLISHED_44[c], c
    assert t["dropped"] == sum(dropped.values())
    assert t["dropped"] < 200  # only beats within 1.2 s of a record edge
    assert sorted(summary["skipped"]) == ["102", "104"]  # no MLII lead
    assert len(summary["records"]) == 46


def test_second_prepare_is_served_from_cache(prepared, tmp_path):
    cfg, summary, _ = prepared
    again = prepare(cfg, tmp_path)
    assert again["from_cache"] == 46 and again["totals"] == summary["totals"]


@pytest.fixture(scope="module")
def beats(prepared):
    cfg, _, _ = prepared
    return load_beats(cfg.data).beats


def test_patient_specific_split_boundaries(beats):
    cfg = load_group("split", "patient_specific")
    common, patients = patient_specific(beats, cfg, 360.0)
    assert len(patients) == 44 and not set(patients) & set(PACED_RECORDS)
    b = boundary_sample(5, 360.0)
    assert b == 108000
    for rec, p in patients.items():
        assert np.all(p.own_train.sample < b) and np.all(p.test.sample >= b), rec
        # every beat of the record is in train or test, except common beats removed from test
        n_common_in_test = int(np.sum((common.record == rec) & (common.sample >= b)))
        assert len(p.own_train) + len(p.test) + n_common_in_test == len(beats[rec])
    # common set: configured counts, only from records 100-124
    assert common.counts() == {"N": 75, "S": 75, "V": 75, "F": 13, "Q": 7}
    assert set(common.record) <= {r for r in MITDB_RECORDS if "100" <= r <= "124"}
    train = patient_train_set(common, patients["208"])
    assert len(set(train.keys())) == len(train)  # no beat twice
    # another seed draws another common set, the same seed the same one
    cfg2 = cfg.copy()
    cfg2.common_seed = 1
    assert set(patient_specific(beats, cfg2, 360.0)[0].keys()) != set(common.keys())
    assert set(patient_specific(beats, cfg, 360.0)[0].keys()) == set(common.keys())


def test_inter_patient_ds1_ds2(beats):
    cfg = load_group("split", "inter_patient")
    ds1, ds2 = set(cfg.train_records), set(cfg.test_records)
    assert len(ds1) == len(ds2) == 22 and not ds1 & ds2
    non_paced = set(MITDB_RECORDS) - set(PACED_RECORDS)
    assert ds1 | ds2 == non_paced
    train, test = inter_patient(beats, cfg)
    assert set(train.record) == ds1 and set(test.record) == ds2
