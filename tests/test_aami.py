"""AAMI EC57 scoring on hand-computed confusion matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import (
    CLASSES,
    F,
    N,
    Q,
    S,
    V,
    combine,
    confusion,
    prior_sweep,
    score,
    veb_sveb,
)

# Rows = reference N, S, V, F, Q; columns = predicted n, s, v, f, q.
CM = np.array(
    [
        [50, 2, 3, 1, 0],  # N
        [4, 10, 1, 0, 0],  # S
        [2, 1, 20, 2, 1],  # V
        [1, 0, 5, 3, 0],  # F
        [0, 1, 2, 0, 1],  # Q
    ]
)


def beats_from_cm(cm):
    """Reference and predicted label arrays whose confusion matrix is ``cm``."""
    y_true, y_pred = [], []
    for i in range(5):
        for j in range(5):
            y_true += [i] * int(cm[i, j])
            y_pred += [j] * int(cm[i, j])
    return np.array(y_true), np.array(y_pred)


def test_confusion_uses_all_five_labels():
    cm = confusion([0, 0, 2], [0, 2, 2])
    assert cm.dtype == np.int64 and cm.shape == (5, 5)
    assert cm[N, N] == 1 and cm[N, V] == 1 and cm[V, V] == 1 and cm.sum() == 3
    assert np.array_equal(confusion(*beats_from_cm(CM)), CM)


def test_veb_by_hand():
    # TP = Vv = 20; FN = Vn+Vs+Vf+Vq = 2+1+2+1 = 6; FP = Nv+Sv = 3+1 = 4 (Fv=5, Qv=2 not counted)
    # TN = rows N,S,F,Q x cols n,s,f,q = (50+2+1+0)+(4+10+0+0)+(1+0+3+0)+(0+1+0+1) = 73
    # Se = 20/26, +P = 20/24, Spe = 73/77, Acc = (20+73)/(20+73+4+6) = 93/103
    veb = veb_sveb(CM)["VEB"]
    assert (veb["TP"], veb["FN"], veb["FP"], veb["TN"]) == (20, 6, 4, 73)
    assert veb["Se"] == 20 / 26
    assert veb["PPV"] == 20 / 24
    assert veb["Spe"] == 73 / 77
    assert veb["Acc"] == 93 / 103


def test_sveb_by_hand():
    # TP = Ss = 10; FN = Sn+Sv+Sf+Sq = 4+1+0+0 = 5; FP = Ns+Vs+Fs = 2+1+0 = 3 (Qs=1 not counted)
    # TN = rows N,V,F,Q x cols n,v,f,q = (50+3+1+0)+(2+20+2+1)+(1+5+3+0)+(0+2+0+1) = 91
    # Se = 10/15, +P = 10/13, Spe = 91/94, Acc = 101/109
    sveb = veb_sveb(CM)["SVEB"]
    assert (sveb["TP"], sveb["FN"], sveb["FP"], sveb["TN"]) == (10, 5, 3, 91)
    assert sveb["Se"] == 10 / 15
    assert sveb["PPV"] == 10 / 13
    assert sveb["Spe"] == 91 / 94
    assert sveb["Acc"] == 101 / 109


def test_fusion_called_ventricular_is_not_a_false_positive():
    more = CM.copy()
    more[F, V] += 7  # F beats predicted V: EC57 does not penalise this
    more[Q, V] += 3  # nor unclassifiable beats predicted V
    assert veb_sveb(more)["VEB"] == veb_sveb(CM)["VEB"]
    # ... whereas N beats predicted V are false positives.
    worse = CM.copy()
    worse[N, V] += 7
    veb = veb_sveb(worse)["VEB"]
    assert veb["FP"] == 4 + 7 and veb["PPV"] == 20 / 31 and veb["TN"] == 73


def test_unclassifiable_called_sveb_is_not_a_false_positive():
    more = CM.copy()
    more[Q, S] += 5
    assert veb_sveb(more)["SVEB"] == veb_sveb(CM)["SVEB"]
    worse = CM.copy()
    worse[F, S] += 5  # fusion beats called S do count against SVEB
    assert veb_sveb(worse)["SVEB"]["FP"] == 3 + 5


def test_score_gross_matches_hand_values():
    m = score(*beats_from_cm(CM))
    assert m["classes"] == list(CLASSES)
    assert m["confusion"] == CM.tolist()
    assert m["n_beats"] == 110
    assert m["overall_accuracy"] == (50 + 10 + 20 + 3 + 1) / 110
    assert m["VEB"]["Se"] == 20 / 26 and m["SVEB"]["PPV"] == 10 / 13
    assert "per_record" not in m and "average" not in m
    json.dumps(m, allow_nan=False)


def test_absent_class_gives_none_not_nan():
    # A record with N and V beats only, nothing predicted S.
    y_true = np.array([0, 0, 0, 2, 2])
    y_pred = np.array([0, 0, 2, 2, 0])
    m = score(y_true, y_pred, records=np.array(["105"] * 5))
    assert m["SVEB"]["Se"] is None and m["SVEB"]["PPV"] is None
    assert m["SVEB"]["Spe"] == 1.0 and m["SVEB"]["Acc"] == 1.0  # TN = 5, nothing else
    assert m["VEB"]["Se"] == 0.5 and m["VEB"]["PPV"] == 0.5
    assert m["per_record"]["105"]["SVEB"]["Se"] is None
    assert m["average"]["SVEB"]["Se"] is None
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text)["SVEB"]["Se"] is None


def test_empty_matrix_is_all_none():
    stats = veb_sveb(np.zeros((5, 5), dtype=int))
    assert all(stats[k][m] is None for k in ("VEB", "SVEB") for m in ("Se", "PPV", "Spe", "Acc"))


def test_average_skips_undefined_records():
    # Record "a": VEB TP=1, FN=1 -> Se 0.5, no S beats (SVEB Se None).
    # Record "b": VEB TP=1, FN=0 -> Se 1.0; S beat detected -> SVEB Se 1.0.
    y_true = np.array([2, 2, 0, 2, 1, 0])
    y_pred = np.array([2, 0, 0, 2, 1, 0])
    rec = np.array(["a", "a", "a", "b", "b", "b"])
    m = score(y_true, y_pred, rec)
    assert list(m["per_record"]) == ["a", "b"]
    assert m["per_record"]["a"]["n_beats"] == 3
    assert m["average"]["VEB"]["Se"] == pytest.approx(0.75)
    assert m["average"]["SVEB"]["Se"] == 1.0  # "a" skipped, not counted as 0
    assert m["VEB"]["Se"] == 2 / 3  # gross: 2 of 3 V beats


def test_combine_equals_score_on_concatenated_beats():
    rng = np.random.default_rng(0)
    names = np.array(["100", "119", "207", "232"])
    rec = rng.choice(names, size=3000)
    y_true = rng.choice(5, size=3000, p=[0.7, 0.1, 0.12, 0.05, 0.03])
    y_pred = np.where(rng.random(3000) < 0.8, y_true, rng.integers(0, 5, size=3000))
    per_record = {str(n): confusion(y_true[rec == n], y_pred[rec == n]) for n in names}
    combined = combine(per_record)
    assert combined == score(y_true, y_pred, rec)
    gross = score(y_true, y_pred)  # no records: recomputed from all beats at once
    for key in ("confusion", "n_beats", "VEB", "SVEB", "overall_accuracy"):
        assert combined[key] == gross[key]


def test_bad_input_raises():
    with pytest.raises(EcgError, match="shape"):
        veb_sveb(np.zeros((4, 4), dtype=int))
    with pytest.raises(EcgError, match="0..4"):
        confusion([0, 5], [0, 0])
    with pytest.raises(EcgError, match="beats"):
        confusion([0, 1], [0])
    with pytest.raises(EcgError, match="records"):
        score([0, 1], [0, 1], records=["100"])
    with pytest.raises(EcgError, match="no records"):
        combine({})


def test_prior_sweep_by_hand():
    # three beats: an S beat the argmax calls N (S prob 0.4 < N 0.6), an N beat called N, a V
    # beat called V. Doubling S moves the first beat to S (0.8 > 0.6); nothing else changes.
    y = np.array([S, N, V])
    p = np.array([[0.6, 0.4, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0, 0.0], [0.2, 0.0, 0.8, 0.0, 0.0]])
    sw = prior_sweep(y, p, weights=[0.5, 1.0, 2.0, 16.0])
    assert [pt["w"] for pt in sw["SVEB"]] == [0.5, 1.0, 2.0, 16.0]
    assert [pt["Se"] for pt in sw["SVEB"]] == [0.0, 0.0, 1.0, 1.0]
    # w = 16: the N beat (0.1 x 16 = 1.6 > 0.9) turns S as well: one false positive
    assert [pt["PPV"] for pt in sw["SVEB"]] == [None, None, 1.0, 0.5]
    assert [pt["Se"] for pt in sw["VEB"]] == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(EcgError, match="weights"):
        prior_sweep(y, p, weights=[0.0])
    with pytest.raises(EcgError, match="proba: shape"):
        prior_sweep(y, p[:, :4])


def test_prior_sweep_w1_is_the_argmax_and_se_grows_with_w():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 2000)
    p = rng.dirichlet(np.ones(5), 2000) + 0.5 * np.eye(5)[y] * (rng.random(2000) < 0.6)[:, None]
    sw = prior_sweep(y, p)
    ref = veb_sveb(confusion(y, p.argmax(1)))
    for kind in ("VEB", "SVEB"):
        at1 = next(pt for pt in sw[kind] if pt["w"] == 1.0)
        assert {m: at1[m] for m in ("Se", "PPV", "Spe", "Acc")} == {
            m: ref[kind][m] for m in ("Se", "PPV", "Spe", "Acc")
        }
        se = [pt["Se"] for pt in sw[kind]]
        # a beat called V (S) at some w is still called so at any larger w
        assert se == sorted(se) and se[0] < se[-1]
