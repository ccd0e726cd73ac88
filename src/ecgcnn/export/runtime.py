"""Inference runtimes: the pooling-first CNN, and loaders for exported TorchScript / ONNX files.

:class:`FusedCNN1D` is an inference-only rewrite of a trained :class:`~ecgcnn.models.CNN1D`
that computes the same logits with less work:

* max pooling runs *before* the activation when the activation is non-decreasing
  (``maxpool(f(x)) == f(maxpool(x))``), so tanh is evaluated on 1/3 (first block) and 1/14
  (second block) of the samples;
* BatchNorm is folded into the preceding conv, dropout is dropped (both are eval-mode facts).

:func:`load_runtime` turns an exported ``model.pt`` (TorchScript), ``model.onnx`` (ONNX
Runtime) or a training checkpoint (the fused model, eager) into one callable
``runtime(beats, rr) -> logits`` on numpy arrays, so the monitor and the benchmark do not
care which file they were given.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgcnn.errors import EcgError
from ecgcnn.models import CNN1D

#: Name of the metadata stored inside each exported model (TorchScript extra file,
#: ONNX metadata_props key) and written beside it.
META_NAME = "model_meta.json"
#: How a training checkpoint runs: the fused model in eager PyTorch, or ONNX Runtime on the
#: fused model exported in memory at load (a few seconds). Exported files run in their own
#: runtime whatever the engine. (A hand-built GEMM runtime with C kernels was measured at
#: 1.02x end to end on the 24-hour benchmark against eager PyTorch and removed.)
ENGINES = ("torch", "onnx")
#: Beats per model call. Larger batches allocate intermediates (conv1's output: batch x 32 x
#: 128 floats) above glibc's mmap threshold, so every call maps and faults in fresh pages:
#: measured 48 us/beat at 750 beats per call (5,300 minor faults) against 23 us/beat at 256
#: (none), eager PyTorch, one thread.
BATCH_SIZE = 256


# ----------------------------------------------------------------------------- fused model
def _non_decreasing(act: nn.Module) -> bool:
    """True when ``act`` commutes with max pooling (a non-decreasing function, in eval mode)."""
    if isinstance(act, (nn.Tanh, nn.ReLU, nn.ReLU6, nn.Sigmoid)):
        return True
    if isinstance(act, nn.LeakyReLU):
        return act.negative_slope >= 0
    if isinstance(act, nn.ELU):
        return act.alpha >= 0
    if isinstance(act, nn.Softplus):
        return act.beta > 0
    if isinstance(act, nn.RReLU):  # eval mode: fixed slope (lower + upper) / 2
        return act.lower + act.upper >= 0
    if isinstance(act, nn.PReLU):
        return bool((act.weight >= 0).all())
    # Swish (x * sigmoid(c x)) dips below zero for negative x: not monotonic.
    return False


def _fold_bn(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> nn.Conv1d:
    """A conv equal to ``bn(conv(x))`` with BN's running statistics (eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        stride=conv.stride[0],
        padding=conv.padding[0],
        bias=True,
    )
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None])
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fused_block(block: nn.Sequential) -> nn.Sequential:
    conv = next(m for m in block if isinstance(m, nn.Conv1d))
    bn = next((m for m in block if isinstance(m, nn.BatchNorm1d)), None)
    act = next(
        m
        for m in block
        if not isinstance(m, (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.Dropout))
    )
    pool = next((m for m in block if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d))), None)
    layers: list[nn.Module] = [_fold_bn(conv, bn) if bn is not None else conv]
    if isinstance(pool, nn.MaxPool1d) and _non_decreasing(act):
        layers += [pool, act]  # (B, C, T) -> (B, C, T / pool): activation on the pooled samples
    else:
        layers += [act] + ([pool] if pool is not None else [])
    return nn.Sequential(*layers)


class FusedCNN1D(nn.Module):
    """Inference-only equivalent of a :class:`CNN1D` (pool-then-activate, BN folded, no dropout).

    Parameters
    ----------
    model : CNN1D
        A trained model; it is copied, so moving or casting the fused one leaves it alone.

    Notes
    -----
    The logits equal the source model's up to float rounding (BN folding) and, for pooling
    moved before the activation, exactly whenever the activation's float implementation is
    monotonic; the tests bound the difference by 1e-5. No input checks here: it is meant to
    be scripted/exported, and :func:`load_runtime` checks shapes before calling it.
    """

    def __init__(self, model: CNN1D) -> None:
        super().__init__()
        if not isinstance(model, CNN1D):
            raise EcgError(f"fuse: expected a CNN1D, got {type(model).__name__}")
        self.in_channels, self.length = model.in_channels, model.length
        self.n_rr, self.n_classes = model.n_rr, model.n_classes
        self.model_args = dict(model.model_args)
        model = copy.deepcopy(model).eval()
        self.features = nn.Sequential(*[_fused_block(b) for b in model.features])
        self.head = nn.Sequential(*[m for m in model.head if not isinstance(m, nn.Dropout)])
        self.eval()

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for ``x (B, C, T)`` and ``rr (B, n_rr)`` (ignored if 0)."""
        z = self.features(x).flatten(1)  # (B, C, T) -> (B, C_last * T_last)
        if self.n_rr > 0:
            z = torch.cat([z, rr], dim=1)  # -> (B, C_last * T_last + n_rr)
        return self.head(z)


def fuse_for_inference(model: CNN1D) -> FusedCNN1D:
    """The pooling-first, BN-folded, dropout-free copy of ``model`` (see :class:`FusedCNN1D`)."""
    model.eval()
    return FusedCNN1D(model).eval()


# ----------------------------------------------------------------------------- runtimes
class Runtime:
    """``runtime(beats, rr) -> logits``: numpy in, numpy out, whatever runs underneath.

    Attributes
    ----------
    kind : str
        ``torchscript``, ``onnx`` or ``checkpoint``.
    meta : dict
        Export metadata (classes, model_args, input shape, RR features, preprocessing);
        for a checkpoint, the same fields taken from the checkpoint.
    batch_size : int
        Beats per call to the underlying model (bounds memory for long recordings).
    """

    def __init__(
        self,
        kind: str,
        run: Callable[[np.ndarray, np.ndarray], np.ndarray],
        meta: dict[str, Any],
        path: Path,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.kind, self.meta, self.path = kind, meta, path
        self.batch_size = int(batch_size)
        self._run = run
        shape = meta["input_shape"]  # [C, T]
        self.in_channels, self.length = int(shape[0]), int(shape[1])
        self.n_rr = int(meta["model_args"]["n_rr"])
        self.classes = list(meta["classes"])

    def __call__(self, beats: np.ndarray, rr: np.ndarray | None = None) -> np.ndarray:
        beats = np.ascontiguousarray(beats, dtype=np.float32)
        if beats.ndim != 3 or beats.shape[1:] != (self.in_channels, self.length):
            raise EcgError(
                f"{self.path}: expected beats (B, {self.in_channels}, {self.length}), "
                f"got {beats.shape}"
            )
        n = beats.shape[0]
        if rr is None:
            if self.n_rr:
                raise EcgError(f"{self.path}: the model needs (B, {self.n_rr}) RR features")
            rr = np.zeros((n, 0), np.float32)
        rr = np.ascontiguousarray(rr, dtype=np.float32)
        if rr.shape != (n, self.n_rr):
            raise EcgError(f"{self.path}: expected rr ({n}, {self.n_rr}), got {rr.shape}")
        if n <= self.batch_size:
            return self._run(beats, rr)
        return np.concatenate(
            [
                self._run(beats[i : i + self.batch_size], rr[i : i + self.batch_size])
                for i in range(0, n, self.batch_size)
            ]
        )


def _is_torchscript(path: Path) -> bool:
    # A TorchScript archive holds serialized code (".../code/..."); a torch.save checkpoint
    # is a zip too, but with only data.pkl and tensors.
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in name for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _torchscript_runtime(path: Path, batch_size: int) -> Runtime:
    extra = {META_NAME: ""}
    try:
        with warnings.catch_warnings():  # torch.jit's deprecation notice (see exporters.py)
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as exc:
        raise EcgError(
            f"{path}: not a loadable TorchScript model ({str(exc).strip().splitlines()[0][:160]})"
        ) from None
    meta = _parse_meta(path, extra[META_NAME])
    module.eval()

    def run(beats: np.ndarray, rr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(beats), torch.from_numpy(rr)).numpy()

    return Runtime("torchscript", run, meta, path, batch_size)


def ort_session(path: Path, num_threads: int):
    """An ONNX Runtime CPU session with ``num_threads`` intra-op threads, all graph
    optimizations on, and one inter-op thread (the graph is a chain: nothing to overlap)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(num_threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's own error types (InvalidProtobuf, InvalidGraph, Fail, ...) share no base
    # class but Exception; catch exactly those, not our own bugs.
    state = ort.capi.onnxruntime_pybind11_state
    errors = tuple(
        c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception)
    )
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except errors as exc:
        raise EcgError(
            f"{path}: not a loadable ONNX model ({str(exc).strip().splitlines()[0][:160]})"
        ) from None


def _onnx_runtime(path: Path, num_threads: int, batch_size: int) -> Runtime:
    sess = ort_session(path, num_threads)
    meta = _parse_meta(path, sess.get_modelmeta().custom_metadata_map.get(META_NAME, ""))
    names = [i.name for i in sess.get_inputs()]
    if names[:1] != ["beats"]:
        raise EcgError(f"{path}: expected ONNX inputs 'beats' and 'rr', got {names}")

    def run(beats: np.ndarray, rr: np.ndarray) -> np.ndarray:
        feeds = {"beats": beats, "rr": rr} if "rr" in names else {"beats": beats}
        return sess.run(["logits"], feeds)[0]

    return Runtime("onnx", run, meta, path, batch_size)


def _checkpoint_runtime(path: Path, batch_size: int, engine: str, num_threads: int) -> Runtime:
    from ecgcnn.training.checkpoint import load_model

    model, ck = load_model(path)
    fused = fuse_for_inference(model)  # the trained model's logits within float rounding
    meta = model_meta(model, ck, path)
    if engine == "onnx":
        import tempfile

        from ecgcnn.export.exporters import export_onnx

        with tempfile.TemporaryDirectory(prefix="ecgcnn_onnx_") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(fused, meta, onnx_path)
            rt = _onnx_runtime(onnx_path, num_threads, batch_size)  # the session holds the graph
        rt.kind, rt.path = "checkpoint", path
        return rt

    def run(beats: np.ndarray, rr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return fused(torch.from_numpy(beats), torch.from_numpy(rr)).numpy()

    return Runtime("checkpoint", run, meta, path, batch_size)


def _parse_meta(path: Path, text: str) -> dict:
    if not text:
        sidecar = path.with_name(META_NAME)
        if not sidecar.is_file():
            raise EcgError(f"{path}: no embedded {META_NAME} and none beside it")
        text = sidecar.read_text()
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EcgError(f"{path}: {META_NAME} is not valid JSON ({exc})") from None
    missing = [k for k in ("classes", "model_args", "input_shape") if k not in meta]
    if missing:
        raise EcgError(f"{path}: {META_NAME} lacks {', '.join(missing)}")
    return meta


def model_meta(model: CNN1D, ck: dict, source: str | os.PathLike = "checkpoint") -> dict:
    """What a deployed model needs besides its weights: classes, architecture, input shape,
    RR feature names and the preprocessing that produced its training beats."""
    from ecgcnn.data.beats import RR_FEATURES

    data = ck.get("data") or {}
    rr_names = list(ck.get("rr_features") or RR_FEATURES)
    if model.n_rr and len(rr_names) != model.n_rr:
        # the names would be wrong, and the monitor would feed the wrong features
        raise EcgError(
            f"{source}: the model takes {model.n_rr} RR features but ecgcnn "
            f"computes {len(rr_names)} ({', '.join(rr_names)}); retrain or export "
            f"with the ecgcnn version that trained it"
        )
    return {
        "classes": list(ck["classes"]),
        "model_args": dict(model.model_args),
        "input_shape": [model.in_channels, model.length],
        "input_names": ["beats", "rr"],
        "output_name": "logits",
        "rr_features": rr_names if model.n_rr else [],
        "preprocessing": {k: data.get(k) for k in ("fs", "leads", "resample", "filter", "beat")},
    }


def load_runtime(
    path: str | os.PathLike,
    num_threads: int | None = None,
    batch_size: int = BATCH_SIZE,
    engine: str = "torch",
) -> Runtime:
    """Load an exported model (``.pt`` TorchScript, ``.onnx``) or a training checkpoint.

    Parameters
    ----------
    path : path-like
        ``model.pt`` / ``model.onnx`` from :func:`ecgcnn.export.export_model`, or a checkpoint
        (``best.pt``): it runs as :class:`FusedCNN1D` by ``engine``.
    num_threads : int, optional
        ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``). TorchScript and
        eager models use PyTorch's global thread setting, which this does not change.
    batch_size : int
        Beats per call to the model.
    engine : {"torch", "onnx"}
        How a checkpoint runs (see :data:`ENGINES`); exported files ignore it.

    Returns
    -------
    Runtime
        ``runtime(beats (B, C, T), rr (B, n_rr)) -> logits (B, n_classes)``, float32 numpy.
    """
    path = Path(path)
    if engine not in ENGINES:
        raise EcgError(f"engine: unknown '{engine}' ({' | '.join(ENGINES)})")
    if not path.is_file():
        raise EcgError(f"{path}: model file not found")
    threads = num_threads or torch.get_num_threads()
    if path.suffix == ".onnx":
        return _onnx_runtime(path, threads, batch_size)
    if _is_torchscript(path):
        return _torchscript_runtime(path, batch_size)
    return _checkpoint_runtime(path, batch_size, engine, threads)
