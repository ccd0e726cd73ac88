"""Noise for robustness tests: the MIT-BIH Noise Stress Test (``nst``) and its noise records."""

from ecgcnn.noise.nst import (
    NOISE_TYPES,
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

__all__ = [
    "NOISE_TYPES",
    "NSTDB_ENV",
    "added_snr",
    "masked_noise_size",
    "mix",
    "noise_gain",
    "noise_size",
    "noise_stream",
    "noisy_record",
    "nst_mask",
    "qrs_size",
    "read_noise",
    "resolve_noise_root",
    "snr_db",
    "synth_em",
    "write_wfdb",
]
