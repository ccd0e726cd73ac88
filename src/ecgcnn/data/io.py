"""Reading MIT-BIH style WFDB records (signal + reference annotations) with wfdb.

Every failure a user can cause (missing file, truncated ``.dat``, a header that does not
parse, NaN or flat signal, no beats) is raised as :class:`ecgcnn.errors.EcgError` with a
message that names the record file and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb

from ecgcnn.errors import EcgError

#: All 48 records of the MIT-BIH Arrhythmia Database 1.0.0.
MITDB_RECORDS: tuple[str, ...] = (
    "100",
    "101",
    "102",
    "103",
    "104",
    "105",
    "106",
    "107",
    "108",
    "109",
    "111",
    "112",
    "113",
    "114",
    "115",
    "116",
    "117",
    "118",
    "119",
    "121",
    "122",
    "123",
    "124",
    "200",
    "201",
    "202",
    "203",
    "205",
    "207",
    "208",
    "209",
    "210",
    "212",
    "213",
    "214",
    "215",
    "217",
    "219",
    "220",
    "221",
    "222",
    "223",
    "228",
    "230",
    "231",
    "232",
    "233",
    "234",
)
#: Paced records, excluded from the AAMI 44-record protocol.
PACED_RECORDS: tuple[str, ...] = ("102", "104", "107", "217")

#: Environment variable that points at a directory of WFDB records.
DATA_ENV = "ECGCNN_DATA_DIR"


class MissingLeadError(EcgError):
    """A requested lead is not in the record (e.g. MLII in the paced records 102 and 104)."""


@dataclass
class Record:
    """One ECG record: signal in mV for the requested leads plus reference annotations.

    Attributes
    ----------
    name : record name, e.g. ``"100"``
    signal : float32 array (n_samples, n_leads) in mV, leads in the requested order
    fs : sampling frequency in Hz
    leads : lead names, same order as ``signal`` columns
    ann_samples : int64 array of annotation sample indices (empty when none were read)
    ann_symbols : array of annotation symbols (str), same length as ``ann_samples``
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: list[str]
    ann_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ann_symbols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<U2"))

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])


def resolve_root(root: str | os.PathLike | None) -> Path:
    """Directory of WFDB records: ``root`` if given, else ``$ECGCNN_DATA_DIR``, else ``data/mitdb``."""
    if root in (None, ""):
        root = os.environ.get(DATA_ENV) or "data/mitdb"
    return Path(root).expanduser().resolve()


def _header(root: Path, name: str) -> wfdb.Record:
    hea = root / f"{name}.hea"
    if not hea.is_file():
        if name not in MITDB_RECORDS and not any(root.glob("*.hea")):
            raise EcgError(f"{hea}: record '{name}' not found and {root} holds no WFDB records")
        raise EcgError(f"{hea}: header file not found (unknown record '{name}' or missing file)")
    try:
        return wfdb.rdheader(str(root / name))
    except Exception as exc:  # noqa: BLE001  (wfdb raises bare ValueError/IndexError)
        raise EcgError(f"{hea}: header does not parse ({type(exc).__name__}: {exc})") from None


#: ``data.leads`` entry meaning "the record's next lead not named in the list" (MIT-BIH's second
#: lead is V1 in most records, V2, V4 or V5 in some).
OTHER_LEAD = "other"


def read_record(
    root: str | os.PathLike,
    name: str,
    leads: list[str] | tuple[str, ...] = ("MLII",),
    annotator: str | None = "atr",
    expected_fs: float | None = None,
) -> Record:
    """Read a record's leads (by name, never by position) and its annotations.

    Parameters
    ----------
    root : directory holding ``name.hea``, ``name.dat`` and ``name.<annotator>``
    name : record name
    leads : lead names to return, in this order
    annotator : annotation file extension, or None to read no annotations
    expected_fs : when given, a record at another rate raises unless the caller resamples;
        pass None to accept any rate (the caller then resamples, see ``preprocess.resample``)

    Returns
    -------
    Record
    """
    root = Path(root)
    header = _header(root, name)
    named = [lead for lead in leads if lead != OTHER_LEAD]
    spare = [lead for lead in header.sig_name if lead not in named]
    leads = [lead if lead != OTHER_LEAD else (spare.pop(0) if spare else lead) for lead in leads]
    missing = [lead for lead in leads if lead not in header.sig_name]
    if missing:
        raise MissingLeadError(
            f"{root / name}.hea: record {name} has no lead {', '.join(missing)} "
            f"(leads: {', '.join(header.sig_name)})"
        )
    if expected_fs is not None and float(header.fs) != float(expected_fs):
        raise EcgError(
            f"{root / name}.hea: sampling rate {header.fs} Hz, expected {expected_fs} Hz "
            "(set data.resample=true to resample)"
        )
    for fname in set(header.file_name):
        if not (root / fname).is_file():
            raise EcgError(f"{root / fname}: signal file of record {name} not found")
    _check_dat_sizes(root, name, header)
    idx = [header.sig_name.index(lead) for lead in leads]
    try:
        # Digital read + our own float32 conversion is ~3x faster than wfdb's float64 physical read.
        rec = wfdb.rdrecord(str(root / name), physical=False, return_res=16, channels=idx)
    except Exception as exc:  # noqa: BLE001  (wfdb: any error type on a damaged .dat)
        raise EcgError(
            f"{root / header.file_name[0]}: signal file does not read ({type(exc).__name__}: {exc})"
        ) from None
    d = rec.d_signal
    if d is None or d.shape[0] != header.sig_len:
        got = 0 if d is None else d.shape[0]
        raise EcgError(
            f"{root / header.file_name[0]}: truncated signal file, {got} of {header.sig_len} "
            "samples present"
        )
    gain = np.asarray(rec.adc_gain, dtype=np.float32)
    gain = np.where(gain == 0, 200.0, gain).astype(np.float32)  # WFDB's default gain when 0
    nan_code = wfdb.io._signal.INVALID_SAMPLE_VALUE.get(str(rec.fmt[0]))
    invalid = d == nan_code if nan_code is not None else np.zeros(d.shape, dtype=bool)
    signal = (d.astype(np.float32) - np.asarray(rec.baseline, dtype=np.float32)) / gain
    if invalid.any():
        signal[invalid] = np.nan
    check_signal(signal, f"{root / header.file_name[0]}", leads)

    out = Record(name=name, signal=signal, fs=float(header.fs), leads=list(leads))
    if annotator:
        ann_path = root / f"{name}.{annotator}"
        if not ann_path.is_file():
            raise EcgError(f"{ann_path}: annotation file not found")
        try:
            ann = wfdb.rdann(str(root / name), annotator)
        except Exception as exc:  # noqa: BLE001  (wfdb: any error type on a damaged file)
            raise EcgError(
                f"{ann_path}: annotation file does not read ({type(exc).__name__}: {exc})"
            ) from None
        out.ann_samples = np.asarray(ann.sample, dtype=np.int64)
        out.ann_symbols = np.asarray(ann.symbol, dtype="<U2")
    return out


#: Bytes per sample of the WFDB signal formats (format 212 packs two 12-bit samples in 3 bytes).
_BYTES_PER_SAMPLE = {
    "8": 1,
    "16": 2,
    "24": 3,
    "32": 4,
    "61": 2,
    "80": 1,
    "160": 2,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}


def _check_dat_sizes(root: Path, name: str, header) -> None:
    """A truncated ``.dat`` is reported as such, before wfdb fails on it obscurely."""
    per_file: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for fname, fmt, off in zip(
        header.file_name, header.fmt, header.byte_offset or [None] * len(header.fmt)
    ):
        per_file[fname] = per_file.get(fname, 0.0) + _BYTES_PER_SAMPLE.get(str(fmt), 0)
        offsets[fname] = int(off or 0)
    for fname, bps in per_file.items():
        expected = offsets[fname] + int(np.ceil(bps * header.sig_len))
        size = (root / fname).stat().st_size
        if size < expected:
            got = int((size - offsets[fname]) / bps) if bps else 0
            raise EcgError(
                f"{root / fname}: truncated signal file, {size} of {expected} bytes "
                f"(about {got} of {header.sig_len} samples) present"
            )


def check_signal(signal: np.ndarray, where: str, leads: list[str] | tuple[str, ...]) -> None:
    """Refuse NaN and flat-line signals: they would train and score silently on garbage."""
    for j, lead in enumerate(leads):
        x = signal[:, j]
        n_nan = int(np.isnan(x).sum())
        if n_nan:
            raise EcgError(f"{where}: lead {lead} has {n_nan} NaN/invalid samples")
        if x.size == 0 or float(np.ptp(x)) < 1e-6:
            raise EcgError(f"{where}: lead {lead} is a flat line (no signal)")


def read_records_list(root: str | os.PathLike) -> list[str]:
    """Record names from the ``RECORDS`` file of a PhysioNet-style directory."""
    path = Path(root) / "RECORDS"
    if not path.is_file():
        raise EcgError(f"{path}: RECORDS file not found")
    return path.read_text().split()
