"""Compact 1D CNN for beat classification, after Kiranyaz, Ince & Gabbouj (IEEE TBME 2016).

A beat arrives as ``(B, C, T)`` windows (C = beat window + beat-trio window, T samples) plus
``(B, n_rr)`` RR-interval features. Conv blocks extract morphology; their flattened output is
joined with the RR features and classified by a small MLP. The module takes typed arguments
only; :func:`build_model` turns a ``ModelConfig`` into them, and ``model_args`` lets a
checkpoint rebuild the exact network with :meth:`CNN1D.from_args`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ecgcnn.errors import EcgError


# ----------------------------------------------------------------------------- activations
class Swish(nn.Module):
    """``x * sigmoid(c * x)`` with a fixed slope ``c`` (``nn.SiLU`` is the case ``c = 1``)."""

    def __init__(self, slope: float = 1.0) -> None:
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.slope * x)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def _no_param(module: type[nn.Module], name: str) -> Callable[[float], nn.Module]:
    # A parameter that would be silently ignored is a config mistake worth stopping on.
    def factory(param: float) -> nn.Module:
        if param != 1.0:
            raise EcgError(
                f"model.activation_param: activation '{name}' takes no parameter "
                f"(leave it at 1.0), got {param}"
            )
        return module()

    return factory


def _positive(build: Callable[[float], nn.Module], name: str) -> Callable[[float], nn.Module]:
    def factory(param: float) -> nn.Module:
        if not param > 0:
            raise EcgError(f"model.activation_param: {name} needs a value > 0, got {param}")
        return build(param)

    return factory


# ``activation_param`` means, per activation (1.0 always gives PyTorch's default):
#   leaky_relu  negative slope = 0.01 * param   (scales PyTorch's default slope)
#   prelu       initial slope  = 0.25 * param   (learned afterwards)
#   rrelu       slope range    = [1/8, 1/3] * param
#   elu         alpha          = param
#   softplus    beta           = param
#   swish       x * sigmoid(param * x)
#   relu, relu6, tanh, sigmoid take none: a value other than 1.0 is an error.
ACTIVATIONS: dict[str, Callable[[float], nn.Module]] = {
    "relu": _no_param(nn.ReLU, "relu"),
    "relu6": _no_param(nn.ReLU6, "relu6"),
    "tanh": _no_param(nn.Tanh, "tanh"),
    "sigmoid": _no_param(nn.Sigmoid, "sigmoid"),
    "softplus": _positive(lambda p: nn.Softplus(beta=p), "softplus"),
    "leaky_relu": _positive(lambda p: nn.LeakyReLU(negative_slope=0.01 * p), "leaky_relu"),
    "prelu": _positive(lambda p: nn.PReLU(init=0.25 * p), "prelu"),
    "rrelu": _positive(lambda p: nn.RReLU(lower=p / 8.0, upper=p / 3.0), "rrelu"),
    "elu": _positive(lambda p: nn.ELU(alpha=p), "elu"),
    "swish": lambda p: Swish(p),
}

#: Activations that are non-decreasing for every parameter value in training too (so they
#: commute with max pooling); prelu (a learned slope) and rrelu (random slopes) are left out.
POOL_FIRST = frozenset({"relu", "relu6", "tanh", "sigmoid", "softplus", "leaky_relu", "elu"})

POOLS: dict[str, type[nn.Module] | None] = {"max": nn.MaxPool1d, "avg": nn.AvgPool1d, "none": None}


def make_activation(name: str, param: float = 1.0) -> nn.Module:
    """Build the activation ``name`` with its ``activation_param`` (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise EcgError(
            f"model.activation: unknown activation '{name}' "
            f"(choose from {', '.join(sorted(ACTIVATIONS))})"
        )
    return ACTIVATIONS[name](float(param))


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ConvSpec:
    """One conv block: Conv1d -> [BatchNorm] -> activation -> [pool] -> [dropout]."""

    channels: int
    kernel: int
    stride: int = 1
    pool: str = "max"  # max | avg | none
    pool_size: int = 3
    pool_stride: int = 3


def _check_spec(i: int, spec: ConvSpec) -> None:
    for name in ("channels", "kernel", "stride", "pool_size", "pool_stride"):
        value = getattr(spec, name)
        if not isinstance(value, int) or value < 1:
            raise EcgError(
                f"model.conv: layer {i} {name} must be a positive integer, got {value!r}"
            )
    if spec.pool not in POOLS:
        raise EcgError(
            f"model.conv: layer {i} pool '{spec.pool}' is unknown (choose from max, avg, none)"
        )


def conv_block_length(length: int, spec: ConvSpec) -> int:
    """Samples left after one conv block; 0 or less when the block consumes the window.

    The conv pads ``kernel // 2`` on both sides ("same" for odd kernels at stride 1), so only
    the stride and the pooling shrink the signal; pooling has no padding and drops the tail.
    """
    pad = spec.kernel // 2
    n = (length + 2 * pad - spec.kernel) // spec.stride + 1
    if spec.pool != "none" and n > 0:
        n = (n - spec.pool_size) // spec.pool_stride + 1
    return n


class CNN1D(nn.Module):
    """Conv blocks over the beat windows, then an MLP over [conv features, RR features].

    Parameters
    ----------
    in_channels : int
        Signal channels per beat (2: the beat window and the beat-trio window).
    length : int
        Samples per window.
    n_rr : int
        RR features per beat joined before the MLP; 0 for none.
    n_classes : int
        Output classes.
    conv : sequence of ConvSpec
        The conv blocks, in order; may be empty (an MLP on the raw samples).
    fc : sequence of int
        Hidden MLP sizes; the output layer is added.
    activation, activation_param : str, float
        Nonlinearity after every conv and hidden FC layer (see ``ACTIVATIONS``).
    batch_norm : bool
        BatchNorm1d after each conv (the conv then has no bias: BN's shift replaces it).
    dropout : float
        Dropout after each conv block and each hidden FC layer; 0 for none.
    """

    def __init__(
        self,
        in_channels: int,
        length: int,
        n_rr: int,
        n_classes: int,
        conv: Sequence[ConvSpec],
        fc: Sequence[int],
        activation: str = "tanh",
        activation_param: float = 1.0,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        conv = [c if isinstance(c, ConvSpec) else ConvSpec(**c) for c in conv]
        fc = [int(n) for n in fc]
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("length", length, 1),
            ("n_rr", n_rr, 0),
            ("n_classes", n_classes, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise EcgError(f"model: {name} must be an integer >= {low}, got {value!r}")
        if any(n < 1 for n in fc):
            raise EcgError(f"model.fc: hidden sizes must be positive, got {fc}")
        if not 0.0 <= dropout < 1.0:
            raise EcgError(f"model.dropout: must be in [0, 1), got {dropout}")
        make_activation(activation, activation_param)  # fail at construction, not mid-model

        self.in_channels, self.length, self.n_rr, self.n_classes = (
            in_channels,
            length,
            n_rr,
            n_classes,
        )
        self.model_args: dict[str, Any] = {
            "in_channels": in_channels,
            "length": length,
            "n_rr": n_rr,
            "n_classes": n_classes,
            "conv": [asdict(c) for c in conv],
            "fc": list(fc),
            "activation": activation,
            "activation_param": float(activation_param),
            "batch_norm": bool(batch_norm),
            "dropout": float(dropout),
        }

        blocks: list[nn.Module] = []
        self._order: list[list[int]] = []  # per block, the order its layers are called in
        channels, samples = in_channels, length
        for i, spec in enumerate(conv):
            _check_spec(i, spec)
            out = conv_block_length(samples, spec)
            if out < 1:
                raise EcgError(
                    f"model.conv: layer {i} reduces the window of length {length} to 0 samples "
                    f"(it receives {samples} samples; kernel {spec.kernel}, stride {spec.stride}, "
                    f"pool {spec.pool} {spec.pool_size}/{spec.pool_stride})"
                )
            layers: list[nn.Module] = [
                nn.Conv1d(
                    channels,
                    spec.channels,
                    spec.kernel,
                    stride=spec.stride,
                    padding=spec.kernel // 2,
                    bias=not batch_norm,
                )
            ]
            if batch_norm:
                layers.append(nn.BatchNorm1d(spec.channels))
            layers.append(make_activation(activation, activation_param))
            pool = POOLS[spec.pool]
            if pool is not None:
                layers.append(pool(spec.pool_size, stride=spec.pool_stride))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            # Max pooling commutes with a non-decreasing activation: pooling first computes
            # the same outputs with the activation on 1/pool_size of the samples. Only the
            # order of the calls changes, not the modules (checkpoints keep their keys).
            order = list(range(len(layers)))
            if spec.pool == "max" and activation in POOL_FIRST:
                a = 2 if batch_norm else 1  # index of the activation; the pool follows it
                order[a], order[a + 1] = a + 1, a
            self._order.append(order)
            blocks.append(nn.Sequential(*layers))
            channels, samples = spec.channels, out
        self.features = nn.Sequential(*blocks)
        self.n_features = channels * samples  # flattened conv output, before the RR features

        head: list[nn.Module] = []
        width = self.n_features + n_rr
        for hidden in fc:
            head += [nn.Linear(width, hidden), make_activation(activation, activation_param)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            width = hidden
        head.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*head)

    @classmethod
    def from_args(cls, model_args: Mapping[str, Any]) -> CNN1D:
        """Rebuild a model from ``model.model_args`` (as stored in a checkpoint)."""
        args = dict(model_args)
        try:
            args["conv"] = [ConvSpec(**dict(c)) for c in args.get("conv", [])]
            return cls(**args)
        except TypeError as exc:
            raise EcgError(f"checkpoint model_args: {exc}") from None

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for windows ``x (B, C, T)`` and RR features ``(B, n_rr)``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels or x.shape[2] != self.length:
            raise EcgError(
                f"model input: expected (B, {self.in_channels}, {self.length}) windows, "
                f"got {tuple(x.shape)}"
            )
        z = x
        for block, order in zip(self.features, self._order):
            for i in order:
                z = block[i](z)  # (B, C, T) -> (B, C_last, T_last) after the last block
        z = z.flatten(1)  # -> (B, C_last * T_last)
        if self.n_rr:
            if rr is None or rr.dim() != 2 or rr.shape[1] != self.n_rr:
                got = None if rr is None else tuple(rr.shape)
                raise EcgError(f"model input: expected (B, {self.n_rr}) RR features, got {got}")
            z = torch.cat([z, rr.to(z.dtype)], dim=1)  # -> (B, C_last * T_last + n_rr)
        return self.head(z)  # -> (B, n_classes)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities ``(B, n_classes)``: softmax of the logits."""
        return torch.softmax(self(x, rr), dim=1)


# ----------------------------------------------------------------------------- config -> model
def check_model_config(cfg: Any) -> None:
    """Refuse a ``ModelConfig`` that :class:`CNN1D` would refuse, before any data is read."""
    for i, c in enumerate(_field(cfg, "conv")):
        _check_spec(i, _spec(c))
    fc, dropout = [int(n) for n in _field(cfg, "fc")], float(_field(cfg, "dropout"))
    if any(n < 1 for n in fc):
        raise EcgError(f"model.fc: got {fc}, expected positive sizes")
    if not 0.0 <= dropout < 1.0:
        raise EcgError(f"model.dropout: got {dropout}, expected in [0, 1)")


def _spec(c: Any) -> ConvSpec:
    return ConvSpec(
        channels=int(_field(c, "channels")),
        kernel=int(_field(c, "kernel")),
        stride=int(_field(c, "stride")),
        pool=str(_field(c, "pool")),
        pool_size=int(_field(c, "pool_size")),
        pool_stride=int(_field(c, "pool_stride")),
    )


def _field(cfg: Any, name: str) -> Any:
    return cfg[name] if isinstance(cfg, Mapping) else getattr(cfg, name)


def build_model(cfg: Any, in_channels: int, length: int, n_rr: int, n_classes: int) -> CNN1D:
    """Build a :class:`CNN1D` from a ``ModelConfig`` (dataclass, DictConfig or dict).

    ``cfg.use_rr = False`` drops the RR features (``n_rr = 0``) whatever the data provides.
    """
    conv = [_spec(c) for c in _field(cfg, "conv")]
    return CNN1D(
        in_channels=int(in_channels),
        length=int(length),
        n_rr=int(n_rr) if bool(_field(cfg, "use_rr")) else 0,
        n_classes=int(n_classes),
        conv=conv,
        fc=[int(n) for n in _field(cfg, "fc")],
        activation=str(_field(cfg, "activation")),
        activation_param=float(_field(cfg, "activation_param")),
        batch_norm=bool(_field(cfg, "batch_norm")),
        dropout=float(_field(cfg, "dropout")),
    )


# ----------------------------------------------------------------------------- cost
def count_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_beat(model: nn.Module, in_channels: int, length: int, n_rr: int) -> int:
    """FLOPs for one beat, counted as 2 x multiply-accumulates of the Conv1d and Linear layers.

    ``model`` is anything called as ``model(x, rr)`` (``rr`` is None when ``n_rr == 0``).

    Measured with forward hooks on one zero beat, so it follows whatever the model does
    (strides, pooling, skipped layers). Biases, activations, pooling and BatchNorm are not
    counted: they are O(outputs), small next to the MACs, and BN folds into the conv for
    inference anyway.
    """
    macs = 0

    def conv_hook(mod: nn.Conv1d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        # each output sample: (C_in / groups) * kernel MACs
        macs += out[0].numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0]

    def linear_hook(mod: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel() * mod.in_features

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv1d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    param = next(model.parameters())
    x = torch.zeros(1, in_channels, length, device=param.device, dtype=param.dtype)
    rr = torch.zeros(1, n_rr, device=param.device, dtype=param.dtype) if n_rr else None
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x, rr)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * macs
