"""``ecgcnn-export checkpoint=PATH format=torchscript|onnx``: a checkpoint as a deployable model."""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import ecgcnn.config  # noqa: F401  (registers the other schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir
from ecgcnn.errors import cli_errors
from ecgcnn.export import export_model


# TODO(config.py): move into ecgcnn.config with the other schemas (this module may not edit it).
@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a training checkpoint (best.pt)
    format: str = "torchscript"  # torchscript | onnx


ConfigStore.instance().store(name="base_export", node=ExportConfig)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@cli_errors
def main(cfg: DictConfig) -> None:
    paths = export_model(cfg.checkpoint, output_dir(), cfg.format)
    print(f"{cfg.format} model: {paths['model']}\nmetadata: {paths['meta']}")


if __name__ == "__main__":
    main()
