"""The compact 1D CNN: presets compose and run, sizes and FLOPs match hand counts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from ecgcnn.config import ConvLayerConfig, ModelConfig  # importing registers base_* schemas
from ecgcnn.errors import EcgError
from ecgcnn.models import (
    ACTIVATIONS,
    CNN1D,
    ConvSpec,
    build_model,
    count_parameters,
    flops_per_beat,
    make_activation,
)

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "ecgcnn" / "configs"
PRESETS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
# (parameters, FLOPs/beat) for in_channels=2, length=128, n_rr=7, 5 classes, as documented in
# the YAML comments; a preset edited without updating its comment fails here.
DOCUMENTED = {"kiranyaz2016": (9_303, 892_080), "deep": (49_157, 1_418_752)}


def compose_model(name: str, overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+model={name}", *(overrides or [])]).model


def tiny(**kw) -> CNN1D:
    args = {
        "in_channels": 1,
        "length": 8,
        "n_rr": 2,
        "n_classes": 3,
        "conv": [ConvSpec(channels=4, kernel=3, pool="max", pool_size=2, pool_stride=2)],
        "fc": [5],
    }
    args.update(kw)
    return CNN1D(**args)


def test_presets_exist():
    assert {"kiranyaz2016", "deep"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_builds_and_runs(name):
    cfg = compose_model(name)
    assert cfg.name == name
    torch.manual_seed(0)
    model = build_model(cfg, in_channels=2, length=128, n_rr=7, n_classes=5).eval()
    x, rr = torch.randn(4, 2, 128), torch.randn(4, 7)
    logits = model(x, rr)
    assert logits.shape == (4, 5)
    assert torch.isfinite(logits).all()
    prob = model.predict_proba(x, rr)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(4))
    assert (prob >= 0).all()
    if name in DOCUMENTED:
        assert (count_parameters(model), flops_per_beat(model, 2, 128, 7)) == DOCUMENTED[name]


def test_deep_preset_is_small():
    model = build_model(compose_model("deep"), 2, 128, 7, 5)
    assert count_parameters(model) < 100_000


def test_preset_typo_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_model("kiranyaz2016", ["model.activaton=relu"])
    with pytest.raises(ConfigCompositionException):
        compose_model("kiranyaz2016", ["model.dropout=lots"])


def test_build_model_use_rr_false_drops_rr():
    cfg = compose_model("kiranyaz2016", ["model.use_rr=false"])
    model = build_model(cfg, 2, 128, 7, 5)
    assert model.n_rr == 0
    assert model.head[0].in_features == 16 * 3  # conv features only
    assert model(torch.randn(3, 2, 128), None).shape == (3, 5)


def test_build_model_from_dataclass():
    cfg = ModelConfig(conv=[ConvLayerConfig(channels=4, kernel=5)], fc=[8])
    model = build_model(cfg, 2, 30, 7, 5)
    assert model.n_features == 4 * 10  # 30 -> conv "same" 30 -> pool 3/3 -> 10


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds_and_runs(name):
    model = tiny(activation=name).eval()
    out = model(torch.randn(2, 1, 8), torch.randn(2, 2))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_activation_values():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.5])
    torch.testing.assert_close(make_activation("swish", 1.0)(x), torch.nn.SiLU()(x))
    torch.testing.assert_close(make_activation("swish", 2.0)(x), x * torch.sigmoid(2 * x))
    assert make_activation("leaky_relu", 1.0)(torch.tensor([-1.0])).item() == pytest.approx(-0.01)
    assert make_activation("leaky_relu", 20.0)(torch.tensor([-1.0])).item() == pytest.approx(-0.2)
    assert make_activation("elu", 2.0)(torch.tensor([-100.0])).item() == pytest.approx(-2.0)
    assert make_activation("relu6")(torch.tensor([9.0])).item() == 6.0
    assert make_activation("prelu", 1.0).weight.item() == pytest.approx(0.25)


def test_unknown_activation_and_ignored_param_raise():
    with pytest.raises(EcgError, match=r"model\.activation: unknown activation 'gelu'"):
        make_activation("gelu")
    with pytest.raises(EcgError, match="model.activation"):
        tiny(activation="gelu")
    with pytest.raises(EcgError, match=r"model\.activation_param"):
        make_activation("relu", 2.0)
    with pytest.raises(EcgError, match=r"model\.activation_param"):
        make_activation("elu", 0.0)


def test_parameter_count_by_hand():
    # conv  1 in * 4 out * 3 taps + 4 biases           = 16
    # pool  8 samples -> 4; flatten 4 ch * 4 = 16, + 2 RR = 18 features
    # fc1   18 * 5 + 5                                  = 95
    # out   5 * 3 + 3                                   = 18
    #                                             total = 129
    assert count_parameters(tiny()) == 129
    # with BatchNorm the conv loses its 4 biases and BN adds 4 weights + 4 shifts: 129 - 4 + 8
    assert count_parameters(tiny(batch_norm=True)) == 133


def test_flops_by_hand():
    # conv: 4 channels * 8 samples * (1 * 3) MACs = 96; fc1: 18 * 5 = 90; out: 5 * 3 = 15
    assert flops_per_beat(tiny(), 1, 8, 2) == 2 * (96 + 90 + 15)
    # no conv, no hidden layer: a single Linear(2 * 10 + 3 -> 4): 2 * in * out, bias not counted
    single = CNN1D(in_channels=2, length=10, n_rr=3, n_classes=4, conv=[], fc=[])
    assert len(single.head) == 1
    assert flops_per_beat(single, 2, 10, 3) == 2 * 23 * 4


def test_flops_restores_training_mode():
    model = tiny(dropout=0.5).train()
    flops_per_beat(model, 1, 8, 2)
    assert model.training


def test_from_args_round_trip_gives_identical_outputs():
    torch.manual_seed(1)
    model = tiny(
        activation="prelu",
        batch_norm=True,
        dropout=0.1,
        conv=[
            ConvSpec(4, 3, pool="avg", pool_size=3, pool_stride=2),
            ConvSpec(6, 4, stride=2, pool="none"),
        ],
    )
    model.train()
    model(torch.randn(16, 1, 8), torch.randn(16, 2))  # move the BN running statistics
    # model_args survives a JSON round trip (checkpoints store it as plain data)
    args = json.loads(json.dumps(model.model_args))
    rebuilt = CNN1D.from_args(copy.deepcopy(args))
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x, rr = torch.randn(5, 1, 8), torch.randn(5, 2)
    assert torch.equal(model(x, rr), rebuilt(x, rr))
    assert rebuilt.model_args == model.model_args


def test_feature_length_matches_dry_run():
    # even kernel + stride + overlapping pooling: the arithmetic must match what torch does
    model = tiny(
        length=37,
        conv=[
            ConvSpec(3, 4, stride=2, pool="max", pool_size=3, pool_stride=2),
            ConvSpec(2, 5, pool="avg", pool_size=2, pool_stride=1),
        ],
    )
    z = model.features(torch.zeros(1, 1, 37))
    assert z.flatten(1).shape[1] == model.n_features


def test_too_short_input_raises():
    conv = [ConvSpec(4, 3, pool="max", pool_size=3, pool_stride=3)] * 2
    with pytest.raises(EcgError, match=r"model\.conv: layer 1 reduces the window of length 4 to 0"):
        tiny(length=4, conv=conv)  # 4 -> 1 after layer 0; layer 1 cannot pool 3 from 1
    with pytest.raises(EcgError, match=r"model\.conv: layer 0"):
        build_model(compose_model("kiranyaz2016"), 2, 2, 7, 5)


def test_bad_conv_spec_raises():
    with pytest.raises(EcgError, match=r"layer 0 pool 'median'"):
        tiny(conv=[ConvSpec(4, 3, pool="median")])
    with pytest.raises(EcgError, match=r"layer 0 kernel"):
        tiny(conv=[ConvSpec(4, 0)])


def test_wrong_input_shape_raises():
    model = tiny()
    with pytest.raises(EcgError, match=r"expected \(B, 1, 8\) windows"):
        model(torch.zeros(2, 2, 8), torch.zeros(2, 2))
    with pytest.raises(EcgError, match=r"expected \(B, 2\) RR features, got None"):
        model(torch.zeros(2, 1, 8), None)


@pytest.mark.parametrize("activation", ["tanh", "relu", "swish", "prelu"])
def test_max_pooling_before_a_monotonic_activation_changes_nothing(activation):
    """Training runs max pooling before tanh/relu (cheaper), in the modules' order otherwise;
    outputs and gradients are those of the declared order (activation, then pooling)."""
    torch.manual_seed(0)
    m = tiny(
        in_channels=2,
        length=32,
        activation=activation,
        conv=[
            ConvSpec(8, 5, pool="max", pool_size=3, pool_stride=3),
            ConvSpec(4, 3, pool="max", pool_size=2, pool_stride=2),
        ],
    )
    reordered = [o != sorted(o) for o in m._order]
    assert reordered == [activation in ("tanh", "relu")] * 2
    x, rr = torch.randn(16, 2, 32), torch.randn(16, 2)

    def run(order):
        m._order = order
        m.zero_grad()
        out = m(x, rr)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in m.parameters()]

    fast = run([list(o) for o in m._order])
    plain = run([list(range(len(b))) for b in m.features])  # conv, act, pool: as declared
    assert torch.equal(fast[0], plain[0])
    for a, b in zip(fast[1], plain[1]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
