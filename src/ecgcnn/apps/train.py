"""``ecgcnn-train``: train a CNN on a split's training beats (also under ``torchrun``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import cli_errors
from ecgcnn.training.loop import is_main_process
from ecgcnn.training.train import check_split_records, train, training_beats  # noqa: F401


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    s = train(cfg, out)
    if is_main_process():
        print(
            f"best epoch {s['best_epoch']} (val loss {s['best_val_loss']:.4f}), "
            f"{s['seconds_per_epoch']} s/epoch; checkpoint: {out / 'best.pt'}"
        )


if __name__ == "__main__":
    main()
