"""Console scripts: thin ``@hydra.main`` wrappers around plain functions."""

from __future__ import annotations

from pathlib import Path

from ecgcnn.atomic import write_json  # noqa: F401  (re-exported for the apps)
from ecgcnn.config import CONFIG_DIR  # noqa: F401


def output_dir() -> Path:
    """The Hydra run's output directory (we never change the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
