"""Checkpoints: atomic save, ``weights_only=True`` load, clear errors for bad files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ecgcnn.atomic import atomic_output
from ecgcnn.errors import EcgError

REQUIRED = ("model", "model_args", "classes")


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write ``payload`` to ``path`` via a temp file + rename: a crash (or a full disk) never
    leaves a truncated checkpoint under the final name."""
    with atomic_output(path, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary pickled code runs).

    Raises
    ------
    EcgError naming the file when it is missing, truncated, not a checkpoint, or unsafe.
    """
    path = Path(path)
    if not path.is_file():
        raise EcgError(f"{path}: checkpoint file not found")
    # torch.load warns about what it finds in bad bytes (e.g. "Detected pickle protocol 149"
    # when a garbage file starts with 0x80) before failing: the failure is reported in one
    # line below, so its warnings are dropped; a file that does load gets them back.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 (torch.load raises a dozen types on bad bytes)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EcgError(f"{path}: not a loadable ecgcnn checkpoint ({first[:160]})") from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise EcgError(f"{path}: not an ecgcnn checkpoint (expected keys {', '.join(REQUIRED)})")
    return ckpt
