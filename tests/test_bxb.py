"""WFDB's bxb, built from the shared sources: report parsing on a hand-made record pair, and
atr against itself on a real record."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from ecgcnn.errors import EcgError
from ecgcnn.evaluation import bxb

FS = 360


def _pair(d, with_header=True):
    """Reference: 20 beats, 1 s apart; beat 5 and 10 V, 7 S, 12 F, the rest N. Test: beat 3
    missed, beat 5 (V) called N, beat 10 called V 0.1 s late, beat 12 (F) called V, beat 15
    0.2 s late (a miss plus an extra), one extra beat at 8.5 s, and a '+' rhythm note."""
    ref = np.arange(1, 21) * FS
    sym = ["N"] * 20
    sym[4], sym[9], sym[6], sym[11] = "V", "V", "S", "F"
    test = {int(s): y for s, y in zip(ref, sym)}
    del test[ref[2]]
    test[int(ref[4])] = "N"
    del test[ref[9]]
    test[int(ref[9] + 0.1 * FS)] = "V"
    test[int(ref[11])] = "V"
    del test[ref[14]]
    test[int(ref[14] + 0.2 * FS)] = "L"
    test[int(8.5 * FS)] = "N"
    test[int(ref[0] + 10)] = "+"
    if with_header:
        sig = np.zeros((22 * FS, 1))
        sig[::FS, 0] = 1.0
        wfdb.wrsamp(
            "r1", fs=FS, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"], write_dir=str(d)
        )
    wfdb.wrann("r1", "atr", ref, symbol=sym, write_dir=str(d))
    s = sorted(test)
    wfdb.wrann("r1", "tst", np.array(s), symbol=[test[k] for k in s], write_dir=str(d))
    return d


def test_counts_of_a_known_pair(tmp_path, bindir):
    r = bxb.run_bxb(_pair(tmp_path), "r1", "tst", bindir=bindir)
    m = r["matrix"]
    # 16 N reference beats: 14 matched, 3 (missed) and 16 (shifted past 150 ms) unmatched.
    assert m["N"] == {"n": 14, "s": 0, "v": 0, "f": 0, "q": 0, "o": 2, "x": 0}
    assert m["V"] == {"n": 1, "s": 0, "v": 1, "f": 0, "q": 0, "o": 0, "x": 0}
    assert m["S"]["s"] == 1 and m["F"]["v"] == 1
    # The shifted beat and the beat at 8.5 s are extra detections (test label n, L -> n).
    assert m["O"]["n"] == 2 and sum(m["O"].values()) == 2
    assert r["qrs"] == {"tp": 18, "fn": 2, "fp": 2, "se": 18 / 20, "ppv": 18 / 20}
    # EC57: an F beat called V is not a VEB false positive (VFP = Nv + Sv + Ov + Xv).
    assert (r["veb"]["tp"], r["veb"]["fn"], r["veb"]["fp"]) == (1, 1, 0)
    assert (r["sveb"]["tp"], r["sveb"]["fn"], r["sveb"]["fp"]) == (1, 0, 0)
    assert r["shutdown"]["time_s"] == 0 and r["shutdown"]["beats"] == 20
    assert r["command"][-4:] == ["-f", "0.000000", "-S", "-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.atr", "r1.dat", "r1.hea", "r1.tst"]


def test_start_and_no_header(tmp_path, bindir):
    # Without a header the rate comes from fs=; from 10 s on only beats 10..20 are scored:
    # beat 10 (V, called V), 12 (F->V), 15 (miss + extra); the shifted V at 10.1 s is kept.
    r = bxb.run_bxb(
        _pair(tmp_path, with_header=False),
        "r1",
        "tst",
        start_s=9.5,
        fs=FS,
        n_samples=22 * FS,
        bindir=bindir,
    )
    assert r["qrs"]["tp"] == 10 and r["qrs"]["fn"] == 1 and r["qrs"]["fp"] == 1
    assert r["veb"]["tp"] == 1 and r["veb"]["fn"] == 0


def test_bad_inputs(tmp_path, bindir):
    _pair(tmp_path)
    with pytest.raises(EcgError, match=r"r1\.nope: annotation file not found"):
        bxb.run_bxb(tmp_path, "r1", "nope", bindir=bindir)
    with pytest.raises(EcgError, match=r"r2\.hea: header not found"):
        bxb.run_bxb(tmp_path, "r2", "tst", bindir=bindir)
    with pytest.raises(EcgError, match="confusion matrix missing"):
        bxb.parse_bxb_report("QRS sensitivity: 100.00% (1/1)\n")


def test_build_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(bxb.BXB_SRC_ENV, str(tmp_path / "none"))
    with pytest.raises(EcgError, match="bxb sources not found"):
        bxb.build_bxb(tmp_path / "bin")
    monkeypatch.setenv(bxb.BXB_SRC_ENV, str(bxb._REPO.parent / "shared/tools/wfdb-bxb"))
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    if (bxb._REPO.parent / "shared/tools/wfdb-bxb/build.sh").is_file():
        with pytest.raises(EcgError, match="no C compiler"):
            bxb.build_bxb(tmp_path / "bin")


@pytest.mark.slow
def test_atr_against_itself(mitdb, bindir):
    r = bxb.run_bxb(mitdb, "100", "atr", bindir=bindir)
    assert r["qrs"] == {"tp": 2273, "fn": 0, "fp": 0, "se": 1.0, "ppv": 1.0}
    assert r["veb"]["tp"] == 1 and r["sveb"]["tp"] == 33
    # EC57's own start (after the 5-minute learning period) scores fewer beats.
    assert bxb.run_bxb(mitdb, "100", "atr", start_s=300, bindir=bindir)["qrs"]["tp"] == 1902


def test_match_beats_bxb_rule():
    from ecgcnn.monitor.scoring import match_beats

    # bxb pairs the nearer of two detections in the window; match_beats the earlier.
    assert bxb.match_beats_bxb([400], [390, 395], 54)[3].tolist() == [[400, 395]]
    assert match_beats([400], [390, 395], 54)[3].tolist() == [[400, 390]]
    # The look-ahead example of bxb.c (match window 37): ref 96, 160; test 128, 185.
    tp, fn, fp, pairs = bxb.match_beats_bxb([96, 160], [128, 185], 37)
    assert (tp, fn, fp) == (2, 0, 0) and pairs.tolist() == [[96, 128], [160, 185]]
    # bxb is not a maximal matching: 140 is nearer 150 than 100, so 100 is missed and 190 extra.
    assert bxb.match_beats_bxb([100, 150], [140, 190], 54)[:3] == (1, 1, 1)
    assert match_beats([100, 150], [140, 190], 54)[:3] == (2, 0, 0)
    # Window inclusive; empty sides.
    assert bxb.match_beats_bxb([10], [64], 54)[:3] == (1, 0, 0)
    assert bxb.match_beats_bxb([], [5], 54)[:3] == (0, 0, 1)
    assert bxb.match_beats_bxb([5], [], 54)[:3] == (0, 1, 0)


def test_match_beats_bxb_against_bxb(tmp_path, bindir):
    # Beats 110-550 ms apart, 90 % detected with up to +-60 samples of jitter, 60 spurious
    # detections: many beats with two detections in the window. Classes N/V at random on both
    # sides, so the pairing itself shows in the V counts. The port pairs as the compiled bxb.
    rng = np.random.default_rng(1)
    ref = np.cumsum(rng.integers(40, 200, 300)) + 200
    kept = ref[rng.random(ref.size) > 0.1]
    det = np.unique(
        np.concatenate([kept + rng.integers(-60, 61, kept.size), rng.integers(200, ref[-1], 60)])
    )
    ref_sym = rng.choice(["N", "V"], ref.size)
    det_sym = rng.choice(["N", "V"], det.size)
    wfdb.wrann("r", "atr", ref, symbol=list(ref_sym), fs=FS, write_dir=str(tmp_path))
    wfdb.wrann("r", "tst", det, symbol=list(det_sym), fs=FS, write_dir=str(tmp_path))
    got = bxb.run_bxb(tmp_path, "r", "tst", fs=FS, n_samples=int(ref[-1]) + FS, bindir=bindir)
    tp, fn, fp, pairs = bxb.match_beats_bxb(ref, det, round(0.15 * FS))
    assert (tp, fn, fp) == (got["qrs"]["tp"], got["qrs"]["fn"], got["qrs"]["fp"])
    assert fn > 10 and fp > 10
    r_sym = dict(zip(ref.tolist(), ref_sym.tolist()))
    d_sym = dict(zip(det.tolist(), det_sym.tolist()))
    both = [(r_sym[r], d_sym[d]) for r, d in pairs.tolist()]
    m = got["matrix"]
    assert both.count(("V", "V")) == m["V"]["v"] and both.count(("N", "V")) == m["N"]["v"]
    assert both.count(("V", "N")) == m["V"]["n"] and both.count(("N", "N")) == m["N"]["n"]
