"""Thin torch view of a ``BeatSet``."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ecgcnn.data.beats import BeatSet


class BeatDataset(Dataset):
    """Tensors of a BeatSet held in memory; ``__getitem__`` returns ``(x, rr, y)``.

    The training loop slices ``tensors`` with whole index batches (one gather per batch): at
    a few thousand parameters per model, per-item Python calls would cost more than the model.
    """

    def __init__(self, beats: BeatSet):
        self.x = torch.from_numpy(beats.x).float()  # (n, C, T)
        self.rr = torch.from_numpy(beats.rr).float()  # (n, n_rr)
        self.y = torch.from_numpy(beats.y).long()  # (n,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i):
        return self.x[i], self.rr[i], self.y[i]

    def batch(self, idx: torch.Tensor, device: torch.device):
        return self.x[idx].to(device), self.rr[idx].to(device), self.y[idx].to(device)
