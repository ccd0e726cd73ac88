"""The MIT-BIH Noise Stress Test (Moody, Muldrow & Mark, Computers in Cardiology 1984).

What this module reproduces of PhysioNet's WFDB programs ``nst`` and ``sigamp``
(G. B. Moody, WFDB software package, ``app/nst.c`` and ``app/sigamp.c``):

Signal size (``sigamp -a atr``)
    For each of the first 300 beats that WFDB's ``map1`` calls NORMAL (every QRS label that
    is not ventricular, fusion or a learning label: N L R a J A S j / Q B e n f), the
    peak-to-peak amplitude of the raw signal from 50 ms before to 50 ms after the annotation
    (both ends included); the size is the mean after dropping the largest and the smallest
    5 % (``n // 20`` each end) of the measurements.
Noise size (``sigamp -r``)
    RMS, after removing each window's mean, of 300 consecutive 1-s windows of the noise,
    from its start; the same 5 % trimmed mean.
SNR
    ``nst`` turns the requested SNR into ``nsr = 10**(-snr/20) * sqrt(2) / 4`` (noise RMS per
    peak-to-peak signal) and scales the noise by ``nsr * signal_size / noise_size``. So
    ``SNR = 20 log10(S / N)`` with ``S = pp / (2 sqrt 2)``, the RMS of a sine of peak-to-peak
    amplitude ``pp``, and ``N`` the noise RMS: ``SNR = 10 log10((pp**2 / 8) / N**2)``.
Protocol
    Noise off for the first 5 minutes, then switched on and off every 2 minutes (on 5-7,
    9-11, ..., 29-end for a 30-min record). Where the gain changes, ``nst`` adds a constant
    offset so the output does not step (its ``z`` variable); :func:`mix` does the same.
    ECG lead ``i`` gets noise channel ``i mod n_noise_channels``.

The NSTDB electrode-motion record ``em`` is not part of our data, so :func:`synth_em`
generates a stand-in (see its docstring for how, and why it is only a stand-in).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.signal as sps
import wfdb

from ecgcnn.data.io import Record, read_record
from ecgcnn.data.preprocess import resample
from ecgcnn.errors import EcgError

#: Environment variable naming the directory of the NSTDB noise records (bw, ma[, em]).
NSTDB_ENV = "ECGCNN_NSTDB_DIR"
#: Noise kinds: the two real NSTDB records, the synthetic electrode motion and their mixture.
NOISE_TYPES: tuple[str, ...] = ("bw", "ma", "em", "mix")
#: Labels that WFDB's ``map1`` maps to NORMAL (ecgmap.h): the beats ``sigamp -a`` measures.
SIGAMP_NORMAL = frozenset(["N", "L", "R", "a", "J", "A", "S", "j", "/", "Q", "B", "e", "n", "f"])
#: Rate and length of the NSTDB noise records (also of the synthetic em by default).
NSTDB_FS = 360.0
NSTDB_SAMPLES = 650000
#: sigamp's NMAX: measurements per size estimate.
SIGAMP_NMAX = 300


def resolve_noise_root(root: str | os.PathLike | None) -> Path:
    """Directory of the NSTDB noise records: ``root``, else ``$ECGCNN_NSTDB_DIR``."""
    if root in (None, ""):
        root = os.environ.get(NSTDB_ENV)
    if not root:
        raise EcgError(
            f"noise.root: not set (set {NSTDB_ENV} or noise.root to the folder "
            "holding the NSTDB noise records bw and ma)"
        )
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise EcgError(f"noise.root: {path} is not a directory (set {NSTDB_ENV} or noise.root)")
    return path


def read_noise(root: str | os.PathLike, name: str, fs: float | None = None) -> np.ndarray:
    """All channels of an NSTDB noise record in mV, optionally resampled to ``fs``.

    The records' headers give gain 0, which WFDB reads as its default 200 adu/mV
    (``read_record`` applies the same rule).

    Returns
    -------
    float32 array (n_samples, n_channels)
    """
    root = Path(root)
    hea = root / f"{name}.hea"
    if not hea.is_file():
        raise EcgError(f"{hea}: noise record '{name}' not found (noise.root / {NSTDB_ENV})")
    try:
        names = wfdb.rdheader(str(root / name)).sig_name
    except Exception as exc:  # noqa: BLE001  wfdb raises bare ValueError/IndexError on bad headers
        raise EcgError(f"{hea}: header does not parse ({type(exc).__name__}: {exc})") from None
    rec = read_record(root, name, leads=list(names), annotator=None)
    sig = rec.signal
    if fs is not None and rec.fs != fs:
        sig = resample(sig, rec.fs, fs)
    return np.ascontiguousarray(sig, dtype=np.float32)


def synth_em(
    n: int,
    fs: float,
    seed: int,
    band: tuple[float, float] = (0.5, 10.0),
    burst_rate_s: float = 1 / 20,
    step_rate_s: float = 1 / 15,
) -> np.ndarray:
    """Synthetic electrode-motion noise, unit RMS, reproducible for a seed.

    The NSTDB ``em`` record is the hard one for QRS detectors because its energy sits in the
    ECG band and it has sharp transients that look like beats. This stand-in copies that
    character, not the record:

    1. a 1/f (pink) Gaussian process: white noise whose spectrum is divided by ``sqrt(f)``;
    2. bursts: Poisson events (``burst_rate_s`` per second) of 0.5-4 s during which that
       process is amplified 2-6 times under a Hann envelope (a loose electrode moving);
    3. abrupt steps: Poisson events (``step_rate_s`` per second) adding a level change of
       2 standard deviations typical size (electrode potential jumps);
    4. a zero-phase 4th-order Butterworth band-pass over ``band`` (0.5-10 Hz): the steps
       become sharp biphasic transients and nearly all the power lies in the band.

    Parameters
    ----------
    n : number of samples
    fs : sampling rate, Hz
    seed : seed of ``numpy.random.default_rng``
    band : pass band, Hz

    Returns
    -------
    float32 array (n,), zero mean, unit RMS
    """
    lo, hi = float(band[0]), float(band[1])
    if not 0 < lo < hi < fs / 2:
        raise EcgError(f"noise.em_band: {lo}-{hi} Hz is not inside (0, {fs / 2}) Hz")
    if n < int(4 * fs):
        raise EcgError(f"synth_em: {n} samples is shorter than 4 s at {fs} Hz")
    rng = np.random.default_rng(seed)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[0] = 0.0
    spec[1:] /= np.sqrt(f[1:])
    pink = np.fft.irfft(spec, n)
    pink /= pink.std()

    env = np.ones(n)
    for _ in range(rng.poisson(burst_rate_s * n / fs)):
        width = int(rng.uniform(0.5, 4.0) * fs)
        start = int(rng.integers(0, max(1, n - width)))
        env[start : start + width] += rng.uniform(1.0, 5.0) * np.hanning(width)[: n - start]
    jumps = np.zeros(n)
    k = rng.poisson(step_rate_s * n / fs)
    jumps[rng.integers(0, n, size=k)] = rng.normal(0.0, 2.0, size=k)
    x = pink * env + np.cumsum(jumps)

    sos = sps.butter(4, [lo, hi], btype="band", fs=fs, output="sos")
    x = sps.sosfiltfilt(sos, x)
    return (x / x.std()).astype(np.float32)


def trimmed_mean(values: np.ndarray) -> float:
    """sigamp's trimmed mean: sort, drop ``n // 20`` values at each end, average the rest."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size == 0:
        raise EcgError("trimmed_mean: no measurements")
    k = v.size // 20
    return float(v[k : v.size - k].mean())


def qrs_size(
    x: np.ndarray,
    fs: float,
    ann_samples: np.ndarray,
    ann_symbols: np.ndarray,
    n_max: int = SIGAMP_NMAX,
    half_window_s: float = 0.05,
) -> float:
    """Peak-to-peak QRS amplitude of one lead, as ``sigamp -a atr`` measures it.

    Parameters
    ----------
    x : (n,) raw (unfiltered) signal of one lead
    fs : sampling rate, Hz
    ann_samples, ann_symbols : reference annotations
    n_max : beats measured (sigamp's NMAX), from the start of the record
    half_window_s : window half-width around each annotation (sigamp: 0.05 s)

    Returns
    -------
    Trimmed mean peak-to-peak amplitude, in the units of ``x``.
    """
    h = round(half_window_s * fs)
    keep = np.isin(np.asarray(ann_symbols).astype(str), list(SIGAMP_NORMAL))
    t = np.asarray(ann_samples)[keep]
    # sigamp stops at a window that leaves the record; one that would start before it is skipped
    t = t[(t - h >= 0) & (t + h < len(x))][:n_max]
    if t.size == 0:
        raise EcgError("qrs_size: no normal-class beat annotations to measure the QRS amplitude")
    win = x[t[:, None] + np.arange(-h, h + 1)[None, :]]
    return trimmed_mean(win.max(1) - win.min(1))


def window_rms(x: np.ndarray, fs: float, window_s: float = 1.0) -> np.ndarray:
    """RMS of consecutive non-overlapping windows, each window's mean removed (sigamp -r)."""
    w = round(window_s * fs)
    n = len(x) // w
    if n == 0:
        raise EcgError(f"window_rms: {len(x)} samples is shorter than one {window_s} s window")
    seg = np.asarray(x[: n * w], dtype=np.float64).reshape(n, w)
    return np.sqrt(((seg - seg.mean(1, keepdims=True)) ** 2).mean(1))


def noise_size(x: np.ndarray, fs: float, n_max: int = SIGAMP_NMAX) -> float:
    """RMS size of a noise signal as ``sigamp -r`` measures it: first ``n_max`` 1-s windows."""
    return trimmed_mean(window_rms(x, fs)[:n_max])


def snr_db(signal_pp: float, noise_rms: float) -> float:
    """nst's SNR: ``20 log10((pp / (2 sqrt 2)) / rms)``."""
    if noise_rms <= 0 or signal_pp <= 0:
        raise EcgError(f"snr_db: sizes must be > 0 (signal {signal_pp}, noise {noise_rms})")
    return float(20.0 * np.log10(signal_pp / (2.0 * np.sqrt(2.0) * noise_rms)))


def noise_gain(target_db: float, signal_pp: float, noise_rms: float) -> float:
    """Scale for the noise so that :func:`snr_db` of the scaled noise is ``target_db``.

    nst.c: ``nsr = pow(10., snr/-20.)*sqrt(2.0)/4.0; r = nsr*asig/anoise``.
    """
    if noise_rms <= 0 or signal_pp <= 0:
        raise EcgError(f"noise_gain: sizes must be > 0 (signal {signal_pp}, noise {noise_rms})")
    return float(10.0 ** (-target_db / 20.0) * np.sqrt(2.0) / 4.0 * signal_pp / noise_rms)


def nst_mask(
    n: int, fs: float, clean_minutes: float = 5.0, segment_minutes: float = 2.0
) -> np.ndarray:
    """Boolean (n,) mask, True where nst adds noise: from ``clean_minutes`` on, alternately
    ``segment_minutes`` on and off (on first)."""
    if clean_minutes < 0 or segment_minutes <= 0:
        raise EcgError(
            f"noise: clean_minutes={clean_minutes} must be >= 0 and "
            f"segment_minutes={segment_minutes} > 0"
        )
    t0 = round(clean_minutes * 60 * fs)
    dt = round(segment_minutes * 60 * fs)
    i = np.arange(n)
    return (i >= t0) & (((i - t0) // dt) % 2 == 0)


def noise_stream(noise: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``n`` samples of a 1-D noise signal from ``offset`` on, wrapping around its end.

    At each wrap the following copy is shifted to continue from the last sample, so the
    stream has no step there (nst resets its offset at the wrap for the same reason).
    """
    m = len(noise)
    if m < 2:
        raise EcgError("noise_stream: noise signal is empty")
    offset = int(offset) % m
    parts, have, level = [], 0, 0.0
    src = noise[offset:]
    while have < n:
        piece = src[: n - have].astype(np.float64) + level
        parts.append(piece)
        have += len(piece)
        level = piece[-1] - float(noise[0])
        src = noise
    return np.concatenate(parts).astype(np.float32)


def mix(x: np.ndarray, noise: np.ndarray, gain: float, mask: np.ndarray) -> np.ndarray:
    """``x + gain * noise`` where ``mask``, with nst's offset that keeps the output continuous.

    nst.c: when the gain changes after sample ``T - 1``, ``z += (g_new - g_old) * n[T - 1]``
    and the output is ``x + g * n - z``; so the offset steps by the noise value at each switch
    and is carried, constant, into the following clean segment.
    """
    if not (len(x) == len(noise) == len(mask)):
        raise EcgError(
            f"mix: lengths differ (signal {len(x)}, noise {len(noise)}, mask {len(mask)})"
        )
    g = gain * mask.astype(np.float64)
    dg = np.diff(g)
    switch = np.flatnonzero(dg) + 1  # first sample with the new gain
    z = np.zeros(len(x))
    z[switch] = dg[switch - 1] * noise[switch - 1]
    return (x + g * noise - np.cumsum(z)).astype(np.float32)


def masked_noise_size(x: np.ndarray, fs: float, mask: np.ndarray) -> float:
    """sigamp's noise size measured only where ``mask`` is on.

    Uses every 1-s window lying wholly inside a noise-on segment (each window's mean removed,
    which also cancels nst's constant offset) and sigamp's 5 % trimmed mean.
    """
    w = round(fs)
    n = len(x) // w
    inside = mask[: n * w].reshape(n, w).all(1)
    if not inside.any():
        raise EcgError("masked_noise_size: no whole 1-s window inside a noise-on segment")
    return trimmed_mean(window_rms(x, fs)[inside])


def added_snr(
    clean: np.ndarray, noisy: np.ndarray, fs: float, mask: np.ndarray, signal_pp: float
) -> float:
    """SNR (nst's definition) of the noise actually added, measured where it is switched on.

    nst sizes the noise on the first 300 s of the noise record, where the protocol keeps it
    off; for a non-stationary noise (bw) the SNR in the noisy segments then differs from the
    nominal one. This measures it.
    """
    diff = np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)
    return snr_db(signal_pp, masked_noise_size(diff, fs, mask))


def noisy_record(
    rec: Record,
    streams: np.ndarray,
    target_db: float,
    mask: np.ndarray,
    signal_pp: np.ndarray,
    noise_rms: np.ndarray,
) -> Record:
    """A copy of ``rec`` with noise mixed into every lead at ``target_db`` (nst).

    Parameters
    ----------
    rec : clean record
    streams : (n_samples, n_leads) noise for each lead (see :func:`noise_stream`)
    target_db : SNR, dB
    mask : (n_samples,) where the noise is on (see :func:`nst_mask`)
    signal_pp, noise_rms : (n_leads,) sizes from :func:`qrs_size` and :func:`noise_size`
    """
    sig = np.empty_like(rec.signal)
    for j in range(rec.signal.shape[1]):
        g = noise_gain(target_db, float(signal_pp[j]), float(noise_rms[j]))
        sig[:, j] = mix(rec.signal[:, j], streams[:, j], g, mask)
    return replace(rec, signal=sig)


def write_wfdb(rec: Record, directory: str | os.PathLike, name: str) -> Path:
    """Write a (noisy) record and its reference beats as WFDB (format 16, 200 adu/mV, ``atr``),
    so a QRS detector run on files (the monitor, ``bxb``-style scoring) can take NST records.

    Returns
    -------
    The directory written to.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_leads = rec.signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=rec.fs,
        units=["mV"] * n_leads,
        sig_name=list(rec.leads),
        p_signal=rec.signal.astype(np.float64),
        fmt=["16"] * n_leads,
        adc_gain=[200.0] * n_leads,
        baseline=[0] * n_leads,
        write_dir=str(directory),
    )
    if len(rec.ann_samples):
        wfdb.wrann(
            name,
            "atr",
            np.asarray(rec.ann_samples),
            symbol=list(rec.ann_symbols),
            write_dir=str(directory),
        )
    return directory
