"""Abnormal-beat synthesis (Kiranyaz et al., Sci Rep 2017) for zero-shot personalization."""

from ecgcnn.synthesis.abs_filters import (
    FilterLibrary,
    apply_fir,
    average_normal,
    build_library,
    convolution_matrix,
    fit_fir,
    synthesize,
)

__all__ = [
    "FilterLibrary",
    "apply_fir",
    "average_normal",
    "build_library",
    "convolution_matrix",
    "fit_fir",
    "synthesize",
]
