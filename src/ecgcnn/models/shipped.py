"""The global (inter-patient) model shipped inside the package as package data.

It is a normal training checkpoint (``ecgcnn.training.checkpoint`` format), trained on the
MIT-BIH DS1 records only; ``scripts/benchmark_inter_patient.py --ship`` rebuilds it and its
``MODEL_CARD.md`` beside it.
"""

from __future__ import annotations

from pathlib import Path

from ecgcnn.errors import EcgError

GENERIC_DIR = Path(__file__).resolve().parent / "generic"
CHECKPOINT_NAME = "global_v1.pt"
MODEL_CARD_NAME = "MODEL_CARD.md"


def default_checkpoint() -> Path:
    """Return the path of the shipped global checkpoint.

    Returns
    -------
    pathlib.Path
        ``ecgcnn/models/generic/global_v1.pt`` inside the installed package.

    Raises
    ------
    EcgError
        If the file is missing (a broken install, or a source tree where it was never built).
    """
    path = GENERIC_DIR / CHECKPOINT_NAME
    if not path.is_file():
        raise EcgError(
            f"{path}: shipped global model missing; rebuild it with "
            "scripts/benchmark_inter_patient.py --ship"
        )
    return path


def model_card() -> Path:
    """Return the path of the shipped model's card (``MODEL_CARD.md`` beside the checkpoint)."""
    return GENERIC_DIR / MODEL_CARD_NAME
