"""Write a checkpoint's model as TorchScript (``model.pt``) or ONNX (``model.onnx``).

What is exported is :class:`~ecgcnn.export.runtime.FusedCNN1D` (pool-then-activate, BN folded,
no dropout): the same logits as the trained model with less work, so every runtime that loads
the file gets the faster graph. The metadata (classes, architecture, preprocessing) goes both
inside the model file (TorchScript extra file / ONNX ``metadata_props``) and beside it as
``model_meta.json``, so a deployed model never needs the training config to be used correctly.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch

from ecgcnn.errors import EcgError
from ecgcnn.export.runtime import META_NAME, fuse_for_inference, model_meta

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}

#: ONNX opset: the dynamo exporter's own (>= 17, which LayerNorm-free CNNs do not even need);
#: asking for an older one makes it down-convert the graph, which is a needless risk.
ONNX_OPSET = 18


def _example(model) -> tuple[torch.Tensor, torch.Tensor]:
    # Batch 3, not 1: a size-1 dim could be specialised away by the exporter.
    return torch.randn(3, model.in_channels, model.length), torch.randn(3, model.n_rr)


def _refuse_existing(*paths: Path) -> None:
    for p in paths:
        if p.exists():
            raise EcgError(f"{p}: already exists; export never overwrites (use a new out_dir)")


def export_torchscript(module: torch.nn.Module, meta: dict, path: Path) -> None:
    """Trace, freeze and save ``module`` with ``meta`` embedded as an extra file."""
    x, rr = _example(module)
    # torch 2.13 flags all of torch.jit as deprecated in favour of torch.export; TorchScript
    # is still what C++/mobile deployments load, so we keep it and silence the notice.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, (x, rr))
        # freeze inlines the weights as constants and folds what it can (conv + bias, etc.).
        frozen = torch.jit.freeze(traced.eval())
        torch.jit.save(frozen, str(path), _extra_files={META_NAME: json.dumps(meta)})


def export_onnx(module: torch.nn.Module, meta: dict, path: Path) -> None:
    """Export with the dynamo (torch.export) exporter, dynamic batch, then check the graph."""
    import onnx

    x, rr = _example(module)
    batch = torch.export.Dim("batch")
    # The exporter reports progress on stdout, and it and its optimizer passes log at INFO
    # (shown under Hydra's logging setup): none of it is news to the user of a CNN export.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (x, rr),
                dynamo=True,
                opset_version=ONNX_OPSET,
                verbose=False,
                input_names=["beats", "rr"],
                output_names=["logits"],
                dynamic_shapes=({0: batch}, {0: batch}),
            )
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_NAME, json.dumps(meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EcgError(f"{path}: exported ONNX graph fails onnx.checker ({exc})") from None
    onnx.save(proto, str(path))


def export_model(ckpt_path, out_dir, fmt: str = "torchscript") -> dict[str, Path]:
    """Export a checkpoint's model for deployment.

    Parameters
    ----------
    ckpt_path : path-like
        A training checkpoint (``best.pt``).
    out_dir : path-like
        Directory for ``model.pt`` or ``model.onnx`` and ``model_meta.json`` (created).
    fmt : {"torchscript", "onnx"}
        TorchScript (traced, frozen) or ONNX (opset 18, inputs ``beats (B, C, T)`` and
        ``rr (B, n_rr)``, output ``logits (B, n_classes)``, dynamic batch axis).

    Returns
    -------
    dict
        ``{"model": path, "meta": path}``.

    Raises
    ------
    EcgError
        Unknown format, an unreadable checkpoint, or an output file that already exists.
    """
    from ecgcnn.training.checkpoint import load_model

    if fmt not in FORMATS:
        raise EcgError(f"format: unknown export format '{fmt}' ({' | '.join(FORMATS)})")
    out_dir = Path(out_dir)
    model_path, meta_path = out_dir / FORMATS[fmt], out_dir / META_NAME
    _refuse_existing(model_path, meta_path)
    model, ck = load_model(ckpt_path)
    meta = model_meta(model, ck, ckpt_path)
    meta.update(
        format=fmt,
        graph="FusedCNN1D (BN folded, no dropout, max-pool before monotonic activations)",
        source_checkpoint=str(ckpt_path),
    )
    fused = fuse_for_inference(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        export_torchscript(fused, meta, model_path)
    else:
        export_onnx(fused, meta, model_path)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return {"model": model_path, "meta": meta_path}
