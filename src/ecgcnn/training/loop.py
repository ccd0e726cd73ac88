"""The one train/validate loop, shared by ecgcnn-train, ecgcnn-finetune and the zero-shot app.

Read top to bottom: set-up, resume, epochs (train -> validate -> checkpoint -> early stop).
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ecgcnn.atomic import atomic_output
from ecgcnn.data.beats import CLASSES, BeatSet
from ecgcnn.data.dataset import BeatDataset
from ecgcnn.errors import EcgError, check_settings
from ecgcnn.training.augment import augment_batch
from ecgcnn.training.checkpoint import load_checkpoint, save_checkpoint
from ecgcnn.training.losses import build_loss


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EcgError("trainer.device: 'cuda' requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise EcgError(f"trainer.device: unknown device '{name}' (auto | cpu | cuda)")
    return torch.device(name)


def check_training_config(optim_cfg, trainer_cfg) -> None:
    """Refuse out-of-range ``optim`` / ``trainer`` settings (either may be None)."""
    o, t = optim_cfg, trainer_cfg
    checks = []
    if o is not None:
        checks += [
            ("optim.lr", o.lr, o.lr > 0, "> 0"),
            ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
        ]
    if t is not None:
        checks += [
            ("trainer.max_epochs", t.max_epochs, t.max_epochs >= 1, ">= 1"),
            ("trainer.batch_size", t.batch_size, t.batch_size >= 1, ">= 1"),
            ("trainer.num_threads", t.num_threads, t.num_threads >= 1, ">= 1"),
            ("trainer.val_fraction", t.val_fraction, 0 <= t.val_fraction < 1, "in [0, 1)"),
        ]
    check_settings(checks)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def class_weights(y: np.ndarray, mode: str, n_classes: int) -> torch.Tensor | None:
    """Loss weights against class imbalance (SVEB and VEB are rare): inverse or sqrt-inverse
    frequency, normalized so that the average beat weighs 1; absent classes weigh 0."""
    if mode == "none":
        return None
    if mode not in ("inverse", "sqrt"):
        raise EcgError(f"trainer.class_weighting: unknown '{mode}' (none | inverse | sqrt)")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = 1.0 / counts[present]
    if mode == "sqrt":
        w = np.sqrt(w)
    w *= counts.sum() / (w * counts).sum()
    return torch.tensor(w, dtype=torch.float32)


def validation_split(beats: BeatSet, fraction: float, seed: int) -> tuple[BeatSet, BeatSet | None]:
    """Stratified hold-out carved from the training beats only (never from test records)."""
    if fraction <= 0:
        return beats, None
    if not 0 < fraction < 1:
        raise EcgError(f"trainer.val_fraction: must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(beats.y):
        idx = np.flatnonzero(beats.y == c)
        k = round(fraction * len(idx))
        if len(idx) >= 2 and k >= 1:
            val.append(rng.choice(idx, size=k, replace=False))
    if not val:
        return beats, None
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(len(beats), bool)
    mask[val_idx] = False
    return beats.subset(mask), beats.subset(val_idx)


@torch.no_grad()
def predict(
    model: nn.Module, beats: BeatSet | BeatDataset, device: torch.device, batch_size: int = 4096
) -> np.ndarray:
    """Class probabilities (n, K) for every beat, in order."""
    ds = beats if isinstance(beats, BeatDataset) else BeatDataset(beats)
    model.eval()
    out = []
    for i in range(0, len(ds), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(ds)))
        x, rr, _ = ds.batch(idx, device)
        out.append(torch.softmax(model(x, rr).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(CLASSES)), np.float32)


def _optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    opts = {
        "adam": lambda p: torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda p: torch.optim.SGD(
            p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        ),
    }
    if cfg.lr <= 0:
        raise EcgError(f"optim.lr: must be > 0, got {cfg.lr}")
    return opts[cfg.name](model.parameters())


def _scheduler(opt, cfg, max_epochs: int):
    scheds = {
        "none": lambda: None,
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(opt, cfg.gamma),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, max_epochs)),
        "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.gamma, patience=max(1, cfg.step_size // 2)
        ),
    }
    return scheds[cfg.scheduler]()


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    with atomic_output(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def _tensorboard(out_dir: Path):
    """A TensorBoard writer under ``out_dir/tb`` when tensorboard is installed (optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tb"))


def fit(
    model: nn.Module,
    train: BeatSet,
    val: BeatSet | None,
    optim_cfg,
    trainer_cfg,
    out_dir: Path | None = None,
    extra: dict | None = None,
    desc: str = "train",
    val_metric: Callable[[np.ndarray], float] | None = None,
) -> FitResult:
    """Train ``model`` on ``train``, validate on ``val`` each epoch, keep the best weights.

    Parameters
    ----------
    model : a CNN1D (``model_args`` attribute is stored in checkpoints)
    train, val : beats; ``val`` None -> the last epoch is the best
    optim_cfg, trainer_cfg : ``OptimConfig`` / ``TrainerConfig``
    out_dir : where ``best.pt``, ``last.pt`` and ``metrics.csv`` go (None: keep in memory)
    extra : merged into every checkpoint (e.g. ``{"config": …, "data": …}``)
    val_metric : ``val`` probabilities (n, K) -> a score to maximise, used instead of the
        validation loss for keeping the best weights and early stopping (None: the loss)

    Returns
    -------
    FitResult; on return ``model`` holds the best weights.
    """
    tc = trainer_cfg
    if tc.max_epochs < 1 or tc.batch_size < 1:
        raise EcgError(
            f"trainer: max_epochs and batch_size must be >= 1 "
            f"(got {tc.max_epochs}, {tc.batch_size})"
        )
    device = select_device(tc.device)
    torch.set_num_threads(max(1, int(tc.num_threads)))
    torch.set_flush_denormal(True)  # denormal floats (saturated tanh gradients) are slow on x86
    seed_everything(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)  # shuffling + augmentation: resumable
    distributed = dist.is_available() and dist.is_initialized()
    main = is_main_process()

    model.to(device)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    ds = BeatDataset(train)
    val_ds = BeatDataset(val) if val is not None and len(val) else None
    n_classes = len(CLASSES)
    weights = class_weights(train.y, tc.class_weighting, n_classes)
    loss_fn = build_loss(tc.loss, weights.to(device) if weights is not None else None)
    eval_loss = build_loss(tc.loss, None)
    opt = _optimizer(model, optim_cfg)
    sched = _scheduler(opt, optim_cfg, tc.max_epochs)
    use_amp = bool(tc.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sample_w = None
    if tc.balanced_sampling and distributed:
        raise EcgError(
            "trainer.balanced_sampling: not supported with distributed training "
            "(the DistributedSampler draws the batches); use class_weighting"
        )
    if tc.balanced_sampling:
        cw = class_weights(train.y, "inverse", n_classes)
        sample_w = cw[ds.y]

    start_epoch, best, best_epoch, bad_epochs, history = 0, float("inf"), -1, 0, []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    last_path = out_dir / "last.pt" if out_dir else None
    if tc.resume and last_path is not None and last_path.is_file():
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler"):
            sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["rng"]["loop"])
        torch.set_rng_state(ck["rng"]["torch"])
        start_epoch, best, best_epoch = ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"]
        bad_epochs, history = ck["bad_epochs"], list(ck["history"])
        best_state = ck["best_model"]

    tb = _tensorboard(out_dir) if out_dir is not None and main else None
    t0 = time.perf_counter()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, tc.max_epochs):
        # ---- train
        net.train()
        if distributed:
            sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=tc.seed)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
        elif sample_w is not None:
            order = torch.multinomial(sample_w, len(ds), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(ds), generator=gen)
        batches = order.split(tc.batch_size)
        total, seen = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"{desc} {epoch + 1}/{tc.max_epochs}",
            leave=False,
            disable=not (tc.progress and main),
        )
        for idx in bar:
            x, rr, y = ds.batch(idx, device)
            x = augment_batch(x, tc.augment, gen)
            with torch.autocast(device.type, enabled=use_amp):
                loss = loss_fn(net(x, rr), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        row = {
            "epoch": epoch + 1,
            "train_loss": total / max(1, seen),
            "lr": opt.param_groups[0]["lr"],
        }

        # ---- validate (every rank holds the same weights, so every rank agrees on stopping)
        if val_ds is not None:
            probs = predict(model, val_ds, device)
            # log-probabilities are logits up to a per-row constant, which none of the losses sees
            logp = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
            vloss = float(eval_loss(logp, val_ds.y))
            row["val_loss"] = vloss
            row["val_acc"] = float((probs.argmax(1) == val_ds.y.numpy()).mean())
            metric = vloss if val_metric is None else -float(val_metric(probs))
            if val_metric is not None:
                row["val_metric"] = -metric
        else:
            metric = row["train_loss"]
        if sched is not None:
            sched.step(metric) if optim_cfg.scheduler == "plateau" else sched.step()
        improved = metric < best - 1e-6
        if improved:
            best, best_epoch, bad_epochs = metric, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        history.append(row)
        if out_dir is not None and main:
            common = {
                "model_args": model.model_args,
                "classes": list(CLASSES),
                "best_metric": best,
                "best_epoch": best_epoch,
                **(extra or {}),
            }
            if improved:
                save_checkpoint(
                    {**common, "model": best_state, "epoch": epoch}, out_dir / "best.pt"
                )
            save_checkpoint(
                {
                    **common,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "epoch": epoch,
                    "bad_epochs": bad_epochs,
                    "history": history,
                    "best_model": best_state,
                    "rng": {"loop": gen.get_state(), "torch": torch.get_rng_state()},
                },
                last_path,
            )
            _write_metrics_csv(out_dir / "metrics.csv", history)
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(k, v, row["epoch"])
        if (
            val_ds is not None
            and tc.early_stopping_patience > 0
            and bad_epochs >= tc.early_stopping_patience
        ):
            break

    if tb is not None:
        tb.close()
    model.load_state_dict(best_state)
    return FitResult(
        best_metric=float(best),
        best_epoch=best_epoch,
        epochs_run=epoch + 1,
        seconds=time.perf_counter() - t0,
        history=history,
    )
