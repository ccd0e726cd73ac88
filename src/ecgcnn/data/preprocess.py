"""Signal conditioning with scipy: baseline-wander removal / band-pass, and resampling."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.ndimage as ndi
import scipy.signal as sps

from ecgcnn.errors import EcgError

FILTER_KINDS = ("none", "bandpass", "median", "median+bandpass")


def remove_baseline_median(x: np.ndarray, fs: float, widths_s=(0.2, 0.6)) -> np.ndarray:
    """Subtract the baseline estimated by cascaded median filters (de Chazal et al. 2004).

    A 200 ms median removes QRS complexes and P waves, a 600 ms median then removes T waves;
    what is left is the baseline wander.

    Parameters
    ----------
    x : (n,) or (n, leads) signal
    fs : sampling rate in Hz
    widths_s : median window widths in seconds, applied in order

    Returns
    -------
    Signal of the same shape and dtype with the baseline subtracted.
    """
    base = x
    for w in widths_s:
        size = round(w * fs) | 1  # odd window: centred median
        base = ndi.median_filter(base, size=(size,) + (1,) * (x.ndim - 1), mode="nearest")
    return (x - base).astype(x.dtype, copy=False)


def bandpass(x: np.ndarray, fs: float, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``sosfiltfilt``): no delay, so R peaks stay in place."""
    if not 0 < low_hz < high_hz < fs / 2:
        raise EcgError(
            f"data.filter: band {low_hz}-{high_hz} Hz is not inside (0, {fs / 2}) Hz for fs={fs}"
        )
    sos = sps.butter(order, [low_hz, high_hz], btype="band", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, x, axis=0).astype(x.dtype, copy=False)


def apply_filter(x: np.ndarray, fs: float, cfg) -> np.ndarray:
    """Filter a record's signal as configured by ``data.filter`` (see ``FilterConfig``)."""
    kind = cfg.kind
    if "median" in kind:
        x = remove_baseline_median(x, fs, tuple(cfg.median_s))
    if "bandpass" in kind:
        x = bandpass(x, fs, cfg.low_hz, cfg.high_hz, cfg.order)
    return x


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along axis 0 (``scipy.signal.resample_poly``)."""
    if fs_in == fs_out:
        return x
    ratio = rate_ratio(fs_in, fs_out)
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=0).astype(x.dtype)


def resample_samples(samples: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Map annotation sample indices to another sampling rate."""
    if fs_in == fs_out:
        return samples
    return np.round(samples * (fs_out / fs_in)).astype(np.int64)


def rate_ratio(fs_in: float, fs_out: float) -> Fraction:
    """The up/down ratio :func:`resample` uses, so positions map exactly as the signal does."""
    return Fraction(fs_out / fs_in).limit_denominator(1000)


def to_model_rate(samples: np.ndarray, fs_record: float, fs_model: float) -> np.ndarray:
    """Sample positions at a record's own rate -> positions in the signal resampled to the model.

    Uses the ratio of :func:`resample` (``resample_poly`` keeps sample 0 at sample 0), rounded to
    the nearest sample. :func:`to_record_rate` is the way back; a round trip lands within one
    sample of the start at the record's rate.

    Parameters
    ----------
    samples : int array of positions at ``fs_record``
    fs_record : the record's own sampling rate (Hz)
    fs_model : the rate the signal is resampled to (``data.fs``)

    Returns
    -------
    np.ndarray
        int64 positions at ``fs_model``.

    Examples
    --------
    >>> to_model_rate(np.array([0, 128, 256]), 128.0, 360.0)
    array([  0, 360, 720])
    """
    samples = np.asarray(samples, dtype=np.int64)
    if fs_record == fs_model:
        return samples.copy()
    r = rate_ratio(fs_record, fs_model)
    return np.round(samples * (r.numerator / r.denominator)).astype(np.int64)


def to_record_rate(samples: np.ndarray, fs_model: float, fs_record: float) -> np.ndarray:
    """Positions at the model's rate -> positions at the record's own rate (inverse of
    :func:`to_model_rate`), e.g. to write beat decisions as WFDB annotations of the record.

    Examples
    --------
    >>> to_record_rate(np.array([0, 360, 721]), 360.0, 128.0)
    array([  0, 128, 256])
    """
    samples = np.asarray(samples, dtype=np.int64)
    if fs_record == fs_model:
        return samples.copy()
    r = rate_ratio(fs_record, fs_model)
    return np.round(samples * (r.denominator / r.numerator)).astype(np.int64)
