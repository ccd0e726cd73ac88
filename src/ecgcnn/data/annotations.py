"""Beat decisions out as WFDB annotation files, so WFDB's ``bxb`` scores them as EC57 prescribes.

Positions are written at the record's **own** sampling rate (map model-rate positions back with
``preprocess.to_record_rate``), with MIT-BIH symbols (``N S V F Q`` for the AAMI classes, any
other wfdb symbol such as ``~`` allowed) and an annotator name of our own (``ecgcnn``), next to
nothing of the input: the file goes to ``out_dir``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import wfdb

from ecgcnn.data.beats import CLASSES
from ecgcnn.errors import EcgError

#: AAMI class (``ecgcnn.data.beats.CLASSES`` order) -> the MIT-BIH symbol written for it. bxb's
#: ``amap`` reads these back as the same AAMI classes (``S`` is SVPB, ``Q`` unclassifiable).
CLASS_SYMBOLS: dict[str, str] = {"N": "N", "S": "S", "V": "V", "F": "F", "Q": "Q"}

#: Every annotation symbol wfdb can write.
WFDB_SYMBOLS: frozenset[str] = frozenset(
    str(s) for s in wfdb.io.annotation.ann_label_table["symbol"] if str(s).strip()
)

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _write_empty(path: Path, fs: float) -> None:
    """An annotation file without annotations (a record where nothing was detected).

    ``wfdb.wrann`` refuses empty files; this writes what it would write around the annotations:
    the time-resolution note, the end of the special annotations, and the end-of-file word.
    """
    fs_bytes = wfdb.Annotation("x", "x", sample=np.array([0]), symbol=["N"], fs=fs).calc_fs_bytes()
    end_special = [0, 236, 255, 255, 255, 255, 1, 0]  # as in wfdb's Annotation.wr_ann_file
    path.write_bytes(np.concatenate((fs_bytes, end_special, [0, 0])).astype("u1").tobytes())


def class_symbols(y) -> np.ndarray:
    """MIT-BIH symbols for class indices into ``CLASSES`` (0..4 = N, S, V, F, Q).

    Examples
    --------
    >>> class_symbols([0, 2, 1, 4]).tolist()
    ['N', 'V', 'S', 'Q']
    """
    y = np.asarray(y, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise EcgError(
            f"class_symbols: class index out of range 0..{len(CLASSES) - 1} "
            f"(got {int(y.min())}..{int(y.max())})"
        )
    lut = np.array([CLASS_SYMBOLS[c] for c in CLASSES], dtype="<U1")
    return lut[y]


def write_annotations(
    out_dir: str | os.PathLike,
    record_name: str,
    samples,
    symbols,
    fs: float,
    annotator: str = "ecgcnn",
    aux_note: list[str] | None = None,
    subtype=None,
    chan=None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``<out_dir>/<record_name>.<annotator>`` with ``wfdb.wrann``, atomically.

    Parameters
    ----------
    out_dir : directory for the file (created if needed)
    record_name : the record's name, so that WFDB tools find the file beside the record
    samples : int array of positions **at the record's own rate**; any order (sorted here)
    symbols : MIT-BIH symbols, same length (see :func:`class_symbols` for class indices)
    fs : the record's sampling rate, stored in the file (WFDB's time resolution)
    annotator : the file extension (letters, digits, underscore)
    aux_note, subtype, chan : optional per-annotation fields, same length, as in ``wfdb.wrann``
    overwrite : replace an existing file (default: refuse)

    Returns
    -------
    Path
        The file written.

    Examples
    --------
    >>> write_annotations("out", "100", [370, 662], ["N", "V"], 360.0)  # doctest: +SKIP
    PosixPath('out/100.ecgcnn')
    """
    if not _NAME.match(annotator or ""):
        raise EcgError(f"annotator '{annotator}': use letters, digits and '_' only")
    if not record_name or "/" in record_name or os.sep in record_name:
        raise EcgError(f"record_name '{record_name}': a record name, not a path")
    out_dir = Path(out_dir)
    path = out_dir / f"{record_name}.{annotator}"
    if path.exists() and not overwrite:
        raise EcgError(f"{path}: already exists (pass overwrite=True to replace it)")
    if not fs or fs <= 0:
        raise EcgError(f"{path}: fs must be > 0 Hz, got {fs}")
    s = np.asarray(samples)
    if s.ndim != 1 or (
        s.size and not np.issubdtype(s.dtype, np.integer) and not np.array_equal(s, np.round(s))
    ):
        raise EcgError(f"{path}: samples must be a 1-D array of whole sample numbers")
    s = s.astype(np.int64)
    sym = [str(v) for v in np.asarray(symbols).ravel().tolist()]
    fields = {"aux_note": aux_note, "subtype": subtype, "chan": chan}
    for name, values in [("symbols", sym)] + [(k, v) for k, v in fields.items() if v is not None]:
        if len(values) != s.size:
            raise EcgError(f"{path}: {len(values)} {name} for {s.size} samples")
    if s.size and s.min() < 0:
        raise EcgError(f"{path}: negative sample position {int(s.min())}")
    unknown = sorted(set(sym) - WFDB_SYMBOLS)
    if unknown:
        raise EcgError(f"{path}: not MIT-BIH annotation symbols: {', '.join(unknown)}")
    order = np.argsort(s, kind="stable")
    kw = {
        k: [v[i] for i in order] if k == "aux_note" else np.asarray(v)[order]
        for k, v in fields.items()
        if v is not None
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{path.name}."))
    except OSError as exc:
        raise EcgError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        # wrann names the file after record_name itself, so it writes into a private temp dir
        # and the finished file is renamed into place (no half-written file under the name).
        if s.size:
            wfdb.wrann(
                record_name,
                annotator,
                s[order],
                symbol=[sym[i] for i in order],
                fs=float(fs),
                write_dir=str(tmp),
                **kw,
            )
        else:
            _write_empty(tmp / path.name, float(fs))
        if path.exists() and not overwrite:
            raise EcgError(f"{path}: already exists (pass overwrite=True to replace it)")
        os.replace(tmp / path.name, path)
    except OSError as exc:
        raise EcgError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:  # wfdb's own field checks
        raise EcgError(f"{path}: wfdb.wrann refused the annotations ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
