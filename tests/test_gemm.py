"""The GEMM inference runtime (block-Toeplitz first conv): same logits as the model it rewrites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export import CLASSES, NRR, make_model, random_beats, reference, save

from ecgcnn.export import GemmCNN1D, fuse_for_inference, gemm_supported, load_runtime
from ecgcnn.export.gemm import _pool
from ecgcnn.models import ConvSpec

ARCHS = {
    "kiranyaz2016": {},
    "relu, batch norm, no pooling last": {
        "conv": [ConvSpec(8, 7), ConvSpec(12, 5, pool_size=2, pool_stride=2),
                 ConvSpec(6, 3, pool="none", pool_size=1, pool_stride=1)],
        "fc": [7, 4], "activation": "relu", "batch_norm": True},
    "strided convs": {
        "conv": [ConvSpec(8, 9, stride=2, pool="none", pool_size=1, pool_stride=1),
                 ConvSpec(6, 5, stride=2, pool_size=2, pool_stride=2)], "fc": [5]},
    "swish (activation before pooling), average pooling": {
        "conv": [ConvSpec(8, 7, pool="avg", pool_size=2, pool_stride=2),
                 ConvSpec(6, 5, pool_size=3, pool_stride=3)], "fc": [5], "activation": "swish"},
    "pool 5 (blocks do not divide the length), no RR": {
        "conv": [ConvSpec(4, 11, pool_size=5, pool_stride=5), ConvSpec(6, 5)], "fc": [6],
        "n_rr": 0},
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_gemm_runtime_equals_the_model(name):
    model = make_model(seed=3, **ARCHS[name])
    x, rr = random_beats(333)
    rr = rr[:, :model.n_rr]
    gemm = GemmCNN1D(fuse_for_inference(model), chunk=100)  # 333 beats: 4 chunks, one short
    with torch.inference_mode():
        got = gemm(torch.from_numpy(x), torch.from_numpy(rr)).numpy()
    want = reference(model, x, rr)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


def test_toeplitz_matrix_is_the_convolution():
    """The first layer's matrix applied to one block gives the conv outputs of that block."""
    model = make_model(seed=5)
    gemm = GemmCNN1D(fuse_for_inference(model))
    f, conv = gemm.first, model.features[0][0]
    x = torch.randn(1, 2, 128)
    xp = torch.nn.functional.pad(x, (f["pad_left"], f["pad_right"]))
    block = 4  # any block: its input window, flattened (C_in, span)
    u = xp[0, :, block * f["stride"]:block * f["stride"] + f["span"]].reshape(1, -1)
    out = (u @ gemm.toeplitz).view(f["positions"], -1) + conv.bias.detach()
    with torch.no_grad():
        ref = conv(x)[0, :, block * f["positions"]:(block + 1) * f["positions"]].t()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_overlapping_pooling_is_not_supported():
    model = make_model(conv=[ConvSpec(8, 7, pool_size=3, pool_stride=2)], fc=[5])
    fused = fuse_for_inference(model)
    assert not gemm_supported(fused)
    with pytest.raises(Exception, match="not supported"):
        GemmCNN1D(fused)


def test_pool_drops_the_tail_like_maxpool():
    y = torch.randn(3, 29, 4)  # 29 = 4 x 7 + 1: the last sample is dropped
    want = torch.nn.functional.max_pool1d(y.transpose(1, 2), 7).transpose(1, 2)
    torch.testing.assert_close(_pool(y, 7, "max"), want)
    want = torch.nn.functional.avg_pool1d(y.transpose(1, 2), 7).transpose(1, 2)
    torch.testing.assert_close(_pool(y, 7, "avg"), want)


def test_checkpoint_runtime_uses_the_gemm_model(tmp_path):
    model = make_model(seed=7)
    rt = load_runtime(save(model, tmp_path / "best.pt"), batch_size=50)
    x, rr = random_beats(120, seed=9)
    assert np.abs(rt(x, rr) - reference(model, x, rr)).max() < 1e-5  # GEMM model
    assert np.abs(rt(x[:2], rr[:2]) - reference(model, x[:2], rr[:2])).max() < 1e-5  # fused
    assert rt.classes == CLASSES and rt.n_rr == NRR
