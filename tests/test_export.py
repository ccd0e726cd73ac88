"""Export (TorchScript, ONNX), the runtimes that load it, and the ecgcnn-export console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import compose

from ecgcnn.data.beats import RR_FEATURES
from ecgcnn.errors import EcgError
from ecgcnn.export import export_model, fuse_for_inference, load_runtime
from ecgcnn.models import CNN1D, ConvSpec
from ecgcnn.training.checkpoint import save_checkpoint

CLASSES = ["N", "S", "V", "F", "Q"]
DATA = {
    "fs": 360.0,
    "leads": ["MLII"],
    "resample": True,
    "filter": {"kind": "bandpass", "low_hz": 0.5, "high_hz": 40.0, "order": 2},
    "beat": {"before": 90, "after": 162, "length": 128, "trio": True},
}
NRR = len(RR_FEATURES)
KIRANYAZ = [ConvSpec(32, 15), ConvSpec(16, 15, pool_size=14, pool_stride=14)]


def make_model(seed: int = 0, **kw) -> CNN1D:
    torch.manual_seed(seed)
    args = {
        "in_channels": 2,
        "length": 128,
        "n_rr": NRR,
        "n_classes": 5,
        "conv": KIRANYAZ,
        "fc": [10],
    } | kw
    model = CNN1D(**args)
    if args.get("batch_norm"):  # non-trivial running statistics, so folding BN is tested
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def save(model: CNN1D, path: Path) -> Path:
    save_checkpoint(
        {
            "model": model.state_dict(),
            "model_args": model.model_args,
            "classes": CLASSES,
            "config": {},
            "data": DATA,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default model's checkpoint and both exports of it."""
    d = tmp_path_factory.mktemp("export")
    model = make_model()
    ck = save(model, d / "best.pt")
    return model, ck, {fmt: export_model(ck, d / fmt, fmt) for fmt in ("torchscript", "onnx")}


def random_beats(n: int, seed: int = 1):
    g = np.random.default_rng(seed)
    return (
        g.normal(0, 0.5, (n, 2, 128)).astype(np.float32),
        g.uniform(0.3, 1.5, (n, NRR)).astype(np.float32),
    )


def reference(model: CNN1D, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x), torch.from_numpy(rr)).numpy()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_pytorch_on_random_beats(exported, fmt):
    model, _, paths = exported
    x, rr = random_beats(700)
    rt = load_runtime(paths[fmt]["model"], num_threads=1, batch_size=256)  # 3 calls
    assert rt.kind == fmt
    out = rt(x, rr)
    assert out.shape == (700, 5) and out.dtype == np.float32
    assert np.abs(out - reference(model, x, rr)).max() < 1e-5


def test_onnx_graph_names_opset_and_dynamic_batch(exported):
    proto = onnx.load(str(exported[2]["onnx"]["model"]))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["beats", "rr"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [2, 128]


def test_meta_json_has_classes_and_preprocessing(exported):
    _, _, paths = exported
    for fmt in ("torchscript", "onnx"):
        meta = json.loads(paths[fmt]["meta"].read_text())
        assert meta["classes"] == CLASSES
        assert meta["input_shape"] == [2, 128]
        assert meta["rr_features"] == list(RR_FEATURES)
        assert meta["model_args"]["conv"][1]["pool_size"] == 14
        assert meta["preprocessing"]["fs"] == 360.0
        assert meta["preprocessing"]["leads"] == ["MLII"]
        assert meta["preprocessing"]["filter"]["high_hz"] == 40.0
        assert meta["preprocessing"]["beat"]["before"] == 90
        assert meta["format"] == fmt
        # the same metadata travels inside the model file
        assert load_runtime(paths[fmt]["model"]).meta == meta


def test_export_refuses_to_overwrite(exported, tmp_path):
    _, ck, paths = exported
    before = paths["onnx"]["model"].read_bytes()
    with pytest.raises(EcgError, match="model.onnx: already exists"):
        export_model(ck, paths["onnx"]["model"].parent, "onnx")
    assert paths["onnx"]["model"].read_bytes() == before


def test_bad_checkpoint_and_format_are_one_line_errors(tmp_path, exported):
    garbage = tmp_path / "best.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EcgError, match="best.pt: not a loadable ecgcnn checkpoint") as err:
        export_model(garbage, tmp_path / "out", "onnx")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(EcgError, match=r"^format: unknown export format 'tflite' \(torchscript"):
        export_model(exported[1], tmp_path / "out", "tflite")


def test_runtime_checks_input_shapes(exported):
    rt = load_runtime(exported[2]["torchscript"]["model"])
    x, rr = random_beats(4)
    with pytest.raises(EcgError, match=r"expected beats \(B, 2, 128\)"):
        rt(x[:, :1], rr)
    with pytest.raises(EcgError, match=rf"expected rr \(4, {NRR}\)"):
        rt(x, rr[:, :-1])


@pytest.mark.parametrize(
    "kw",
    [
        {"batch_norm": True, "dropout": 0.3},  # BN folded, dropout dropped
        {"activation": "swish", "activation_param": 1.5},  # not monotonic: pool stays after
        {"activation": "relu", "conv": [ConvSpec(8, 7, pool="avg"), ConvSpec(8, 5, stride=2)]},
    ],
)
def test_fused_model_equals_the_original(kw):
    model = make_model(**kw)
    x, rr = random_beats(300, seed=3)
    with torch.no_grad():
        fused = fuse_for_inference(model)(torch.from_numpy(x), torch.from_numpy(rr)).numpy()
    assert np.abs(fused - reference(model, x, rr)).max() < 1e-5
    assert not model.training  # fusing leaves the source model in eval mode, untouched


def test_tanh_runs_after_pooling_in_fused_model():
    blocks = fuse_for_inference(make_model()).features
    assert [type(m).__name__ for m in blocks[0]] == ["Conv1d", "MaxPool1d", "Tanh"]
    swish = fuse_for_inference(make_model(activation="swish")).features
    assert [type(m).__name__ for m in swish[0]] == ["Conv1d", "Swish", "MaxPool1d"]


def test_rr_count_that_does_not_match_the_features_is_refused(tmp_path):
    ck = save(make_model(n_rr=NRR + 1), tmp_path / "best.pt")
    with pytest.raises(EcgError, match=f"best.pt: the model takes {NRR + 1} RR features"):
        export_model(ck, tmp_path / "out", "onnx")


def test_model_without_rr_exports(tmp_path):
    model = make_model(n_rr=0)
    ck = save(model, tmp_path / "best.pt")
    x, _ = random_beats(50)
    for fmt in ("torchscript", "onnx"):
        rt = load_runtime(export_model(ck, tmp_path / fmt, fmt)["model"])
        out = rt(x)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(out - ref).max() < 1e-5


def test_console_script_bad_format_is_one_error_line(tmp_path, exported):
    script = Path(sys.executable).with_name("ecgcnn-export")
    assert script.is_file(), "pip install -e . installs the ecgcnn-export console script"
    proc = subprocess.run(
        [
            str(script),
            f"checkpoint={exported[1]}",
            "format=tflite",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    # refused by Hydra when the config is composed (format is an Enum), before any work
    assert proc.returncode != 0
    assert "Invalid value 'tflite', expected one of [torchscript, onnx]" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "model_meta.json").exists()


def test_export_config_composes():
    import ecgcnn.apps.export  # noqa: F401  (registers base_export until it moves to config.py)

    cfg = compose("export", ["checkpoint=x.pt", "format=onnx"])
    assert (cfg.checkpoint, cfg.format) == ("x.pt", "onnx")


@pytest.mark.slow
def test_exports_match_pytorch_on_real_beats(mitdb, tmp_path, exported):
    from ecgcnn.data.cache import load_beats

    cfg = compose("train", [f"data.root={mitdb}", f"data.cache_dir={tmp_path / 'cache'}"])
    beats = load_beats(cfg.data, records=["100"]).beats["100"]
    x, rr = beats.x[:500], beats.rr[:500]
    assert x.shape == (500, 2, 128)
    model, ck, paths = exported
    ref = reference(model, x, rr)
    for path in (paths["torchscript"]["model"], paths["onnx"]["model"], ck):
        out = load_runtime(path)(x, rr)
        assert np.abs(out - ref).max() < 1e-5, path
        assert (out.argmax(1) == ref.argmax(1)).all()
