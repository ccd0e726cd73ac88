"""``ecgcnn-kit out=DIR``: build a reference kit (common set, common models, ABS library) once.

ecgcnn-kit out=kits/mitdb                       # from MIT-BIH ($ECGCNN_DATA_DIR)
ecgcnn-kit out=kits/mitdb generic=generic.pt    # with a generic model in its slot
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, string_overrides
from ecgcnn.errors import cli_errors
from ecgcnn.personalize.kit import build_kit


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="kit")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = build_kit(cfg)
    print(f"kit: {out / 'kit.json'}")


if __name__ == "__main__":
    main()
