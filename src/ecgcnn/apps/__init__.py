"""Console scripts: thin ``@hydra.main`` wrappers around plain functions."""

from __future__ import annotations

import os
from pathlib import Path

#: Hydra config directory: ``$ECGCNN_CONFIG_DIR`` (set in the Docker image), else the
#: ``configs/`` folder of the source tree this package was installed from.
CONFIG_DIR = os.environ.get("ECGCNN_CONFIG_DIR") or str(Path(__file__).resolve().parents[3] / "configs")


def output_dir() -> Path:
    """The Hydra run's output directory (we never change the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (``ecgcnn.atomic.write_json``)."""
    from ecgcnn.atomic import write_json as _write

    _write(path, payload)
