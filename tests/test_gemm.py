"""The GEMM inference runtime (block-Toeplitz first conv): same logits as the model it rewrites."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export import CLASSES, NRR, make_model, random_beats, reference, save

from ecgcnn.errors import EcgError
from ecgcnn.export import GemmCNN1D, fuse_for_inference, gemm_supported, load_runtime, native
from ecgcnn.export.gemm import _pool
from ecgcnn.models import ConvSpec

#: The native kernels need a C compiler; without one only the ATen path can be tested.
HAVE_CC = shutil.which(native.compiler()[0]) is not None
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler for the native kernels")
PATHS = [False, pytest.param(True, marks=needs_cc)]

ARCHS = {
    "kiranyaz2016": {},
    "relu, batch norm, no pooling last": {
        "conv": [
            ConvSpec(8, 7),
            ConvSpec(12, 5, pool_size=2, pool_stride=2),
            ConvSpec(6, 3, pool="none", pool_size=1, pool_stride=1),
        ],
        "fc": [7, 4],
        "activation": "relu",
        "batch_norm": True,
    },
    "strided convs": {
        "conv": [
            ConvSpec(8, 9, stride=2, pool="none", pool_size=1, pool_stride=1),
            ConvSpec(6, 5, stride=2, pool_size=2, pool_stride=2),
        ],
        "fc": [5],
    },
    "swish (activation before pooling), average pooling": {
        "conv": [
            ConvSpec(8, 7, pool="avg", pool_size=2, pool_stride=2),
            ConvSpec(6, 5, pool_size=3, pool_stride=3),
        ],
        "fc": [5],
        "activation": "swish",
    },
    "pool 5 (blocks do not divide the length), no RR": {
        "conv": [ConvSpec(4, 11, pool_size=5, pool_stride=5), ConvSpec(6, 5)],
        "fc": [6],
        "n_rr": 0,
    },
}


@pytest.mark.parametrize("use_native", PATHS, ids=["aten", "native"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_gemm_runtime_equals_the_model(name, use_native):
    model = make_model(seed=3, **ARCHS[name])
    x, rr = random_beats(333)
    rr = rr[:, : model.n_rr]
    # 333 beats: 4 chunks, one short
    gemm = GemmCNN1D(fuse_for_inference(model), chunk=100, native=use_native)
    assert gemm.native is use_native
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
    u = xp[0, :, block * f["stride"] : block * f["stride"] + f["span"]].reshape(1, -1)
    out = (u @ gemm.toeplitz).view(f["positions"], -1) + conv.bias.detach()
    with torch.no_grad():
        ref = conv(x)[0, :, block * f["positions"] : (block + 1) * f["positions"]].t()
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


# ----------------------------------------------------------------------------- native kernels
@needs_cc
@pytest.mark.parametrize(
    ("size", "act"), [(3, "tanh"), (14, "tanh"), (5, "relu"), (1, "identity"), (4, "tanh")]
)
def test_native_pool_bias_act_equals_aten(size, act):
    k = native.load_kernels(required=True)
    y = torch.randn(7, 30, 9) * 4  # 30 rows: pooling 4 or 14 drops a tail, as max_pool1d does
    bias = torch.randn(9)
    want = F.max_pool1d(y.transpose(1, 2), size).transpose(1, 2) + bias
    want = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda t: t}[act](want)
    got = k.pool_bias_act(y, bias, size, act)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        k.pool_bias_act(y, bias, size, act, pooled=1), want[:, :1], atol=1e-6, rtol=0
    )


@needs_cc
def test_native_tanh_is_accurate_over_its_range():
    k = native.load_kernels(required=True)
    x = torch.linspace(-12, 12, 240_001).view(-1, 1, 1)
    got = k.pool_bias_act(x, torch.zeros(1), 1, "tanh").double()
    assert (got - torch.tanh(x.double())).abs().max() < 5e-7
    assert got.abs().max() <= 1.0


@needs_cc
@pytest.mark.parametrize(
    ("span", "step", "pad", "n_blocks"), [(20, 6, 7, 22), (9, 4, 0, 3), (5, 5, 2, 40)]
)
def test_native_blocks_equal_pad_and_unfold(span, step, pad, n_blocks):
    k = native.load_kernels(required=True)
    x = torch.randn(5, 2, 128)
    need = (n_blocks - 1) * step + span
    xp = F.pad(x, (pad, max(0, need - 128 - pad)))
    want = xp.unfold(2, span, step)[:, :, :n_blocks].permute(0, 2, 1, 3).reshape(5 * n_blocks, -1)
    torch.testing.assert_close(k.blocks(x, n_blocks, span, step, pad), want, atol=0, rtol=0)


@needs_cc
def test_native_build_is_cached(tmp_path):
    path = native.build(out_dir=tmp_path)
    stamp = path.stat().st_mtime_ns
    assert native.build(out_dir=tmp_path) == path and path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_broken_compiler_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(EcgError, match="cannot") as err:
        native.build(cc=["false"], out_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    missing = ["/nonexistent/cc"]
    with pytest.raises(EcgError, match="/nonexistent/cc"):
        native.build(cc=missing, out_dir=tmp_path)


def test_without_kernels_the_runtime_falls_back_or_refuses(monkeypatch):
    monkeypatch.setenv("ECGCNN_NATIVE", "0")
    fused = fuse_for_inference(make_model(seed=2))
    assert native.load_kernels() is None
    assert GemmCNN1D(fused).native is False  # auto: ATen ops
    with pytest.raises(EcgError, match="ECGCNN_NATIVE=0"):
        GemmCNN1D(fused, native=True)
