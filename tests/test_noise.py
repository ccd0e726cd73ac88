"""Noise stress test: nst's SNR definition, its on/off protocol, the synthetic em noise, the
real NSTDB noise records and an end-to-end run of ``ecgcnn-noise-stress``."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as sps
from conftest import REPO, compose, write_record

from ecgcnn.data.io import Record, read_record
from ecgcnn.errors import EcgError
from ecgcnn.noise import (
    NSTDB_ENV,
    added_snr,
    masked_noise_size,
    mix,
    noise_gain,
    noise_size,
    noise_stream,
    noisy_record,
    nst_mask,
    qrs_size,
    read_noise,
    resolve_noise_root,
    snr_db,
    synth_em,
    write_wfdb,
)
from ecgcnn.noise.stress import generated_stress as noise_stress

FS = 360


def fast_ecg(minutes: float, rr_s: float = 0.8, v_every: int = 5, seed: int = 0):
    """A long synthetic ECG built by convolution (N: narrow QRS 1 mV, V: wide 1.8 mV, premature).

    Returns (signal (n, 2) mV, r_samples, symbols)."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * FS)
    r, syms, t = [], [], 1.0
    while True:
        i = len(r)
        is_v = bool(v_every) and i % v_every == v_every - 1
        t += rr_s * (0.7 if is_v else 1.0) + rng.normal(0, 0.02)
        if t * FS >= n - FS:
            break
        r.append(int(t * FS))
        syms.append("V" if is_v else "N")
    r = np.array(r)
    tt = np.arange(-FS // 2, FS // 2)
    tpl_n = np.exp(-0.5 * (tt / (0.01 * FS)) ** 2) + 0.25 * np.exp(-0.5 * ((tt - 90) / 14.4) ** 2)
    tpl_v = 1.8 * np.exp(-0.5 * (tt / (0.03 * FS)) ** 2) + 0.25 * np.exp(
        -0.5 * ((tt - 90) / 14.4) ** 2
    )
    x = np.zeros(n)
    for tpl, want in ((tpl_n, "N"), (tpl_v, "V")):
        imp = np.zeros(n)
        imp[r[np.array(syms) == want]] = 1.0
        x += sps.fftconvolve(imp, tpl, mode="same")
    x += 0.1 * np.sin(2 * np.pi * 0.2 * np.arange(n) / FS) + rng.normal(0, 0.01, n)
    return np.stack([x, 0.5 * x], axis=1).astype(np.float32), r, syms


def _record(minutes=12.0) -> Record:
    sig, r, syms = fast_ecg(minutes)
    return Record("s", sig, float(FS), ["MLII", "V1"], r.astype(np.int64), np.array(syms))


# ----------------------------------------------------------------------------- SNR definition
def test_qrs_size_is_sigamps_trimmed_peak_to_peak_of_normal_beats():
    x = np.zeros(60 * FS)
    t = np.arange(1, 41) * FS  # 40 beats, one per second
    amps = np.ones(40)
    amps[5], amps[9] = 10.0, 0.1  # one outlier each way
    x[t] = amps
    x[t[3] + 19] = 50.0  # 19 samples (53 ms) after a beat: outside sigamp's +-50 ms window
    sym = np.array(["N"] * 40)
    sym[7] = "V"  # ventricular: not a map1 NORMAL beat, never measured
    x[t[7]] = 99.0
    # 39 beats measured (V excluded); 39 // 20 = 1 trimmed at each end: 0.1 and 10.0 go
    assert qrs_size(x, FS, t, sym) == pytest.approx(1.0, abs=1e-12)
    sym2 = sym.copy()
    sym2[:] = "A"  # supraventricular beats count as NORMAL in WFDB's map1
    sym2[7] = "V"
    assert qrs_size(x, FS, t, sym2) == pytest.approx(1.0, abs=1e-12)
    sym[7] = "N"  # now 40 beats: 2 trimmed at each end, 99 and 10 above, 0.1 and a 1.0 below
    assert qrs_size(x, FS, t, sym) == pytest.approx(1.0, abs=1e-12)
    amps[20] = 0.2
    x[t] = amps
    x[t[7]] = 99.0
    assert qrs_size(x, FS, t, sym) == pytest.approx(1.0, abs=1e-12)  # 0.2 trimmed too
    with pytest.raises(EcgError, match="no normal-class"):
        qrs_size(x, FS, t, np.array(["V"] * 40))


def test_nst_snr_is_sine_rms_of_the_qrs_over_noise_rms():
    # nst.c: nsr = 10^(-snr/20) * sqrt(2)/4 -> a noise of RMS pp/(2 sqrt 2) is 0 dB
    assert snr_db(2.0 * np.sqrt(2.0), 1.0) == pytest.approx(0.0, abs=1e-12)
    assert snr_db(1.0, 1.0) == pytest.approx(20 * np.log10(1 / (2 * np.sqrt(2))))
    for target in (24, 12, 0, -6):
        g = noise_gain(target, 1.5, 0.08)
        assert snr_db(1.5, 0.08 * g) == pytest.approx(target, abs=1e-9)


@pytest.mark.parametrize("target", [24.0, 12.0, 0.0, -6.0])
def test_added_noise_has_the_target_snr_within_0_1_db(target):
    rec = _record()
    rng = np.random.default_rng(1)
    stream = rng.normal(0, 0.3, (rec.n_samples, 2)).astype(np.float32)
    mask = nst_mask(rec.n_samples, FS)
    pp = np.array(
        [qrs_size(rec.signal[:, j], FS, rec.ann_samples, rec.ann_symbols) for j in range(2)]
    )
    assert pp[0] == pytest.approx(1.0, abs=0.03) and pp[1] == pytest.approx(0.5, abs=0.02)
    sizes = np.array([noise_size(stream[:, j], FS) for j in range(2)])
    noisy = noisy_record(rec, stream, target, mask, pp, sizes)
    for j in range(2):  # each lead is scaled to the target against its own QRS amplitude
        got = added_snr(rec.signal[:, j], noisy.signal[:, j], FS, mask, float(pp[j]))
        assert abs(got - target) < 0.1
    assert noisy.ann_samples is rec.ann_samples and rec.signal is not noisy.signal


def test_nst_sizes_noise_on_its_first_300_s_segments_option_on_the_noisy_part():
    rec = _record()
    rng = np.random.default_rng(2)
    stream = rng.normal(0, 1.0, rec.n_samples)
    stream[5 * 60 * FS :] *= 2.0  # non-stationary: twice as loud after 5 min, as bw can be
    mask = nst_mask(rec.n_samples, FS)
    pp = qrs_size(rec.signal[:, 0], FS, rec.ann_samples, rec.ann_symbols)
    for size, expect in (
        (noise_size(stream, FS), 12.0 - 20 * np.log10(2)),
        (masked_noise_size(stream, FS, mask), 12.0),
    ):
        out = mix(rec.signal[:, 0], stream, noise_gain(12.0, pp, size), mask)
        assert added_snr(rec.signal[:, 0], out, FS, mask, pp) == pytest.approx(expect, abs=0.1)


# ----------------------------------------------------------------------------- protocol
def test_noise_is_on_only_in_alternating_2_min_segments_after_minute_5():
    n = 650000
    mask = nst_mask(n, FS)
    m = 60 * FS
    on = [
        (5 * m, 7 * m),
        (9 * m, 11 * m),
        (13 * m, 15 * m),
        (17 * m, 19 * m),
        (21 * m, 23 * m),
        (25 * m, 27 * m),
        (29 * m, n),
    ]
    expect = np.zeros(n, bool)
    for a, b in on:
        expect[a:b] = True
    assert np.array_equal(mask, expect)

    rec = _record(12.0)
    k = rec.n_samples
    stream = np.random.default_rng(3).normal(0, 0.2, (k, 2)).astype(np.float32)
    mask = nst_mask(k, FS)
    noisy = noisy_record(rec, stream, 6.0, mask, np.ones(2), np.ones(2))
    added = noisy.signal[:, 0].astype(np.float64) - rec.signal[:, 0]
    edges = [0, 5 * m, 7 * m, 9 * m, 11 * m, k]
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if i % 2 == 0:  # clean: only nst's constant offset, no noise
            assert np.ptp(added[a:b]) < 1e-5
        else:
            # 6 dB against pp = 1 and noise size 1: gain 10^(-6/20) sqrt(2)/4 = 0.177
            assert added[a:b].std() == pytest.approx(0.2 * 0.17715, rel=0.03)
    assert np.all(added[: 5 * m] == 0.0)  # nothing before minute 5, not even an offset
    # nst's offset keeps the output continuous where the noise switches on and off: at a
    # switch on the output moves by the noise's own step, at a switch off it does not move
    for t in edges[1:-1]:
        assert abs(added[t] - added[t - 1]) == pytest.approx(
            abs(float(stream[t, 0] - stream[t - 1, 0])) * noise_gain(6.0, 1.0, 1.0)
            if t in (5 * m, 9 * m)
            else 0.0,
            abs=1e-5,
        )


def test_noise_stream_offset_and_wrap_without_a_step():
    noise = np.arange(10, dtype=np.float32)
    s = noise_stream(noise, 25, offset=7)
    assert s[:3].tolist() == [7, 8, 9]
    # at each wrap (after 3, 13 and 23 samples) the next copy starts at the last value, as
    # nst's offset does: no jump back to 0, the ramp goes on
    d = np.diff(s)
    assert np.flatnonzero(d == 0).tolist() == [2, 12, 22] and np.all(d[d != 0] == 1)
    assert s[3] == 9 and s[-1] == 7 + 24 - 3


def test_noisy_record_written_as_wfdb_reads_back(tmp_path):
    rec = _record(6.0)
    stream = np.random.default_rng(4).normal(0, 0.2, (rec.n_samples, 2)).astype(np.float32)
    noisy = noisy_record(rec, stream, 0.0, nst_mask(rec.n_samples, FS), np.ones(2), np.ones(2))
    write_wfdb(noisy, tmp_path, "s_em0")
    back = read_record(tmp_path, "s_em0", leads=["MLII", "V1"])
    assert np.abs(back.signal - noisy.signal).max() <= 0.5 / 200 + 1e-6  # half an adu
    assert np.array_equal(back.ann_samples, rec.ann_samples)
    assert back.ann_symbols.tolist() == rec.ann_symbols.tolist()


# ----------------------------------------------------------------------------- em
def test_synthetic_em_is_seeded_unit_rms_and_band_limited():
    a = synth_em(10 * 60 * FS, FS, seed=5)
    b = synth_em(10 * 60 * FS, FS, seed=5)
    c = synth_em(10 * 60 * FS, FS, seed=6)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.dtype == np.float32 and a.std() == pytest.approx(1.0, abs=1e-4)
    f, p = sps.welch(a, fs=FS, nperseg=8192)
    band = (f >= 0.5) & (f <= 10.0)
    assert p[band].sum() / p.sum() > 0.95
    # in the ECG band, not just slow wander: a good share of the power lies above 3 Hz
    assert p[(f > 3) & (f <= 10)].sum() / p.sum() > 0.1
    # bursts and steps: heavy-tailed, unlike a Gaussian process
    kurt = np.mean(a.astype(np.float64) ** 4) / np.mean(a.astype(np.float64) ** 2) ** 2
    assert kurt > 4.0
    with pytest.raises(EcgError, match="em_band"):
        synth_em(10 * FS, FS, 0, band=(0.5, 200.0))


# ----------------------------------------------------------------------------- real records
@pytest.fixture(scope="session")
def nstdb() -> Path:
    root = os.environ.get(NSTDB_ENV)
    default = REPO.parent / "shared" / "data" / "nstdb-noise"
    if root:
        return Path(root)
    if (default / "bw.hea").is_file():
        return default
    pytest.skip(f"{NSTDB_ENV} is not set and {default} holds no NSTDB noise records")


@pytest.mark.slow
def test_real_bw_and_ma_records_load_with_their_nst_sizes(nstdb):
    root = resolve_noise_root(str(nstdb))
    bw, ma = read_noise(root, "bw"), read_noise(root, "ma")
    assert bw.shape == ma.shape == (650000, 2) and bw.dtype == np.float32
    # header gain 0 -> WFDB's 200 adu/mV; sigamp -r sizes (trimmed 1-s RMS, first 300 s), mV
    assert noise_size(bw[:, 0], FS) == pytest.approx(0.1004, abs=5e-4)
    assert noise_size(ma[:, 0], FS) == pytest.approx(0.0810, abs=5e-4)
    # baseline wander: 99.5 % of its power below 1 Hz; muscle artifact: ~9 % above 10 Hz,
    # where bw has almost none (measured on these records)
    fb, pb = sps.welch(bw[:, 0], fs=FS, nperseg=8192)
    fm, pm = sps.welch(ma[:, 0], fs=FS, nperseg=8192)
    assert pb[fb < 1].sum() / pb.sum() > 0.99
    assert pb[fb > 10].sum() / pb.sum() < 0.005 and pm[fm > 10].sum() / pm.sum() > 0.05
    with pytest.raises(EcgError, match="em.hea"):
        read_noise(root, "em")


def test_noise_root_must_be_set(monkeypatch):
    monkeypatch.delenv(NSTDB_ENV, raising=False)
    with pytest.raises(EcgError, match=NSTDB_ENV):
        resolve_noise_root(None)


# ----------------------------------------------------------------------------- end to end
def _counts(**k) -> list[str]:
    """Overrides replacing every class count of the common set (Hydra merges dicts)."""
    return [f"split.common_counts.{c}={k.get(c, 0)}" for c in "NSVFQ"]


def _synth_db(tmp_path: Path) -> Path:
    d = tmp_path / "db"
    sig, r, syms = fast_ecg(10.0, v_every=5, seed=0)
    write_record(d, "s1", sig, r, syms)
    sig, r, syms = fast_ecg(10.0, rr_s=0.9, v_every=7, seed=1)
    write_record(d, "s2", sig, r, syms)
    return d


@pytest.mark.parametrize("workers", [1, 2])  # in this process, and in joblib's processes
def test_end_to_end_synthetic_patient_all_snrs(tmp_path, monkeypatch, workers):
    monkeypatch.delenv(NSTDB_ENV, raising=False)  # em alone needs no noise records
    root = _synth_db(tmp_path)
    cfg = compose(
        "noise_stress",
        [
            f"data.root={root}",
            'data.records=["s1","s2"]',
            f"data.cache_dir={tmp_path / 'c'}",
            'split.records=["s1"]',
            'split.common_records=["s1","s2"]',
            *_counts(N=10, V=5),
            "trainer.max_epochs=2",
            f"workers={workers}",
            "noise.types=[em]",
            "noise.measure=segments",
            "monitor_snr_db=[12]",
        ],
    )
    s = noise_stress(cfg, tmp_path / "out")
    got = json.loads((tmp_path / "out" / "noise_stress.json").read_text())
    assert got["snr_db"] == [24.0, 18.0, 12.0, 6.0, 0.0, -6.0]
    assert sorted(got["by_noise"]["em"], key=float) == ["-6", "0", "6", "12", "18", "24"]
    for snr, b in got["by_noise"]["em"].items():
        # sized on the noise-on segments, the realized SNR there is the nominal one
        assert abs(b["measured_snr_db"]["median"] - float(snr)) < 0.01
        assert b["n_beats"] == got["clean"]["n_beats"]  # the same reference beats every time
        assert (
            0 < b["noisy_only"]["n_beats"] == got["clean"]["noisy_only"]["n_beats"] < b["n_beats"]
        )
    # the clean score is exactly ecgcnn-finetune's score of the same model on the same beats
    ft = json.loads((tmp_path / "out" / "models" / "s1_m5" / "metrics.json").read_text())
    per = json.loads((tmp_path / "out" / "per_record.json").read_text())
    assert per["s1"]["clean"]["all"] == ft["confusion"]
    assert s["clean"]["VEB"]["TP"] == ft["VEB"]["TP"]
    # the streaming monitor ran on the clean and the 12 dB records (detected beats, no annotations)
    mon = got["monitor"]
    assert set(mon) == {"clean", "em"} and set(mon["em"]) == {"12"}
    assert mon["clean"]["-"]["QRS"]["Se"] > 0.99 and mon["clean"]["-"]["QRS"]["PPV"] > 0.99
    assert mon["clean"]["-"]["QRS"]["TP"] + mon["clean"]["-"]["QRS"]["FN"] == (
        mon["em"]["12"]["QRS"]["TP"] + mon["em"]["12"]["QRS"]["FN"]
    )  # same reference beats
    assert (tmp_path / "out" / "noise_stress.png").stat().st_size > 10000
    assert "| em | -6 |" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_end_to_end_real_patient_reusing_models_dir(tmp_path, mitdb, nstdb):
    over = [
        f"data.root={mitdb}",
        f"data.cache_dir={tmp_path / 'c'}",
        "records=[208]",
        'split.common_records=["100","208"]',
        *_counts(N=20, S=2, V=20, F=5),
        "trainer.max_epochs=3",
        "workers=1",
        f"noise.root={nstdb}",
        "noise.snr_db=[12,-6]",
        "views=[none,add]",
    ]  # two views, as the benchmark's patients: both models score
    first = noise_stress(compose("noise_stress", over), tmp_path / "a")
    assert (tmp_path / "a" / "models" / "208_m5" / "model_add.pt").is_file()
    again = noise_stress(
        compose("noise_stress", [*over, f"models_dir={tmp_path / 'a' / 'models'}"]), tmp_path / "b"
    )
    assert not (tmp_path / "b" / "models").exists()
    assert first["by_noise"] == again["by_noise"]  # same model, same noise: same figures
    assert set(first["by_noise"]) == {"bw", "ma", "em"}
    for t in ("bw", "ma", "em"):
        hi, lo = first["by_noise"][t]["12"], first["by_noise"][t]["-6"]
        assert hi["n_beats"] == lo["n_beats"] == first["clean"]["n_beats"] > 1500
        # more noise never helps: VEB Se at -6 dB is not above VEB Se at 12 dB
        assert lo["noisy_only"]["VEB"]["Se"] <= hi["noisy_only"]["VEB"]["Se"] + 1e-9
    with pytest.raises(EcgError, match="patient model not found"):
        noise_stress(compose("noise_stress", [*over, f"models_dir={tmp_path}"]), tmp_path / "c")


# ----------------------------------------------------------------------------- real em
def test_recovered_em_is_the_added_noise_without_nsts_offsets(tmp_path):
    """A fake NSTDB pair (clean '118', '118e_6' = nst's mix of a known noise at -6 dB) written
    as WFDB: recover_em gives gain * (noise - its value before each switch-on) where the noise
    is on, 0 elsewhere (to the 212 format's 0.005 mV steps), and em_noisy adds it to a record
    at the SNR nst would have given it (so also 4.5 dB under nominal for NSTDB's 118e12)."""
    from ecgcnn.noise.real_em import em_noisy, recover_em

    sig, r, syms = fast_ecg(12.0)
    rec = Record("118", sig, float(FS), ["MLII", "V1"], r.astype(np.int64), np.array(syms))
    rng = np.random.default_rng(5)  # band-limited Gaussian: peaks stay inside 212's +-10 mV
    sos = sps.butter(2, (0.5, 10.0), "bandpass", fs=FS, output="sos")
    noise = sps.sosfilt(sos, rng.normal(size=(len(sig), 2)), axis=0)
    noise /= noise.std(0)
    noise[: 300 * FS] *= 0.6  # quieter where nst sizes it: the SNR on the segments is lower
    mask = nst_mask(len(sig), FS)
    pp = np.array([qrs_size(sig[:, j], FS, r, syms) for j in range(2)])
    size = np.array([noise_size(noise[:, j], FS) for j in range(2)])
    d = tmp_path / "db"
    write_record(d, "118", sig.astype(float), r, syms)
    fake = noisy_record(rec, noise, -6.0, mask, pp, size).signal
    write_record(d, "118e_6", fake.astype(float), r, syms)
    em, em_size = recover_em(d, d)
    g = np.array([noise_gain(-6.0, pp[j], size[j]) for j in range(2)])
    on = np.flatnonzero(np.diff(mask.astype(int)) == 1) + 1
    want = np.zeros_like(noise)
    for a, b in itertools.pairwise([*on, len(mask)]):
        want[a:b] = g * (noise[a:b] - noise[a - 1])
    want[~mask] = 0
    assert np.abs(em - want).max() < 0.011  # two 212 roundings of 0.005 mV
    assert not em[~mask].any()
    # another record (half the QRS size) at 12 dB: the SNR nst gives it with the original noise
    other = Record("x", 0.5 * sig, float(FS), ["MLII", "V1"], rec.ann_samples, rec.ann_symbols)
    got = em_noisy(other, em, em_size, 12.0).signal
    ref = noisy_record(other, noise, 12.0, mask, 0.5 * pp, size).signal
    for j in range(2):
        snr = [added_snr(other.signal[:, j], x[:, j], FS, mask, 0.5 * pp[j]) for x in (got, ref)]
        assert abs(snr[0] - snr[1]) < 0.05 and snr[0] < 12 - 3
    assert np.array_equal(got[: on[0]], other.signal[: on[0]])  # nothing before 5:00


@pytest.mark.slow
def test_real_em_quick_mode(tmp_path, mitdb):
    """ecgcnn-noise-stress's small mode (CI): the shipped model on 118 and NSTDB's 118e12, 8
    minutes, without and with the quality stage, our scores and bxb's."""
    from ecgcnn.noise.real_em import headline_real_em, real_em_stress

    if not (Path(mitdb).parent / "nstdb-118e" / "118e12.hea").is_file():
        pytest.skip("no nstdb-118e records beside ECGCNN_DATA_DIR")
    over = [f"data.root={mitdb}", "real_em.shipped=true", "real_em.snr_db=[12]"]
    over += ["real_em.max_minutes=8", "workers=1"]
    s = real_em_stress(compose("noise_stress", over), tmp_path / "out")
    line = headline_real_em(s)
    assert set(line["snr"]) == set(line["without"]) == {"clean", "12"}
    w, wo = line["snr"]["12"], line["without"]["12"]
    assert wo["shutdown_frac"] == 0 and 0 < w["shutdown_frac"] <= 0.5
    assert w["qrs_ppv"] > wo["qrs_ppv"]  # fewer false detections among the decided beats
    assert line["snr"]["clean"]["shutdown_frac"] == 0
    assert line["snr"]["clean"]["false_alarms_per_h"] == 0  # the clean run is the reference
    bxb = s["snr"]["12"]["bxb"]
    if "error" not in bxb:  # bxb counts the decided beats as we do
        assert abs(bxb["qrs_ppv"] - w["qrs_ppv"]) < 0.005
    assert (tmp_path / "out" / "real_em.json").is_file()
    assert "| 118 | 12 |" in (tmp_path / "out" / "report.md").read_text().replace(
        " 12 | ", " | 12 | "
    )
