"""What a monitor streams: a WFDB record under ``data.root`` or a raw CSV / NumPy file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ecgcnn.data.io import read_record, resolve_root
from ecgcnn.errors import EcgError


def _read_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False)
    else:
        with open(path) as fh:
            first = fh.readline()
        try:  # a header line of column names is skipped, numbers are data
            [float(v) for v in first.replace(";", ",").split(",") if v.strip()]
            skip = 0
        except ValueError:
            skip = 1
        try:
            x = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise EcgError(f"input: {path}: not a numeric CSV ({exc})") from None
    x = np.asarray(x, dtype=np.float32)
    return x[:, None] if x.ndim == 1 else x


def load_input(cfg: DictConfig, model_leads: list[str]):
    """``(name, signal (n, leads) mV, fs, ann_samples | None, ann_symbols | None)``."""
    if (cfg.record is None) == (cfg.input is None):
        raise EcgError("record / input: give exactly one (record=208 or input=ecg.csv fs=360)")
    if cfg.input is not None:
        path = Path(cfg.input)
        if not path.is_file():
            raise EcgError(f"input: {path}: file not found")
        if cfg.fs is None:
            raise EcgError(
                f"fs: required with input={path} (CSV/NumPy files carry no sampling rate)"
            )
        x = _read_array(path)
        cols = list(cfg.columns)
        if len(cols) != len(model_leads):
            raise EcgError(
                f"columns: {cols} gives {len(cols)} lead(s), the model takes "
                f"{len(model_leads)} ({model_leads})"
            )
        bad = [c for c in cols if not -x.shape[1] <= c < x.shape[1]]
        if bad:
            raise EcgError(f"columns: {bad} not in {path} ({x.shape[1]} columns)")
        sig = x[:, cols]
        if not np.all(np.isfinite(sig)):
            raise EcgError(f"input: {path}: NaN or inf samples in columns {cols}")
        return path.stem, sig, float(cfg.fs), None, None
    root = resolve_root(cfg.data.root)
    leads = list(cfg.leads) or list(model_leads)
    if len(leads) != len(model_leads):
        raise EcgError(f"leads: {leads} but the model takes {len(model_leads)} ({model_leads})")
    ann = cfg.data.annotator
    has_ann = bool(ann) and (root / f"{cfg.record}.{ann}").is_file()
    rec = read_record(root, str(cfg.record), leads=leads, annotator=ann if has_ann else None)
    if cfg.fs is not None and float(cfg.fs) != rec.fs:
        raise EcgError(f"fs: {cfg.fs} Hz given, but record {cfg.record} is at {rec.fs} Hz")
    if not has_ann:
        print(f"note: no {root / f'{cfg.record}.{ann}'}: nothing to score against")
        return rec.name, rec.signal, rec.fs, None, None
    return rec.name, rec.signal, rec.fs, rec.ann_samples, rec.ann_symbols
