"""Training a CNN on a split's training beats (``ecgcnn-train``; also under ``torchrun``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ecgcnn.atomic import write_json
from ecgcnn.config import check_config
from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.data.cache import load_beats
from ecgcnn.data.splits import patient_specific, split_records
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model, count_parameters, flops_per_beat
from ecgcnn.training.loop import fit, is_main_process, seed_everything, validation_split

log = logging.getLogger(__name__)


def check_split_records(data_cfg: DictConfig, records) -> None:
    """Refuse split records outside a non-empty ``data.records``: the split names what is read,
    so a ``data.records`` that excludes them would otherwise be silently ignored."""
    allowed = [str(r) for r in data_cfg.records]
    outside = [str(r) for r in records if str(r) not in allowed]
    if allowed and outside:
        raise EcgError(
            f"data.records: the split needs records {outside}, which are not in "
            f"data.records {allowed} (set data.records=[] to allow every record)"
        )


def training_beats(cfg: DictConfig, beats: dict[str, BeatSet] | None = None) -> BeatSet:
    """The beats a split trains on: DS1 (inter-patient) or the common set [+ first minutes].
    ``beats``: record -> beats already prepared with ``cfg.data`` (loaded when None)."""
    train_recs, _ = split_records(cfg.split)
    check_split_records(cfg.data, train_recs)
    if beats is None:
        beats = load_beats(cfg.data, records=train_recs).beats
    if cfg.split.name == "inter_patient":
        return BeatSet.concat([beats[r] for r in cfg.split.train_records])
    common, patients = patient_specific(beats, cfg.split, cfg.data.fs)
    if cfg.train_on == "common":
        return common
    return BeatSet.concat([common] + [p.own_train for p in patients.values()])


def model_for(cfg: DictConfig, beats: BeatSet) -> torch.nn.Module:
    in_ch, length = beats.x.shape[1], beats.x.shape[2]
    return build_model(cfg.model, in_ch, length, len(RR_FEATURES), len(CLASSES))


def _init_distributed(device: str) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device == "cuda" and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def train(cfg: DictConfig, out_dir: Path, beats: dict[str, BeatSet] | None = None) -> dict:
    """Train on ``cfg.split``'s training beats; write best.pt, last.pt, metrics.csv,
    train_summary.json into ``out_dir`` (rank 0 only). Returns the summary. ``beats``: record ->
    beats prepared with ``cfg.data`` (read from the cache when None)."""
    check_config(cfg)
    started = _init_distributed(cfg.trainer.device)
    try:
        beats = training_beats(cfg, beats)
        train_set, val_set = validation_split(beats, cfg.trainer.val_fraction, cfg.trainer.seed)
        # The initial weights draw from the global RNG: seed it here, or they depend on whatever
        # ran before in this process (another run, a cache miss) and "same seed" means nothing.
        seed_everything(cfg.trainer.seed)
        model = model_for(cfg, beats)
        n_params = count_parameters(model)
        flops = flops_per_beat(model, beats.x.shape[1], beats.x.shape[2], len(RR_FEATURES))
        if is_main_process():
            print(
                f"model {cfg.model.name}: {n_params:,} parameters, {flops:,} FLOPs/beat; "
                f"training on {len(train_set):,} beats {train_set.counts()}, "
                f"validating on {len(val_set) if val_set is not None else 0:,}"
            )
        extra = {
            "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
            "data": OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True),
            "rr_features": list(RR_FEATURES),
        }
        res = fit(
            model,
            train_set,
            val_set,
            cfg.optim,
            cfg.trainer,
            out_dir=Path(out_dir),
            extra=extra,
            desc="train",
        )
        summary = {
            "model": cfg.model.name,
            "parameters": n_params,
            "flops_per_beat": flops,
            "split": cfg.split.name,
            "train_beats": len(train_set),
            "train_counts": train_set.counts(),
            "val_beats": len(val_set) if val_set is not None else 0,
            "best_epoch": res.best_epoch,
            "best_val_loss": res.best_metric,
            "epochs_run": res.epochs_run,
            "seconds": round(res.seconds, 3),
            "seconds_per_epoch": round(res.seconds / max(1, len(res.history)), 3),
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        }
        if is_main_process():
            write_json(Path(out_dir) / "train_summary.json", summary)
        summary["state_dict"] = model.state_dict()
        return summary
    finally:
        if started:
            dist.destroy_process_group()
