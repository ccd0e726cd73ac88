"""Common models of the patient-specific protocol: one CNN per input view, trained once on the
common beat set plus every reference patient's first minutes (training beats only, never a
test beat), from which each patient's model is fine-tuned."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ecgcnn.data.beats import BeatSet, plain_channels, select_view
from ecgcnn.personalize.patient_specific import view_data

#: Setting groups of a patient-model config that the common model shares with it.
SHARED_GROUPS = ("data", "model", "split")


def common_config(
    overrides, view: str, minutes: float, epochs: int, num_threads: int = 1, seed: int = 0
) -> DictConfig:
    """The ``ecgcnn-train`` config of one view's common model.

    Parameters
    ----------
    overrides : Hydra overrides of the patient-model config; those of ``data``, ``model`` and
        ``split`` apply to the common model too
    view : input view (``data.beat.template``)
    minutes : every reference patient's first minutes that join the common set
    epochs : training epochs (best-by-validation on a hold-out of those training beats)
    seed : ``trainer.seed`` (initial weights, shuffling, the validation hold-out)
    """
    from ecgcnn.personalize.kit import compose_config

    ft = [o for o in overrides if o.split("=")[0].split(".")[0] in SHARED_GROUPS]
    cfg = compose_config(
        "train",
        [
            "split=patient_specific",
            "train_on=all",
            "trainer.progress=false",
            f"trainer.num_threads={num_threads}",
            f"trainer.max_epochs={epochs}",
            f"trainer.seed={seed}",
            f"split.minutes={minutes}",
            *ft,
        ],
    )
    cfg.data = view_data(cfg.data, view)
    return cfg


def train_common(
    cfg: DictConfig, view: str, beats: dict[str, BeatSet], prepared: str, out_dir: Path
) -> Path:
    """Train one view's common model on ``cfg.split``'s common set + first minutes.

    Parameters
    ----------
    cfg : from :func:`common_config`
    view : the input view; cut from ``beats``, prepared with ``data.beat.template=prepared``
    beats : record -> prepared beats of the split's records
    out_dir : where best.pt (the common model), last.pt and the training summary go

    Returns
    -------
    the path of the common model (``out_dir/best.pt``)
    """
    from ecgcnn.training.train import train

    plain = plain_channels(cfg.data)
    cut = {r: select_view(b, prepared, view, plain) for r, b in beats.items()}
    train(cfg, Path(out_dir), beats=cut)
    return Path(out_dir) / "best.pt"
