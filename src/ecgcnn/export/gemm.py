"""GEMM runtime: the trained CNN rewritten as a few large matrix products (CPU inference).

Why. The default model's first convolution has 2 input channels and a 15-tap kernel: 30
multiply-adds per output, far too little work per call for oneDNN's direct convolution,
which runs it at a fraction of the machine's GEMM speed (it is ~60 % of the eager model's
time). Written as a *block-Toeplitz* matrix product, the same convolution becomes one dense
GEMM with a useful shape:

* the padded input is cut into overlapping blocks, each covering ``P`` consecutive output
  positions (``P = m * pool``, a whole number of pooling windows) plus the kernel's reach;
* one matrix ``(C_in * span, P * C_out)`` maps a block to its ``P x C_out`` outputs, its
  columns ordered (position, channel), so that the product of all blocks is already the
  channels-last layout ``(B, T, C)`` that pooling and the next layer read.

The matrix holds zeros outside the kernel's band (``span / K`` times the convolution's own
multiply-adds, ~1.3x for ``P = 6``), but the GEMM runs near the machine's peak instead of at a
fraction of it. Later convolutions (many input channels) already suit oneDNN; they run as
``conv2d`` on channels-last tensors, which skips the layout reorders of the ``(B, C, T)``
path. Pooling runs before the activation as in :class:`~ecgcnn.export.FusedCNN1D`, the first
FC layer's columns are permuted to the ``(T, C)`` flatten order, and batches are processed in
chunks small enough for the intermediates to stay in cache.

Between the two products sit memory-bound passes (the input's block copy; bias, pooling and
activation of each layer's output). With ``native`` kernels (:mod:`ecgcnn.export.native`) each
runs as one fused pass that reads its input once; without them, as ATen ops (slower, same
result).

Only arithmetic order changes: logits agree with the source model within float rounding
(tests bound it by 1e-5). Models this layout does not cover (overlapping or average pooling
before a non-monotonic activation, dilation) are refused by :func:`gemm_supported`; callers
fall back to the fused model.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ecgcnn.errors import EcgError
from ecgcnn.export.native import Kernels, load_kernels
from ecgcnn.export.runtime import FusedCNN1D

#: Output positions per Toeplitz block, before rounding to whole pooling windows. Small
#: blocks waste fewer zeros; too small and the GEMM gets narrow (6 was fastest on 2 cores).
BLOCK_POSITIONS = 6
#: Beats per internal chunk: keeps the first layer's output (B x 126 x 32 floats) in cache.
CHUNK = 1024


class _Block(NamedTuple):
    """One conv block: ``pool_first`` is max pooling then a non-decreasing activation (see
    :class:`~ecgcnn.export.FusedCNN1D`); otherwise the activation, then ``kind`` pooling of
    ``pool`` samples (1: none)."""

    conv: nn.Conv1d
    pool: int
    kind: str  # max | avg
    pool_first: bool
    act: nn.Module


def _parse_block(block: nn.Sequential) -> _Block | None:
    """The :class:`_Block` of a fused block, or None when this runtime cannot express it."""
    conv, rest = block[0], list(block)[1:]
    if not isinstance(conv, nn.Conv1d) or conv.dilation[0] != 1 or conv.groups != 1:
        return None
    if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
        return None
    pools = [m for m in rest if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d))]
    acts = [m for m in rest if m not in pools]
    if len(acts) != 1 or len(pools) > 1:
        return None
    size = 1
    if pools:
        p = pools[0]
        k = p.kernel_size if isinstance(p.kernel_size, int) else p.kernel_size[0]
        s = p.stride if isinstance(p.stride, int) else p.stride[0]
        pad = p.padding if isinstance(p.padding, int) else p.padding[0]
        if k != s or pad != 0 or p.ceil_mode or (isinstance(p, nn.MaxPool1d) and p.dilation != 1):
            return None  # overlapping or padded pooling: not a reshape + reduce
        if isinstance(p, nn.AvgPool1d) and not p.count_include_pad:
            return None
        size = k
    pool_first = bool(pools) and rest[0] is pools[0]
    if pool_first and not isinstance(pools[0], nn.MaxPool1d):
        return None
    kind = "avg" if pools and isinstance(pools[0], nn.AvgPool1d) else "max"
    return _Block(conv, size, kind, pool_first, acts[0])


def gemm_supported(fused: FusedCNN1D) -> bool:
    """True when every conv block of ``fused`` fits :class:`GemmCNN1D`."""
    return all(_parse_block(b) is not None for b in fused.features)


#: Activations the native kernel applies itself (by its ``ACT_CODES`` name).
_KERNEL_ACTS = {"identity": nn.Identity, "tanh": nn.Tanh, "relu": nn.ReLU}
#: Activations with an in-place ATen kernel (the fresh tensors here can be overwritten).
_INPLACE = {nn.Tanh: torch.tanh_, nn.ReLU: torch.relu_, nn.Sigmoid: torch.sigmoid_}


def _activate(act: nn.Module, y: torch.Tensor) -> torch.Tensor:
    inplace = _INPLACE.get(type(act))
    return inplace(y) if inplace is not None else act(y)


def _pool(y: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """Non-overlapping pooling over T of a ``(B, T, C)`` tensor (tail dropped). Max pooling
    runs as ``size - 1`` elementwise maxima of strided slices: on 2 cores this beat ``amax``,
    ``max_pool1d`` and channels-last ``max_pool2d`` (1.2-3x) for both default layers."""
    if size == 1:
        return y
    n, t, c = y.shape
    v = y[:, : t // size * size].view(n, t // size, size, c)
    if kind != "max":
        return v.mean(2)
    out = torch.maximum(v[:, :, 0], v[:, :, 1])
    for g in range(2, size):
        torch.maximum(out, v[:, :, g], out=out)
    return out


class GemmCNN1D(nn.Module):
    """Inference-only equivalent of a :class:`~ecgcnn.models.CNN1D` built from GEMMs.

    Parameters
    ----------
    fused : FusedCNN1D
        The pooling-first, BN-folded model (see :func:`~ecgcnn.export.fuse_for_inference`).
    chunk : int
        Beats per internal batch (cache-sized; the result does not depend on it).
    native : bool or None
        Run the elementwise passes (input blocks; bias, max pooling, activation) as the fused
        kernels of :mod:`ecgcnn.export.native`: None uses them when they build, True requires
        them (:class:`~ecgcnn.errors.EcgError` otherwise), False runs ATen ops only.
        ``self.native`` says which path runs.
    """

    def __init__(self, fused: FusedCNN1D, chunk: int = CHUNK, native: bool | None = None) -> None:
        super().__init__()
        if not gemm_supported(fused):
            raise EcgError(
                "GEMM runtime: this architecture is not supported "
                "(overlapping/average pooling before the activation or dilation)"
            )
        self.n_rr, self.chunk = fused.n_rr, int(chunk)
        self.in_channels, self.length = fused.in_channels, fused.length
        self.kernels: Kernels | None = (
            None if native is False else load_kernels(required=bool(native))
        )
        self.blocks = [_parse_block(b) for b in fused.features]
        self.acts = nn.ModuleList([b.act for b in self.blocks])  # registered: .to() moves them
        self.kernel_acts = [self._kernel_act(b) for b in self.blocks]
        t = fused.length
        with torch.no_grad():
            for i, (conv, size, *_) in enumerate(self.blocks):
                k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
                t_out = (t + 2 * p - k) // s + 1
                if i == 0:
                    self._first_layer(conv, size, t, t_out)
                else:
                    self.register_buffer(
                        f"w{i}",
                        conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last),
                    )
                self.register_buffer(f"b{i}", conv.bias.detach().clone())
                t = t_out // size
            self.t_last, self.c_last = t, self.blocks[-1].conv.out_channels
            self.head = self._permuted_head(fused.head)
        self.eval()

    # -------------------------------------------------------------------- construction
    def _first_layer(self, conv: nn.Conv1d, size: int, t_in: int, t_out: int) -> None:
        """The block-Toeplitz matrix of the first convolution (see the module docstring)."""
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        c_in, c_out = conv.in_channels, conv.out_channels
        t_pooled = t_out // size
        m = max(1, round(BLOCK_POSITIONS / size))  # pooled positions per block
        positions = m * size
        n_blocks = math.ceil(t_pooled / m)
        span = (positions - 1) * s + k  # input samples one block reads
        need = (n_blocks - 1) * positions * s + span  # padded input length all blocks read
        mat = torch.zeros(c_in, span, positions, c_out)
        w = conv.weight.detach().permute(1, 2, 0)  # (C_in, K, C_out)
        for o in range(positions):
            mat[:, o * s : o * s + k, o, :] = w
        self.register_buffer("toeplitz", mat.reshape(c_in * span, positions * c_out).contiguous())
        self.first = {
            "positions": positions,
            "n_blocks": n_blocks,
            "span": span,
            "stride": positions * s,
            "pad_left": p,
            "pad_right": need - t_in - p,
            "t_pooled": t_pooled,
            "c_out": c_out,
        }

    def _permuted_head(self, head: nn.Sequential) -> nn.Sequential:
        """The head with the first Linear's feature columns reordered from (C, T) to (T, C)."""
        layers = [m for m in head]
        fc = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
        lin = layers[fc]
        n_feat = self.c_last * self.t_last
        w = lin.weight.detach()
        w_feat = w[:, :n_feat].reshape(-1, self.c_last, self.t_last).permute(0, 2, 1)
        new = nn.Linear(lin.in_features, lin.out_features)
        new.weight.data.copy_(torch.cat([w_feat.reshape(lin.out_features, -1), w[:, n_feat:]], 1))
        new.bias.data.copy_(lin.bias.detach())
        layers[fc] = new
        return nn.Sequential(*layers)

    @property
    def native(self) -> bool:
        """True when the fused native kernels run (see ``native`` in the constructor)."""
        return self.kernels is not None

    def _kernel_act(self, b: _Block) -> str | None:
        """The kernel's activation name for block ``b``, None when the kernel cannot run it
        (activation before pooling, average pooling); activations without a kernel code run
        as ATen ops after the kernel's bias and pooling."""
        if self.kernels is None or not (b.pool_first or b.pool == 1) or b.kind != "max":
            return None
        return next((k for k, cls in _KERNEL_ACTS.items() if type(b.act) is cls), "identity")

    # -------------------------------------------------------------------- forward
    def _block0(self, x: torch.Tensor) -> torch.Tensor:
        f = self.first
        n = x.shape[0]
        if self.kernels is not None:
            u = self.kernels.blocks(
                x.contiguous(), f["n_blocks"], f["span"], f["stride"], f["pad_left"]
            )  # (B * nb, C_in * span)
        else:
            xp = F.pad(x, (f["pad_left"], f["pad_right"]))
            u = xp.unfold(2, f["span"], f["stride"])[:, :, : f["n_blocks"]]  # (B, C, nb, span)
            u = u.permute(0, 2, 1, 3).reshape(n * f["n_blocks"], -1)
        y = torch.mm(u, self.toeplitz).view(n, -1, f["c_out"])  # (B, nb * P, C_out)
        return self._pool_act(0, y, self.b0, pooled=f["t_pooled"])

    def _block(self, i: int, y: torch.Tensor) -> torch.Tensor:
        conv = self.blocks[i].conv
        z = F.conv2d(
            y.permute(0, 2, 1).unsqueeze(2),
            getattr(self, f"w{i}"),
            None,
            stride=(1, conv.stride[0]),
            padding=(0, conv.padding[0]),
        )
        z = z.squeeze(2).permute(0, 2, 1)  # (B, T, C), contiguous when oneDNN kept NHWC
        return self._pool_act(i, z, getattr(self, f"b{i}"))

    def _pool_act(
        self, i: int, y: torch.Tensor, bias: torch.Tensor, pooled: int | None = None
    ) -> torch.Tensor:
        """Block ``i``'s bias, pooling and activation, in its order, on a fresh ``(B, T, C)``
        conv output, keeping ``pooled`` positions (default all). The bias is kept out of the
        products (``addmm`` would first broadcast-copy it over the whole output, as slow as
        the product itself) and added just before the activation, which is exact after max or
        average pooling too."""
        b, act = self.blocks[i], self.kernel_acts[i]
        if act is not None:
            y = self.kernels.pool_bias_act(y.contiguous(), bias, b.pool, act, pooled)
            return y if type(b.act) is _KERNEL_ACTS[act] else _activate(b.act, y)
        if b.pool_first:
            y = _pool(y, b.pool, b.kind)
        y = _activate(b.act, y.add_(bias))
        if not b.pool_first:
            y = _pool(y, b.pool, b.kind)
        return y if pooled is None else y[:, :pooled]

    def _forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        y = self._block0(x)
        for i in range(1, len(self.blocks)):
            y = self._block(i, y)
        z = y.reshape(y.shape[0], -1)
        if self.n_rr > 0:
            z = torch.cat([z, rr], dim=1)
        return self.head(z)

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for ``x (B, C, T)`` and ``rr (B, n_rr)``."""
        if x.shape[0] <= self.chunk:
            return self._forward(x, rr)
        return torch.cat(
            [
                self._forward(x[i : i + self.chunk], rr[i : i + self.chunk])
                for i in range(0, x.shape[0], self.chunk)
            ]
        )
