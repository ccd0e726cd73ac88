"""Deployment: export a checkpoint (TorchScript, ONNX) and load it back as a fast runtime."""

from ecgcnn.export.exporters import FORMATS, export_model
from ecgcnn.export.runtime import (
    ENGINES,
    META_NAME,
    FusedCNN1D,
    Runtime,
    fuse_for_inference,
    load_runtime,
    model_meta,
    ort_session,
)

__all__ = [
    "ENGINES",
    "FORMATS",
    "META_NAME",
    "FusedCNN1D",
    "Runtime",
    "export_model",
    "fuse_for_inference",
    "load_runtime",
    "model_meta",
    "ort_session",
]
