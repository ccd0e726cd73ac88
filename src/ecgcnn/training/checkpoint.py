"""Checkpoints: atomic save, ``weights_only=True`` load, clear errors for bad files."""

from __future__ import annotations

import os
import warnings
from enum import Enum
from pathlib import Path

import torch

from ecgcnn.atomic import atomic_output
from ecgcnn.errors import EcgError

REQUIRED = ("model", "model_args", "classes")


def _plain(x):
    """``x`` with every config choice (an Enum) as its string value: ``weights_only`` loading
    refuses any class it does not know."""
    if isinstance(x, Enum):
        return str(x.value)
    if type(x) is dict:  # not a state_dict's OrderedDict (its _metadata stays)
        return {_plain(k): _plain(v) for k, v in x.items()}
    if type(x) in (list, tuple):
        return type(x)(_plain(v) for v in x)
    return x


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write ``payload`` to ``path`` via a temp file + rename: a crash (or a full disk) never
    leaves a truncated checkpoint under the final name."""
    with atomic_output(path, "wb") as fh:
        torch.save(_plain(payload), fh)


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


def load_model(path):
    """Rebuild a model from a checkpoint (``weights_only=True``); errors name the file.

    Returns
    -------
    (CNN1D in eval mode, the checkpoint dict)
    """
    from ecgcnn.models import CNN1D

    ck = load_checkpoint(path)
    try:
        model = CNN1D.from_args(ck["model_args"])
        model.load_state_dict(ck["model"])
    except (EcgError, RuntimeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        msg = str(exc).strip().splitlines()[0][:160]
        raise EcgError(f"{path}: checkpoint does not fit its model ({msg})") from None
    model.eval()
    return model, ck


def checkpoint_data_config(ck: dict, data_cfg, source="checkpoint"):
    """The checkpoint's beat settings (windows, filter, leads) with this run's root, cache and
    resampling policy (how to read records is the user's choice, not the model's)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ecgcnn.config import DataConfig

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), ck.get("data") or {})
    except (OmegaConfBaseException, ValueError) as exc:  # unknown keys, bad values, not a dict
        msg = str(exc).strip().splitlines()[0][:160]
        raise EcgError(
            f"{source}: checkpoint data settings do not fit DataConfig ({msg})"
        ) from None
    cfg.root, cfg.cache_dir, cfg.resample = data_cfg.root, data_cfg.cache_dir, data_cfg.resample
    return cfg
