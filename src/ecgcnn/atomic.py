"""Atomic file output: every result file is written to a temp file and renamed into place."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ecgcnn.errors import EcgError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", **open_kw):
    """Open a temp file beside ``path``; on success rename it over ``path``.

    A crash, a full disk or an exception inside the block leaves ``path`` as it was (no
    half-written file under the final name) and no temp file behind. The file gets the usual
    permissions (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EcgError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EcgError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path, "wb") as fh:
        fh.write(data)


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """``numpy.savez`` of ``arrays`` to ``path``, atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "wb") as fh:
        np.savez(fh, **arrays)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves half a file."""
    with atomic_output(path, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
