"""Data layer on synthetic WFDB records: reading, beats, RR features, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from conftest import synth_ecg, write_record
from omegaconf import OmegaConf

from ecgcnn.config import DataConfig
from ecgcnn.data.beats import AAMI_MAP, CLASSES, extract_beats, rr_features
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import MissingLeadError, read_record
from ecgcnn.errors import EcgError


def data_cfg(root, **over):
    cfg = OmegaConf.structured(DataConfig)
    cfg.root = str(root)
    cfg.cache_dir = str(root / "cache")
    return OmegaConf.merge(cfg, over)


def test_synthetic_record_round_trips(synth_dir):
    sig, r, syms = synth_ecg(80, v_every=5)
    rec = read_record(synth_dir, "s1", ["MLII"])
    assert rec.fs == 360 and rec.leads == ["MLII"]
    # format 212 at 200 adu/mV quantizes to 5 uV
    assert np.max(np.abs(rec.signal[:, 0] - sig[:, 0])) <= 0.0026
    assert rec.ann_samples.tolist() == list(r)
    assert rec.ann_symbols.tolist() == syms


def test_leads_are_selected_by_name(tmp_path):
    sig, r, syms = synth_ecg(20)
    sig[:, 1] = -3 * sig[:, 0]
    write_record(tmp_path, "swap", sig[:, ::-1].copy(), r, syms, leads=("V5", "MLII"))
    rec = read_record(tmp_path, "swap", ["MLII"])
    assert np.allclose(rec.signal[:, 0], sig[:, 0], atol=0.003)
    with pytest.raises(MissingLeadError, match="no lead V2"):
        read_record(tmp_path, "swap", ["V2"])


def test_other_lead_is_the_next_lead_not_named(tmp_path):
    sig, r, syms = synth_ecg(20)
    write_record(tmp_path, "two", sig, r, syms, leads=("V5", "MLII"))
    rec = read_record(tmp_path, "two", ["MLII", "other"])
    assert rec.leads == ["MLII", "V5"]
    assert np.allclose(rec.signal[:, 1], sig[:, 0], atol=0.003)
    assert read_record(tmp_path, "two", ["other"]).leads == ["V5"]
    with pytest.raises(MissingLeadError, match="no lead other"):
        read_record(tmp_path, "two", ["MLII", "V5", "other"])


def test_aami_mapping_is_ec57():
    groups = {c: sorted(s for s, k in AAMI_MAP.items() if k == c) for c in CLASSES}
    assert groups == {
        "N": sorted("NLRej"),
        "S": sorted("AaJS"),
        "V": ["E", "V"],
        "F": ["F"],
        "Q": sorted("/fQ"),
    }


def test_beats_counts_windows_and_rr(synth_dir):
    cfg = data_cfg(synth_dir)
    rec = read_record(synth_dir, "s1", ["MLII"])
    beats, dropped = extract_beats(rec, cfg)
    n_v = sum(s == "V" for s in rec.ann_symbols)
    assert beats.counts()["V"] + beats.counts()["N"] + dropped == len(rec.ann_symbols)
    # the trio window reaches 432 samples each side: exactly the beats closer to an edge drop
    r = rec.ann_samples
    assert dropped == int(((r < 432) | (r + 432 > rec.n_samples)).sum())
    assert beats.counts()["V"] <= n_v
    assert beats.x.shape == (len(beats), 2, 128)
    # the R peak sits at before/(before+after-1) of the beat window
    peak = np.argmax(beats.x[:, 0, :], axis=1)
    expected = 90 * 127 / (90 + 162 - 1)
    assert np.all(np.abs(peak - expected) <= 1.5)
    # V beats are premature: pre_rr / local_rr < 0.85, N beats after a V are not premature
    pre_local = beats.rr[:, 4]
    assert np.all(pre_local[beats.y == CLASSES.index("V")] < 0.85)


def test_rr_features_hand_computed():
    r = np.array([0, 360, 720, 900, 1440])  # RR 1.0, 1.0, 0.5, 1.5 s
    f = rr_features(r, 360.0, n_local=2, n_long=10)
    assert np.allclose(f[:, 0], [1.0, 1.0, 1.0, 0.5, 1.5])  # pre (first borrows next)
    assert np.allclose(f[:, 1], [1.0, 1.0, 0.5, 1.5, 1.5])  # post (last borrows previous)
    assert np.allclose(f[:, 2], [1.0, 1.0, 1.0, 0.75, 1.0])  # mean of last 2 pre
    assert np.isclose(f[3, 4], 0.5 / 0.75)


def test_resample_or_refuse_other_rates(tmp_path):
    sig, r, syms = synth_ecg(30, fs=250)
    write_record(tmp_path, "r250", sig, r, syms, fs=250)
    cfg = data_cfg(tmp_path)
    rec = read_record(tmp_path, "r250", ["MLII"])
    beats, _ = extract_beats(rec, cfg)
    assert np.all(np.abs(beats.sample - np.round(r[: len(r)] * 360 / 250)[None, :].T).min(1) == 0)
    with pytest.raises(EcgError, match="250.0 Hz, expected 360.0 Hz"):
        extract_beats(rec, data_cfg(tmp_path, resample=False))


def _corrupt(tmp_path, kind):
    sig, r, syms = synth_ecg(30)
    if kind == "nan":
        sig[100:200, 0] = np.nan
    if kind == "flat":
        sig[:] = 0.3
    write_record(tmp_path, "bad", sig, r, ["+"] * len(r) if kind == "nobeats" else syms)
    if kind == "truncated":
        dat = tmp_path / "bad.dat"
        dat.write_bytes(dat.read_bytes()[:1000])
    if kind == "header":
        (tmp_path / "bad.hea").write_text("this is not a header\n")
    if kind == "missing_dat":
        (tmp_path / "bad.dat").unlink()
    return tmp_path


@pytest.mark.parametrize(
    "kind,record,message",
    [
        ("unknown", "nope", "nope.hea: header file not found"),
        ("truncated", "bad", "bad.dat: truncated signal file"),
        ("header", "bad", "bad.hea: header does not parse"),
        ("missing_dat", "bad", "bad.dat: signal file of record bad not found"),
        ("nan", "bad", "bad.dat: lead MLII has 100 NaN"),
        ("flat", "bad", "bad.dat: lead MLII is a flat line"),
        ("nobeats", "bad", "record bad: annotation file has no beat annotations"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, kind, record, message):
    root = _corrupt(tmp_path / "db", kind)
    cfg = data_cfg(root)
    with pytest.raises(EcgError, match=message.replace(".", r"\.")):
        load_beats(cfg, records=[record])
    assert not (root / "cache").exists()


def test_cache_is_reused_and_invalidated(synth_dir):
    cfg = data_cfg(synth_dir)
    first = load_beats(cfg, records=["s1", "s2"])
    assert first.from_cache == 0
    again = load_beats(cfg, records=["s1", "s2"])
    assert again.from_cache == 2
    assert np.array_equal(first.beats["s1"].x, again.beats["s1"].x)
    other = load_beats(data_cfg(synth_dir, beat={"length": 64}), records=["s1"])
    assert other.from_cache == 0 and other.beats["s1"].x.shape[-1] == 64
    # a changed source file invalidates its entry
    sig, r, syms = synth_ecg(80, seed=7)
    write_record(synth_dir, "s2", sig, r, syms)
    assert load_beats(cfg, records=["s1", "s2"]).from_cache == 1


def test_wfdb_nan_write_is_invalid_sample():
    # the NaN test above relies on wfdb writing NaN as the format's invalid-sample code
    assert wfdb.io._signal.INVALID_SAMPLE_VALUE["212"] == -2048


def test_parallel_prepare_equals_serial_and_fails_the_same(synth_dir, tmp_path):
    # two processes prepare the records not cached; the beats, their order and the cache are
    # those of one process, and a bad record still fails with its one line, writing nothing
    serial = load_beats(data_cfg(synth_dir, cache_dir=str(tmp_path / "c1")), records=["s2", "s1"])
    par = load_beats(
        data_cfg(synth_dir, cache_dir=str(tmp_path / "c2")), records=["s2", "s1"], workers=2
    )
    assert list(par.beats) == ["s2", "s1"] and par.info == serial.info
    for name in ("s1", "s2"):
        for f in ("x", "rr", "y", "sample"):
            assert np.array_equal(getattr(par.beats[name], f), getattr(serial.beats[name], f))
    assert (
        load_beats(
            data_cfg(synth_dir, cache_dir=str(tmp_path / "c2")), records=["s1", "s2"]
        ).from_cache
        == 2
    )
    root = _corrupt(tmp_path / "bad_db", "truncated")
    write_record(root, "ok", *synth_ecg(30))
    with pytest.raises(EcgError, match=r"bad\.dat: truncated signal file"):
        load_beats(data_cfg(root), records=["ok", "bad"], workers=2)
    assert not (root / "cache").exists()
    with pytest.raises(EcgError, match="workers: need at least 1"):
        load_beats(data_cfg(synth_dir), records=["s1"], workers=0)
