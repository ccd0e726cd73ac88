"""Models: the compact 1D CNN and its builders."""

from ecgcnn.models.cnn1d import (
    ACTIVATIONS,
    CNN1D,
    ConvSpec,
    Swish,
    build_model,
    count_parameters,
    flops_per_beat,
    make_activation,
)

__all__ = [
    "ACTIVATIONS",
    "CNN1D",
    "ConvSpec",
    "Swish",
    "build_model",
    "count_parameters",
    "flops_per_beat",
    "make_activation",
]
