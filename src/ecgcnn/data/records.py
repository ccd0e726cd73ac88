"""Records from anywhere: WFDB at any rate and lead names, EDF/EDF+ (edfio), CSV.

One reader per format, all returning :class:`ecgcnn.data.io.Record` at the record's **own**
sampling rate (resample with ``preprocess.resample`` and map positions with
``preprocess.to_model_rate`` / ``to_record_rate``). WFDB records are read by
:func:`ecgcnn.data.io.read_record`; this module only chooses the leads and the labels.

Every bad input (missing file, unknown extension, NaN in a CSV, a rate below ``min_fs``, a lead
the record lacks, labels outside the record, ...) raises :class:`ecgcnn.errors.EcgError` with
one line naming the file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import wfdb

from ecgcnn.data import io
from ecgcnn.data.io import OTHER_LEAD, MissingLeadError, Record
from ecgcnn.errors import EcgError

#: Every MIT-BIH annotation symbol wfdb knows (beats, rhythm, noise, notes): the EDF+
#: annotation texts read as labels.
MITBIH_SYMBOLS: frozenset[str] = frozenset(
    str(s) for s in wfdb.io.annotation.ann_label_table["symbol"] if str(s).strip()
)

#: EDF physical dimensions we convert to mV (case-insensitive); an empty dimension is taken as mV.
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "": 1.0}


def load_record(
    path: str | os.PathLike,
    *,
    leads: Sequence[str] = ("MLII",),
    lead: str | int | None = None,
    fs: float | None = None,
    labels: str | os.PathLike | None = None,
    annotator: str | None = "atr",
    min_fs: float = 100.0,
) -> Record:
    """Read a record in any supported format, at its own rate, with the leads the model wants.

    Parameters
    ----------
    path : a WFDB record path without extension (``/dir/100``; ``/dir/100.hea`` also works), an
        ``.edf`` file (EDF or EDF+), or a ``.csv`` of samples in mV (one column per lead, an
        optional header line of lead names; columns without a header are named ``0``, ``1``, ...)
    leads : lead names the model wants, in order (``"other"``: the record's next unnamed lead)
    lead : the record's lead (name or 0-based index) to use in place of ``leads[0]``, e.g.
        ``"ECG1"`` for SVDB or ``"II"`` for INCART. Needed when the record lacks ``leads[0]``;
        when given it is used even if the record has ``leads[0]``.
    fs : sampling rate in Hz; required for CSV, checked against the file for WFDB and EDF
    labels : CSV of ``sample,symbol`` rows (samples at the record's own rate, MIT-BIH
        symbols, an optional header line), used instead of the file's own annotations
    annotator : WFDB annotation file extension read when the file exists (a missing file gives
        no labels); None reads no labels from any format
    min_fs : lowest accepted sampling rate in Hz

    Returns
    -------
    Record
        ``signal`` float32 (n, len(leads)) in mV at ``fs``; ``leads`` the record's own names of
        the chosen leads; ``ann_samples``/``ann_symbols`` the labels (empty when there are none).

    Examples
    --------
    >>> rec = load_record("/data/svdb/800", lead="ECG1")  # doctest: +SKIP
    >>> rec.fs, rec.leads  # doctest: +SKIP
    (128.0, ['ECG1'])
    >>> rec = load_record("holter.edf", leads=["MLII"], lead="ECG II")  # doctest: +SKIP
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix in (".hea", ".dat") or (suffix not in (".edf", ".csv") and _wfdb_header(p)):
        rec = _load_wfdb(
            p.with_suffix("") if suffix in (".hea", ".dat") else p, leads, lead, fs, annotator
        )
    elif suffix == ".edf":
        rec = _load_edf(p, leads, lead, fs, annotator is not None)
    elif suffix == ".csv":
        rec = _load_csv(p, leads, lead, fs)
    elif p.exists():
        raise EcgError(
            f"{p}: unknown record format '{p.suffix}' (expected a WFDB record name "
            "without extension or .hea, an .edf or a .csv file)"
        )
    else:
        raise EcgError(f"{p}.hea: record not found (nor {p.name} as an .edf or .csv file)")
    if rec.fs < min_fs:
        raise EcgError(
            f"{p}: sampling rate {rec.fs:g} Hz is below the {min_fs:g} Hz this pipeline accepts"
        )
    if labels is not None:
        rec.ann_samples, rec.ann_symbols = read_labels_csv(labels)
    elif annotator is None:
        rec.ann_samples = np.zeros(0, dtype=np.int64)
        rec.ann_symbols = np.zeros(0, dtype="<U2")
    bad = (rec.ann_samples < 0) | (rec.ann_samples >= rec.n_samples)
    if bad.any():
        src = labels if labels is not None else p
        first = int(rec.ann_samples[bad][0])
        raise EcgError(
            f"{src}: {int(bad.sum())} labels outside the record's {rec.n_samples} "
            f"samples (first at sample {first}; samples are at the record's own "
            f"rate, {rec.fs:g} Hz)"
        )
    return rec


def _wfdb_header(p: Path) -> bool:
    return Path(f"{p}.hea").is_file()


def choose_leads(
    available: Sequence[str], leads: Sequence[str], lead: str | int | None, where: str
) -> list[str]:
    """The record's lead names to read for the wanted ``leads`` (see :func:`load_record`).

    Raises
    ------
    MissingLeadError
        When a wanted lead is not in ``available`` and ``lead`` does not choose one, or when
        ``lead`` names no lead of the record; the message lists the record's leads.
    """
    available = [str(a) for a in available]
    listing = ", ".join(available) or "none"
    wanted = [str(w) for w in leads]
    if not wanted:
        raise EcgError(f"{where}: no lead wanted (leads= is empty)")
    if lead is not None:
        if isinstance(lead, str) and lead not in available and lead.strip().isdigit():
            lead = int(lead)
        if isinstance(lead, int) and not isinstance(lead, bool):
            if not 0 <= lead < len(available):
                raise MissingLeadError(f"{where}: lead={lead} is out of range (leads: {listing})")
            lead = available[lead]
        if lead not in available:
            raise MissingLeadError(f"{where}: no lead {lead} (leads: {listing})")
        wanted[0] = lead
    named = [w for w in wanted if w != OTHER_LEAD]
    spare = [a for a in available if a not in named]
    chosen = [w if w != OTHER_LEAD else (spare.pop(0) if spare else w) for w in wanted]
    missing = [c for c in chosen if c not in available]
    if missing:
        hint = (
            f"choose one with lead=NAME|INDEX (e.g. lead={available[0]})"
            if lead is None and missing[0] == chosen[0] and available
            else "the record has too few leads"
        )
        raise MissingLeadError(f"{where}: no lead {', '.join(missing)} (leads: {listing}); {hint}")
    return chosen


def _check_fs(where: Path, file_fs: float, fs: float | None) -> None:
    if fs is not None and float(fs) != float(file_fs):
        raise EcgError(f"{where}: sampling rate is {file_fs:g} Hz, not the fs={fs:g} given")


def _load_wfdb(p: Path, leads, lead, fs, annotator) -> Record:
    root, name = p.parent, p.name
    header = io._header(root, name)
    chosen = choose_leads(header.sig_name, leads, lead, f"{root / name}.hea")
    _check_fs(Path(f"{p}.hea"), float(header.fs), fs)
    ann = annotator if annotator and (root / f"{name}.{annotator}").is_file() else None
    return io.read_record(root, name, leads=chosen, annotator=ann)


def _load_edf(p: Path, leads, lead, fs, with_labels: bool) -> Record:
    import edfio  # imported here: only EDF input needs it

    if not p.is_file():
        raise EcgError(f"{p}: EDF file not found")
    try:
        edf = edfio.read_edf(p)
        signals = list(edf.signals)
        annotations = list(edf.annotations) if with_labels else []
    except Exception as exc:  # noqa: BLE001  (edfio: any error type on a damaged file)
        raise EcgError(f"{p}: EDF file does not read ({type(exc).__name__}: {exc})") from None
    names = [s.label.strip() for s in signals]
    chosen = choose_leads(names, leads, lead, str(p))
    picked = [signals[names.index(c)] for c in chosen]
    rates = sorted({float(s.sampling_frequency) for s in picked})
    if len(rates) > 1:
        desc = ", ".join(f"{c} {float(s.sampling_frequency):g} Hz" for c, s in zip(chosen, picked))
        raise EcgError(f"{p}: the chosen signals have different sampling rates ({desc})")
    rate = rates[0]
    _check_fs(p, rate, fs)
    columns = []
    for c, s in zip(chosen, picked):
        unit = s.physical_dimension.strip()
        scale = _TO_MV.get(unit.lower())
        if scale is None:
            raise EcgError(f"{p}: signal {c} is in '{unit}', not a voltage (mV, uV or V)")
        columns.append(np.asarray(s.data, dtype=np.float64) * scale)
    signal = np.stack(columns, axis=1).astype(np.float32)
    io.check_signal(signal, str(p), chosen)
    rec = Record(name=p.stem, signal=signal, fs=rate, leads=chosen)
    beats = [(a.onset, a.text.strip()) for a in annotations if a.text.strip() in MITBIH_SYMBOLS]
    if beats:
        rec.ann_samples = np.round(np.array([b[0] for b in beats]) * rate).astype(np.int64)
        rec.ann_symbols = np.array([b[1] for b in beats], dtype="<U2")
        order = np.argsort(rec.ann_samples, kind="stable")
        rec.ann_samples, rec.ann_symbols = rec.ann_samples[order], rec.ann_symbols[order]
    return rec


def _header_row(first: list[str]) -> bool:
    try:
        [float(f) for f in first]
    except ValueError:
        return True
    return False


def _load_csv(p: Path, leads, lead, fs) -> Record:
    if not p.is_file():
        raise EcgError(f"{p}: CSV file not found")
    if fs is None:
        raise EcgError(f"{p}: a CSV of samples carries no sampling rate; pass fs= (Hz)")
    with open(p, newline="") as fh:
        first = next(csv.reader(fh), [])
    first = [f.strip() for f in first]
    if not first:
        raise EcgError(f"{p}: empty CSV file")
    has_header = _header_row(first)
    try:
        data = np.loadtxt(p, delimiter=",", skiprows=int(has_header), dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise EcgError(f"{p}: CSV does not parse as numbers ({exc})") from None
    names = first if has_header else [str(j) for j in range(data.shape[1])]
    if data.shape[0] == 0:
        raise EcgError(f"{p}: CSV holds no samples")
    if len(names) != data.shape[1]:
        raise EcgError(f"{p}: header names {len(names)} columns, the rows have {data.shape[1]}")
    finite = np.isfinite(data)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise EcgError(
            f"{p}: {int((~finite).sum())} NaN/inf samples (first at data row "
            f"{int(row) + 1}, column {names[col]})"
        )
    chosen = choose_leads(names, leads, lead, str(p))
    signal = data[:, [names.index(c) for c in chosen]].astype(np.float32)
    io.check_signal(signal, str(p), chosen)
    return Record(name=p.stem, signal=signal, fs=float(fs), leads=chosen)


def read_labels_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Beat labels from a CSV of ``sample,symbol`` rows (an optional header line).

    Returns
    -------
    samples : int64 array, sorted
    symbols : str array (MIT-BIH symbols), same order
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise EcgError(f"{path}: labels file not found")
    samples, symbols = [], []
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            row = [f.strip() for f in row]
            if not row or not any(row):
                continue
            if len(row) != 2:
                raise EcgError(f"{path}: line {i} has {len(row)} fields, expected sample,symbol")
            try:
                s = int(row[0])
            except ValueError:
                if i == 1:  # a header line
                    continue
                raise EcgError(f"{path}: line {i}: sample '{row[0]}' is not an integer") from None
            if row[1] not in MITBIH_SYMBOLS:
                raise EcgError(f"{path}: line {i}: '{row[1]}' is not a MIT-BIH annotation symbol")
            samples.append(s)
            symbols.append(row[1])
    order = np.argsort(np.asarray(samples, dtype=np.int64), kind="stable")
    return (np.asarray(samples, dtype=np.int64)[order], np.asarray(symbols, dtype="<U2")[order])
