"""``ecgcnn-download``: fetch MIT-BIH records from PhysioNet into a directory, checksum-verified.

Thin Hydra wrapper around :func:`ecgcnn.data.download.download_mitdb`; the work and its
checks live there.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401 - registers base_download in Hydra's ConfigStore
from ecgcnn.apps import CONFIG_DIR, string_overrides
from ecgcnn.data.download import download_mitdb
from ecgcnn.errors import cli_errors


# An absolute CONFIG_DIR (the package's configs/, or $ECGCNN_CONFIG_DIR).
@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="download")
@cli_errors
def main(cfg: DictConfig) -> dict:
    summary = download_mitdb(
        target=cfg.target,
        records=list(cfg.records) or None,
        base_url=cfg.base_url,
        progress=cfg.progress,
    )
    print(
        f"{summary['target']}: downloaded {len(summary['downloaded'])} file(s) "
        f"({summary['bytes']} bytes), skipped {len(summary['skipped'])} already verified"
    )
    return summary


if __name__ == "__main__":
    main()
