"""Dataclass schemas for every app, registered in Hydra's ConfigStore as ``base_*``.

Each default lives here once; a YAML under ``configs/`` names its schema first in ``defaults``
and lists only what it changes. A setting with a fixed set of values is an :class:`Enum`, so
Hydra refuses a bad one (``model.activation=wiggle``) when the config is composed; values are
given by name. Range checks live beside the code that needs them (:func:`check_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

#: Hydra config directory: the YAMLs ship inside the package (package data), so an installed
#: ecgcnn works from any directory; ``$ECGCNN_CONFIG_DIR`` points the apps at a copy of yours.
CONFIG_DIR = os.environ.get("ECGCNN_CONFIG_DIR") or str(Path(__file__).resolve().parent / "configs")


class Choice(str, Enum):
    """A setting's allowed values. Members are strings (``Pool.max == "max"``) that print as
    their value, so code comparing with a string literal or using one as a dict key works."""

    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__


def _choice(name: str, values: str) -> type[Choice]:
    """A :class:`Choice` whose members are named by their values (``"median+bandpass"`` too)."""
    return Choice(name, {v: v for v in values.split()}, module=__name__, qualname=name)


FilterKind = _choice("FilterKind", "none bandpass median median+bandpass")
Normalize = _choice("Normalize", "none beat_zscore beat_minmax record")
Template = _choice("Template", "none add replace")  # running-template views (data/beats.py)
Protocol = _choice("Protocol", "patient_specific inter_patient")
Pool = _choice("Pool", "max avg none")
Activation = _choice(
    "Activation", "relu relu6 tanh sigmoid softplus leaky_relu prelu rrelu elu swish"
)
Optimizer = _choice("Optimizer", "adam sgd")
Scheduler = _choice("Scheduler", "none step exponential cosine plateau")
Device = _choice("Device", "auto cpu cuda")
Loss = _choice("Loss", "cross_entropy mse hinge")
ClassWeighting = _choice("ClassWeighting", "none inverse sqrt")
TrainOn = _choice("TrainOn", "common all")
TrainPeaks = _choice("TrainPeaks", "annotations detector")
ExportFormat = _choice("ExportFormat", "torchscript onnx")
Severity = _choice("Severity", "low medium high")
Engine = _choice("Engine", "torch onnx")  # torch: eager, BN folded; onnx: ONNX Runtime
NoiseType = _choice("NoiseType", "bw ma em mix")
NoiseMeasure = _choice("NoiseMeasure", "nst segments")
Labels = _choice("Labels", "nsv binary")
BeatScale = _choice("BeatScale", "none std running")
RRMode = _choice("RRMode", "source ectopic")
Personalization = _choice("Personalization", "patient_specific zero_shot")


def _list(*items):
    return field(default_factory=lambda: list(items))


# ----------------------------------------------------------------------------- data
@dataclass
class BeatConfig:
    """Beat windows around each R peak, in samples at ``DataConfig.fs``."""

    before: int = 90  # 250 ms at 360 Hz: P wave and PR segment
    after: int = 162  # 450 ms: QRS and T wave
    length: int = 128  # resampled window length fed to the CNN
    trio: bool = True  # add the beat trio (previous + current + next beat) as a channel
    trio_before: int = 432  # 1.2 s: reaches the previous beat at heart rates >= 50 bpm
    trio_after: int = 432
    normalize: Normalize = Normalize.none
    rr_local: int = 10  # previous RR intervals averaged into the local mean RR
    rr_long: int = 300  # ... into the long-term (patient) mean RR
    # each window minus its running template, the sample-wise median of the `template_window`
    # beats before it with pre_local >= `template_gate` (causal, label-free, as the monitor):
    # add = the difference channels after the plain ones, replace = instead of them
    template: Template = Template.none
    template_window: int = 30
    template_gate: float = 0.9


@dataclass
class FilterConfig:
    kind: FilterKind = FilterKind.bandpass
    low_hz: float = 0.5
    high_hz: float = 40.0
    order: int = 2
    median_s: list[float] = _list(0.2, 0.6)  # de Chazal 2004


@dataclass
class DataConfig:
    root: str | None = None  # WFDB record directory; None -> $ECGCNN_DATA_DIR -> data/mitdb
    records: list[str] = _list()  # [] -> all 48 MIT-BIH records
    leads: list[str] = _list("MLII")  # by name; "other": the record's next lead
    annotator: str = "atr"
    fs: float = 360.0  # the model's rate
    resample: bool = True  # records at another rate: resample (true) or refuse (false)
    cache_dir: str = "outputs/cache"  # beat cache, keyed by the settings below
    filter: FilterConfig = field(default_factory=FilterConfig)
    beat: BeatConfig = field(default_factory=BeatConfig)


@dataclass
class AppConfig:
    """What every app that reads records has."""

    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class PrepareConfig(AppConfig):
    use_cache: bool = True
    progress: bool = True
    workers: int = 1  # processes preparing records in parallel (the beats do not depend on it)


@dataclass
class DownloadConfig:
    target: str = "data/mitdb"
    records: list[str] = _list()  # [] -> the whole database
    base_url: str = "https://physionet.org/files/mitdb/1.0.0/"
    progress: bool = True


# ----------------------------------------------------------------------------- splits
@dataclass
class SplitConfig:
    """What both protocols' splits have (the ``split`` group: one schema per protocol)."""

    name: Protocol = MISSING


@dataclass
class PatientSpecificSplit(SplitConfig):
    """Kiranyaz 2016: each patient's first ``minutes`` train, the rest of the record tests."""

    name: Protocol = Protocol.patient_specific
    records: list[str] = _list()  # the patients (the 44 non-paced records)
    minutes: float = 5.0
    common_records: list[str] = _list()  # where the common set is drawn
    common_counts: dict[str, int] = field(default_factory=dict)  # class -> beats
    common_seed: int = 0
    exclude_common_from_test: bool = True  # a common beat never counts as a test beat


@dataclass
class InterPatientSplit(SplitConfig):
    """de Chazal 2004: train on DS1, test on DS2."""

    name: Protocol = Protocol.inter_patient
    train_records: list[str] = _list()  # DS1
    test_records: list[str] = _list()  # DS2


# ----------------------------------------------------------------------------- model
@dataclass
class ConvLayerConfig:
    channels: int = 32
    kernel: int = 15
    stride: int = 1
    pool: Pool = Pool.max
    pool_size: int = 3
    pool_stride: int = 3


@dataclass
class ModelConfig:
    """Kiranyaz 2016's CNN (``configs/model/kiranyaz2016.yaml`` says how it follows the paper)."""

    name: str = "kiranyaz2016"
    conv: list[ConvLayerConfig] = field(
        default_factory=lambda: [
            ConvLayerConfig(32, 15),
            ConvLayerConfig(16, 15, pool_size=14, pool_stride=14),
        ]
    )
    fc: list[int] = _list(10)  # hidden FC sizes; the output layer is added
    activation: Activation = Activation.tanh
    activation_param: float = 1.0  # swish slope c, leaky_relu slope, elu alpha
    batch_norm: bool = False
    dropout: float = 0.0
    use_rr: bool = True


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    scheduler: Scheduler = Scheduler.none
    step_size: int = 10
    gamma: float = 0.5


@dataclass
class AugmentConfig:
    enabled: bool = False
    scale: float = 0.1  # amplitude scaling, +- fraction
    wander: float = 0.05  # baseline wander amplitude, mV
    noise: float = 0.02  # Gaussian noise std, mV
    motion: float = 0.0  # electrode-motion-like step/burst amplitude, mV
    shift: int = 3  # time shift, samples of the resampled window


@dataclass
class TrainerConfig:
    """CPU training (``trainer=cpu``): deterministic for a given seed."""

    max_epochs: int = 30
    batch_size: int = 64
    device: Device = Device.cpu
    amp: bool = False  # mixed precision, CUDA only
    num_threads: int = 2
    seed: int = 0
    loss: Loss = Loss.cross_entropy
    class_weighting: ClassWeighting = ClassWeighting.sqrt
    balanced_sampling: bool = False
    val_fraction: float = 0.1  # carved from the training patients' beats only
    early_stopping_patience: int = 5
    resume: bool = False
    progress: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainingConfig(AppConfig):
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING


# ----------------------------------------------------------------------------- apps
@dataclass
class TrainConfig(TrainingConfig):
    split: Any = MISSING  # PatientSpecificSplit or InterPatientSplit
    # patient_specific only: the common model on the common set alone, or on the common set
    # plus every patient's first `split.minutes` (all)
    train_on: TrainOn = TrainOn.common


@dataclass
class EvalConfig(AppConfig):  # data: root/cache only, the beat settings are the checkpoint's
    split: Any = MISSING
    checkpoint: str = MISSING
    device: Device = Device.auto
    batch_size: int = 4096
    title: str = ""


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a training checkpoint (best.pt)
    format: ExportFormat = ExportFormat.torchscript


def register_configs() -> None:
    cs = ConfigStore.instance()
    apps = {
        "prepare": PrepareConfig,
        "download": DownloadConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "export": ExportConfig,
    }
    for name, node in apps.items():
        cs.store(name=f"base_{name}", node=node)
    groups = {
        ("data", "base_data"): DataConfig,
        ("split", "base_patient_specific"): PatientSpecificSplit,
        ("split", "base_inter_patient"): InterPatientSplit,
        ("model", "base_model"): ModelConfig,
        ("optim", "base_optim"): OptimConfig,
        ("trainer", "base_trainer"): TrainerConfig,
    }
    for (group, name), node in groups.items():
        cs.store(group=group, name=name, node=node)


def to_plain(cfg: Any) -> Any:
    """Resolved plain-Python copy of a DictConfig (choices as strings: checkpoints and JSON)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


register_configs()

#: Schemas that live beside their code; importing them registers them, and
#: ``from ecgcnn.config import MonitorConfig`` still works (module ``__getattr__``).
_ELSEWHERE = {
    "ecgcnn.monitor.settings": "RuleConfig AlarmConfig QualityConfig PlotConfig StreamConfig "
    "MonitorConfig AnalyzeConfig LiveConfig",
    "ecgcnn.personalize.settings": "AbsConfig SynthConfig PatientModelConfig FinetuneConfig "
    "NoiseConfig RealEmConfig NoiseStressConfig ZeroShotConfig KitConfig PersonalizeConfig",
}
_WHERE = {name: mod for mod, names in _ELSEWHERE.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_config(cfg) -> None:
    """Refuse out-of-range settings before any work starts (types and choices are Hydra's
    job); each section is checked by the module that uses it."""
    if "data" in cfg:
        from ecgcnn.data.beats import check_data_config

        check_data_config(cfg.data)
    if "split" in cfg and cfg.split.get("name") == Protocol.patient_specific:
        from ecgcnn.data.splits import check_patient_split

        check_patient_split(cfg.split)
    if "model" in cfg:
        from ecgcnn.models.cnn1d import check_model_config

        check_model_config(cfg.model)
    if "optim" in cfg or "trainer" in cfg:
        from ecgcnn.training.loop import check_training_config

        check_training_config(cfg.get("optim"), cfg.get("trainer"))


# last: they import the names above (and register base_monitor, base_finetune, ...)
import ecgcnn.monitor.settings
import ecgcnn.personalize.settings  # noqa: F401
