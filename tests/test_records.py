"""load_record: WFDB at 128 Hz with SVDB lead names, EDF+ (edfio), CSV, labels files, bad input;
positions between the record's rate and the model's."""

from __future__ import annotations

import edfio
import numpy as np
import pytest
from conftest import synth_ecg, write_record

from ecgcnn.data import preprocess
from ecgcnn.data.records import load_record
from ecgcnn.errors import EcgError

FS = 128


@pytest.fixture
def rec128(tmp_path):
    """A 128 Hz WFDB record 's128' (leads ECG1, ECG2; whole seconds long, so EDF can hold it)
    and the signal and beats it was written from."""
    sig, r, syms = synth_ecg(40, fs=FS, v_every=4)
    sig = sig[: sig.shape[0] // FS * FS]
    keep = r < sig.shape[0]
    r, syms = r[keep], [s for s, k in zip(syms, keep) if k]
    write_record(tmp_path, "s128", sig, r, syms, fs=FS, leads=("ECG1", "ECG2"))
    return tmp_path, sig, r, syms


def _edf(path, sig, r, syms, fs=FS, units=("mV", "mV"), rates=None):
    rates = rates or (fs, fs)
    signals = [
        edfio.EdfSignal(
            sig[:: fs // rate, j], rate, label=f"ECG{j + 1}", physical_dimension=units[j]
        )
        for j, rate in enumerate(rates)
    ]
    notes = [edfio.EdfAnnotation(s / fs, None, y) for s, y in zip(r, syms)]
    notes.append(edfio.EdfAnnotation(0.0, None, "Recording starts"))  # not a label: ignored
    edfio.Edf(signals, annotations=notes).write(path)
    return path


def test_wfdb_lead_mismatch_lists_the_leads(rec128):
    d, *_ = rec128
    with pytest.raises(EcgError) as err:
        load_record(d / "s128")
    msg = str(err.value)
    assert str(d / "s128.hea") in msg and "MLII" in msg and "ECG1, ECG2" in msg
    assert "lead=NAME|INDEX" in msg and "\n" not in msg


def test_wfdb_lead_by_name_or_index(rec128):
    d, sig, r, syms = rec128
    by_name = load_record(d / "s128", lead="ECG1")
    by_index = load_record(d / "s128.hea", lead=0)
    assert by_name.leads == by_index.leads == ["ECG1"] and by_name.fs == FS
    np.testing.assert_array_equal(by_name.signal, by_index.signal)
    np.testing.assert_allclose(by_name.signal[:, 0], sig[:, 0], atol=0.0026)  # 200 adu/mV
    np.testing.assert_array_equal(by_name.ann_samples, r)
    assert by_name.ann_symbols.tolist() == syms
    assert load_record(d / "s128", lead="1").leads == ["ECG2"]
    both = load_record(d / "s128", leads=["MLII", "other"], lead="ECG1")
    assert both.leads == ["ECG1", "ECG2"] and both.signal.shape == (sig.shape[0], 2)
    # A record that has the wanted lead needs no lead=.
    assert load_record(d / "s128", leads=["ECG2"]).leads == ["ECG2"]
    with pytest.raises(EcgError, match=r"lead=2 is out of range \(leads: ECG1, ECG2\)"):
        load_record(d / "s128", lead=2)
    with pytest.raises(EcgError, match=r"s128\.hea: no lead II \(leads: ECG1, ECG2\)"):
        load_record(d / "s128", lead="II")


def test_missing_annotation_file_gives_no_labels(rec128):
    d, *_ = rec128
    rec = load_record(d / "s128", lead=0, annotator="qrs")
    assert rec.ann_samples.size == 0 and rec.ann_symbols.size == 0
    assert load_record(d / "s128", lead=0, annotator=None).ann_samples.size == 0


def test_edf_plus_reads_as_the_same_record(rec128):
    d, sig, r, syms = rec128
    wf = load_record(d / "s128", leads=["ECG1", "ECG2"])
    ed = load_record(_edf(d / "s128.edf", sig, r, syms), leads=["ECG1", "ECG2"])
    assert ed.name == "s128" and ed.fs == FS and ed.leads == ["ECG1", "ECG2"]
    # EDF: 16 bits over the signal's range; WFDB: 1/200 mV steps.
    step = np.ptp(sig, axis=0) / 65535
    assert (np.abs(ed.signal - sig) <= step + 1e-6).all()
    assert (np.abs(ed.signal - wf.signal) <= step + 0.0026).all()
    np.testing.assert_array_equal(ed.ann_samples, wf.ann_samples)
    assert ed.ann_symbols.tolist() == wf.ann_symbols.tolist() == syms
    # Microvolts are converted to mV.
    uv = load_record(_edf(d / "uv.edf", sig * 1000, r, syms, units=("uV", "uV")), lead=0)
    np.testing.assert_allclose(uv.signal[:, 0], ed.signal[:, 0], atol=2 * step[0] + 1e-6)
    with pytest.raises(EcgError, match=r"s128\.edf: no lead MLII \(leads: ECG1, ECG2\)"):
        load_record(d / "s128.edf")


def test_csv_with_and_without_header(rec128, tmp_path):
    _, sig, r, syms = rec128
    named = tmp_path / "named.csv"
    np.savetxt(named, sig, delimiter=",", header="ECG1,ECG2", comments="", fmt="%.6f")
    rec = load_record(named, fs=FS, leads=["ECG2"])
    assert rec.name == "named" and rec.leads == ["ECG2"] and rec.fs == FS
    np.testing.assert_allclose(rec.signal[:, 0], sig[:, 1], atol=1e-6)
    assert rec.ann_samples.size == 0
    bare = tmp_path / "bare.csv"
    np.savetxt(bare, sig[:, :1], delimiter=",", fmt="%.6f")
    labels = tmp_path / "labels.csv"
    labels.write_text("sample,symbol\n" + "".join(f"{s},{y}\n" for s, y in zip(r, syms)))
    rec = load_record(bare, fs=FS, lead=0, labels=labels)
    assert rec.leads == ["0"] and rec.signal.shape == (sig.shape[0], 1)
    np.testing.assert_array_equal(rec.ann_samples, r)
    assert rec.ann_symbols.tolist() == syms
    with pytest.raises(EcgError, match=r"bare\.csv: no lead MLII \(leads: 0\); choose one"):
        load_record(bare, fs=FS)


def _refused(pattern, path, **kw):
    """load_record(path, **kw) raises one line matching ``pattern``."""
    with pytest.raises(EcgError, match=pattern) as err:
        load_record(path, **kw)
    assert "\n" not in str(err.value)


def test_bad_inputs_name_the_file(rec128, tmp_path):
    d, sig, r, syms = rec128
    csv = tmp_path / "x.csv"
    np.savetxt(csv, sig[:, :1], delimiter=",", fmt="%.6f")
    _refused(r"nope\.hea: record not found", tmp_path / "nope")
    _refused(r"nope\.edf: EDF file not found", tmp_path / "nope.edf")
    txt = tmp_path / "notes.txt"
    txt.write_text("1,2\n")
    _refused(r"notes\.txt: unknown record format '\.txt'", txt)
    _refused(r"x\.csv: .*pass fs=", csv, lead=0)
    _refused(r"x\.csv: sampling rate 50 Hz is below the 100 Hz", csv, lead=0, fs=50)
    _refused(r"s128: sampling rate 128 Hz is below", d / "s128", lead=0, min_fs=200)
    _refused(r"s128\.hea: sampling rate is 128 Hz, not the fs=360", d / "s128", lead=0, fs=360)
    for bad, name in (("nan", "nan.csv"), ("inf", "inf.csv")):
        p = tmp_path / name
        p.write_text("ECG1\n0.1\n0.2\n" + bad + "\n0.3\n")
        _refused(
            rf"{name}: 1 NaN/inf samples \(first at data row 3, column ECG1\)", p, fs=FS, lead=0
        )
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    _refused(r"ragged\.csv: CSV does not parse", ragged, fs=FS, lead=0)
    mixed = _edf(tmp_path / "mixed.edf", sig, r, syms, rates=(FS, FS // 2))
    _refused(
        r"mixed\.edf: the chosen signals have different sampling rates "
        r"\(ECG1 128 Hz, ECG2 64 Hz\)",
        mixed,
        leads=["ECG1", "ECG2"],
    )
    amps = _edf(tmp_path / "amps.edf", sig, r, syms, units=("mA", "mV"))
    _refused(r"amps\.edf: signal ECG1 is in 'mA'", amps, lead=0)
    outside = tmp_path / "outside.csv"
    outside.write_text(f"10,N\n{sig.shape[0]},N\n")
    _refused(r"outside\.csv: 1 labels outside the record", d / "s128", lead=0, labels=outside)
    negative = tmp_path / "negative.csv"
    negative.write_text("-1,N\n")
    _refused(r"negative\.csv: 1 labels outside", csv, fs=FS, lead=0, labels=negative)
    _refused(r"no\.csv: labels file not found", csv, fs=FS, lead=0, labels=tmp_path / "no.csv")
    symbol = tmp_path / "symbol.csv"
    symbol.write_text("10,Z\n")
    _refused(r"symbol\.csv: line 1: 'Z' is not a MIT-BIH", csv, fs=FS, lead=0, labels=symbol)
    broken = tmp_path / "broken.edf"
    broken.write_bytes(b"0       not an edf header")
    _refused(r"broken\.edf: EDF file does not read", broken, lead=0)


@pytest.mark.parametrize("fs_record", [128.0, 360.0, 500.0, 257.0])
@pytest.mark.parametrize("fs_model", [360.0, 250.0])
def test_positions_round_trip(fs_record, fs_model):
    rng = np.random.default_rng(0)
    pos = np.sort(rng.integers(0, int(1800 * fs_record), 2000))
    there = preprocess.to_model_rate(pos, fs_record, fs_model)
    back = preprocess.to_record_rate(there, fs_model, fs_record)
    assert np.abs(back - pos).max() <= 1
    if fs_model >= fs_record:  # upsampling: each record sample has its own model sample
        np.testing.assert_array_equal(back, pos)


@pytest.mark.parametrize("fs_record", [128.0, 360.0])
def test_positions_follow_the_resampled_signal(fs_record):
    # A narrow peak at record position p is the peak of the resampled signal at to_model_rate(p).
    n = int(20 * fs_record)
    t = np.arange(n)
    peaks = np.array([int(1.3 * fs_record), int(7.77 * fs_record), int(18.1 * fs_record)])
    x = sum(np.exp(-0.5 * ((t - p) / (0.01 * fs_record)) ** 2) for p in peaks)
    y = preprocess.resample(x.astype(np.float32), fs_record, 360.0)
    got = [
        int(np.argmax(y[q - 20 : q + 20])) + q - 20
        for q in preprocess.to_model_rate(peaks, fs_record, 360.0)
    ]
    assert np.abs(np.array(got) - preprocess.to_model_rate(peaks, fs_record, 360.0)).max() <= 1
