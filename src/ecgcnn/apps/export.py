"""``ecgcnn-export checkpoint=PATH format=torchscript|onnx``: a checkpoint as a deployable model."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir
from ecgcnn.errors import cli_errors
from ecgcnn.export import export_model


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@cli_errors
def main(cfg: DictConfig) -> None:
    paths = export_model(cfg.checkpoint, output_dir(), cfg.format)
    print(f"{cfg.format} model: {paths['model']}\nmetadata: {paths['meta']}")


if __name__ == "__main__":
    main()
