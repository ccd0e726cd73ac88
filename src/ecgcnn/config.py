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

#: Hydra config directory: ``$ECGCNN_CONFIG_DIR`` (set in the Docker image), else the
#: ``configs/`` folder of the source tree this package was installed from.
CONFIG_DIR = os.environ.get("ECGCNN_CONFIG_DIR") or str(
    Path(__file__).resolve().parents[2] / "configs"
)


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
Engine = _choice("Engine", "fused torch")  # fused: export.runtime, BN folded; torch: as trained
NoiseType = _choice("NoiseType", "bw ma em mix")
NoiseMeasure = _choice("NoiseMeasure", "nst segments")
Labels = _choice("Labels", "nsv binary")
BeatScale = _choice("BeatScale", "none std running")
RRMode = _choice("RRMode", "source ectopic")
Personalization = _choice("Personalization", "patient_specific zero_shot")
ReviewStrategy = _choice("ReviewStrategy", "margin abnormal")  # personalize/review.py


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
class AbsConfig:
    taps: int = 31  # FIR length (odd, centered); 31 of 128 samples = 170 ms at 360 Hz
    ridge: float = 0.01  # Tikhonov weight, relative to the mean energy of the normal beat
    per_patient: int = 20  # at most this many abnormal beats per class and library patient
    classes: list[str] = _list("S", "V")
    max_residual: float = 1.0  # drop filters with a larger relative fit error (1.0: keep all)


@dataclass
class SynthConfig:
    n_per_class: int = 600  # synthetic beats per abnormal class
    from_average: float = 0.5  # share made from the average normal beat (rest: single beats)
    scale: float = 0.1  # amplitude factor 1 +- scale
    noise: float = 0.01  # Gaussian noise std, mV
    shift: int = 2  # circular shift of the beat channel, samples
    rr_mode: RRMode = RRMode.source  # RR context of the synthetic beats


@dataclass
class ReviewConfig:
    """Review-in-the-loop (``ecgcnn.personalize.review``): after the training minutes the
    model asks for the labels of at most ``budget`` beats, one per ``interval_s`` at most, and
    is fine-tuned every ``retrain_s``; asked beats are not test beats. A protocol of its own."""

    budget: int = 0  # beats a cardiologist labels after the training minutes; 0: off (strict)
    interval_s: float = 60.0  # at most one question per interval of the record
    # fine-tune with the answers so far every this many seconds (300 s: SVEB Se 45.0 instead
    # of 65.6 on 6 hard records: a beat waits up to a round for what its neighbours taught)
    retrain_s: float = 60.0
    strategy: ReviewStrategy = ReviewStrategy.margin  # see review.STRATEGIES
    epochs: int = 1  # fine-tuning epochs per retraining round (2: worse and slower)
    repeat: int = 10  # answered beats repeated this often in the fine-tuning set
    replay: int = 256  # training beats (common set + first minutes) drawn per round; 0: all


@dataclass
class PatientModelConfig(TrainingConfig):
    """How patient-specific models are built (shared by finetune and the noise stress test)."""

    split: PatientSpecificSplit = MISSING
    # input views (data.beat.template values): one model per view, probabilities averaged
    views: list[Template] = _list(Template.none)
    # a common-model checkpoint, or a list with one per view (in order); None: from scratch
    init_from: Any = None
    freeze_conv: bool = False  # with init_from: train only the FC layers
    ensemble: int = 1  # models trained with seeds seed .. seed+ensemble-1, probabilities averaged
    # abnormal-beat synthesis (Sci Rep 2017) as augmentation: synth.n_per_class synthetic beats
    # of each abs.classes class from the patient's own first-minutes N beats, with filters
    # fitted on the other patients' first minutes; 0: off
    abs: AbsConfig = field(default_factory=AbsConfig)
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_per_class=0))
    review: ReviewConfig = field(default_factory=ReviewConfig)


@dataclass
class FinetuneConfig(PatientModelConfig):
    """One patient's model under the patient-specific protocol (Kiranyaz 2016)."""

    views: list[Template] = _list(Template.none, Template.add)
    record: str = MISSING  # the patient
    # the patient's training windows are centred on the reference annotations (the protocol)
    # or on the streaming detector's R peaks (what ecgcnn-monitor will see)
    train_peaks: TrainPeaks = TrainPeaks.annotations
    report: bool = True  # per-patient report.md/html with figures (metrics.json always)


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a training checkpoint (best.pt)
    format: ExportFormat = ExportFormat.torchscript


# ----------------------------------------------------------------------------- monitor
@dataclass
class RuleConfig:
    enabled: bool = True
    severity: Severity = Severity.medium
    refractory_s: float = 30.0  # no second alarm of this rule within this time


def _rule(severity: str, refractory_s: float):
    return field(default_factory=lambda: RuleConfig(True, Severity[severity], refractory_s))


@dataclass
class AlarmConfig:
    """Alarm rules (``ecgcnn.monitor.alarms``): one block per rule, then thresholds."""

    v_beat: RuleConfig = _rule("low", 60.0)
    v_couplet: RuleConfig = _rule("medium", 30.0)
    vt: RuleConfig = _rule("high", 30.0)
    bigeminy: RuleConfig = _rule("medium", 60.0)
    trigeminy: RuleConfig = _rule("medium", 60.0)
    svt: RuleConfig = _rule("medium", 30.0)
    pause: RuleConfig = _rule("high", 10.0)
    brady: RuleConfig = _rule("medium", 60.0)
    tachy: RuleConfig = _rule("medium", 60.0)
    flat_line: RuleConfig = _rule("medium", 10.0)
    saturation: RuleConfig = _rule("medium", 10.0)
    vt_beats: int = 3
    svt_beats: int = 3
    bigeminy_cycles: int = 3
    trigeminy_cycles: int = 3
    pause_s: float = 2.0
    hr_beats: int = 8  # heart rate = 60 / mean of the last hr_beats RR intervals
    brady_bpm: float = 40.0
    tachy_bpm: float = 150.0
    quality_window_s: float = 2.0
    quality_hop_s: float = 0.5
    flat_ptp_mv: float = 0.05
    saturation_run_s: float = 0.1


@dataclass
class QualityConfig:
    """Signal quality (``ecgcnn.monitor.quality``): unreadable segments are shut down (their
    beats written as Q, no alarm from them, reported as shutdown time)."""

    enabled: bool = True
    segment_s: float = 1.0  # verdicts on a fixed grid of this step
    context_s: float = 1.0  # each verdict looks this far on both sides of its segment
    reference_s: float = 300.0  # the low-frequency reference: the record's past ...
    reference_quantile: float = 0.2  # ... at this quantile
    min_agreement: float = 0.85  # two leads: unreadable below this R-peak agreement ...
    max_lf_excess: float = 2.5  # ... and above this 1-4 Hz / 5-25 Hz power over the reference
    min_template_corr: float = 0.85  # ... and a beat there unlike each of the template_beats
    template_beats: int = 16  # beats before it (a PVC run repeats its shape, noise does not)
    # one lead: unreadable above this excess alone; None: a lone lead is never shut down,
    # since wide-complex runs (VT) raise the excess as much as electrode motion does
    max_lf_excess_single: float | None = None


@dataclass
class PlotConfig:
    enabled: bool = True
    start_s: float = 0.0
    duration_s: float = 20.0


@dataclass
class StreamConfig(AppConfig):
    """What the streaming apps share (data: root, annotator; the beats are the model's)."""

    # checkpoint (best.pt / model.pt) or exported model.pt / .onnx; None: the shipped model
    checkpoint: str | None = None
    engine: Engine = Engine.fused
    margin_s: float = 4.0  # zero-phase filter margin beyond the beat windows (both sides)
    num_threads: int = 1
    fs: float | None = None  # required for CSV input
    alarms: AlarmConfig = field(default_factory=AlarmConfig)


@dataclass
class MonitorConfig(StreamConfig):
    record: str | None = None  # WFDB record under data.root ...
    input: str | None = None  # ... or a CSV / .npy file (samples x columns, mV)
    columns: list[int] = _list(0)  # input= columns, one per lead
    leads: list[str] = _list()  # record= leads; [] -> the model's leads
    # more models of the same patient (e.g. <run>/208_m5/model_add.pt, the other view of a
    # two-view patient): every beat's probabilities are averaged over all the models
    also: list[str] = _list()
    chunk_s: float = 1.0
    realtime: bool = False
    max_duration_s: float | None = None  # stream only the first seconds
    score_from_s: float = 0.0  # score beats from here (bxb's -f; 300 = after minute 5)
    quality: QualityConfig = field(default_factory=QualityConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class AnalyzeConfig(StreamConfig):
    """``ecgcnn-analyze``: a whole recording classified offline (the stream in large blocks)."""

    record: str | None = None  # a WFDB record path (no extension), an .edf or a .csv file
    also: list[str] = _list()  # more views of the same patient, averaged
    lead: str | None = None  # the record's lead (name or index) instead of the model's
    block_s: float = 600.0  # signal fed to the stream at a time (memory: one block)
    annotator: str = "ecgcnn"  # <record>.<annotator>, as ecgcnn-personalize writes
    trend_bin_s: float = 3600.0  # heart-rate trend and ectopic counts per bin
    report: bool = True


@dataclass
class LiveConfig(StreamConfig):
    """``ecgcnn-live``: the monitor on a page (``ecgcnn.monitor.live``)."""

    # a WFDB record (name under data.root, or path), an .edf, a CSV, or "-" (CSV on stdin)
    record: str | None = None
    lead: str | None = None  # the record's lead to use in place of the model's (ECG1, 0, ...)
    follow: bool = False  # record is a CSV that grows: read new lines as they arrive
    idle_timeout_s: float | None = None  # follow: end the stream after this long unchanged
    columns: list[int] = _list(0)  # CSV columns, one per lead
    leads: list[str] = _list()  # record leads; [] -> the model's leads
    chunk_s: float = 0.1  # replay chunk: the strip advances in steps this long
    max_duration_s: float | None = None  # replay only the first seconds
    speed: float = 1.0  # initial replay speed: 1, 10, or 0 = as fast as possible
    host: str = "127.0.0.1"  # another address opens the page to other hosts (logged)
    port: int = 8765
    window_s: float = 10.0  # seconds of strip on the page
    refresh_ms: int = 50  # how often the page pulls new points (10x: 0.5 s of signal)
    linger_s: float | None = None  # stop serving this long after the stream ends


# ----------------------------------------------------------------------------- noise stress
@dataclass
class NoiseConfig:
    root: str | None = None  # NSTDB noise records (bw, ma); None -> $ECGCNN_NSTDB_DIR
    types: list[NoiseType] = _list(NoiseType.bw, NoiseType.ma, NoiseType.em)
    snr_db: list[float] = _list(24.0, 18.0, 12.0, 6.0, 0.0, -6.0)
    channel: int = 0  # noise channel added to the first lead; lead i gets (channel + i) mod 2
    offset_s: float = 0.0  # where in the noise record the added noise starts
    clean_minutes: float = 5.0  # nst: noise off before 5:00 ...
    segment_minutes: float = 2.0  # ... then alternately 2 min on, 2 min off
    em_seed: int = 0  # synthetic electrode motion (the NSTDB em record is not available)
    em_band: list[float] = _list(0.5, 10.0)
    # noise size: nst = on the noise's first 300 s (nst/sigamp, as the NSTDB records);
    # segments = on the noise-on segments, so the realized SNR there is the nominal one
    measure: NoiseMeasure = NoiseMeasure.nst


@dataclass
class NoiseStressConfig(PatientModelConfig):
    """Noise stress test of the patient-specific models."""

    records: list[str] = _list()  # [] -> split.records (the 44 patients)
    models_dir: str | None = None  # a benchmark run with <record>_m<minutes>/model.pt
    workers: int = 2  # patient processes, one torch thread each
    monitor_snr_db: list[float] = _list()  # also stream these SNRs (+ clean), ~8 s each
    noise: NoiseConfig = field(default_factory=NoiseConfig)


# ----------------------------------------------------------------------------- zero-shot
@dataclass
class ZeroShotConfig(TrainingConfig):
    """Kiranyaz et al., Sci Rep 2017; the choices are measured in ``docs/experiments.md``."""

    record: str | None = None  # the person
    records: list[str] = _list()  # the persons of the benchmark
    library_records: list[str] = _list()  # ABS filter patients (the person is left out)
    minutes: float = 5.0  # the person's first minutes: their normal beats for training
    labels: Labels = Labels.nsv  # N/S/V outputs, or N vs one abnormal output
    abs: AbsConfig = field(default_factory=AbsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    threshold: float = 0.5  # flag a beat when P(not N) exceeds this
    # raise the threshold per person so that at most this share of their held-out normal
    # beats is flagged; 0: off
    threshold_fpr: float = 0.0
    beat_scale: BeatScale = BeatScale.running  # see synthesis.normalize
    scale_window: int = 60  # beats in the running amplitude median
    # views of the beats (each trained on by `ensemble` models, P(abnormal) averaged over all):
    # the windows, and/or each window minus the median of the beats before it (added / in place)
    template: list[Template] = _list(Template.none, Template.replace)
    template_window: int = 30  # beats in that running median
    template_gate: float = 0.9  # > 0: only beats with pre_local >= this enter the median
    rr_drop: list[str] = _list()  # RR features zeroed (input masking)
    ensemble: int = 3  # models per view and person (trainer seeds seed, seed+1, ...)
    alarm_refractory_s: float = 10.0  # flags within this long after an alarm raise none
    seed: int = 0
    figures: bool = True
    save_model: bool = True
    summarize: str | None = None  # a folder of runs: summarize it instead


# ----------------------------------------------------------------------------- personalization
@dataclass
class KitConfig:
    """``ecgcnn-kit``: a reference kit built once (``ecgcnn.personalize.kit``)."""

    out: str = MISSING  # the kit directory (new or empty)
    reference: str | None = None  # reference database (WFDB folder); None: data.root's default
    generic: str | None = None  # generic model copied as generic.pt; None: the shipped one
    common_epochs: int = 12  # epochs of each view's common model (as the benchmark)
    workers: int = 2  # processes (beat preparation, the views' common models)
    # Hydra overrides of configs/finetune.yaml and configs/zeroshot.yaml for the kit's models
    patient_specific: list[str] = _list()
    zero_shot: list[str] = _list()


@dataclass
class PersonalizeConfig:
    """``ecgcnn-personalize``: one patient's model(s) from a kit plus their first minutes."""

    kit: str = MISSING  # a kit directory (ecgcnn-kit)
    record: str = MISSING  # WFDB record path without extension, an .edf or a .csv
    mode: Personalization = Personalization.patient_specific
    lead: str | None = None  # the record's lead to use for the kit's (e.g. ECG1)
    fs: float | None = None  # sampling rate (required for CSV)
    labels: str | None = None  # a sample,symbol CSV of beat labels instead of the record's own
    reference_annotator: str = "atr"  # the record's reference annotations, when present
    minutes: float = 5.0  # the patient's first minutes used for training
    annotator: str = "ecgcnn"  # extension of the annotation file written
    threads: int = 2  # torch threads
    report: bool = True  # report.md/html (patient_specific) next to metrics.json
    review: ReviewConfig = field(default_factory=ReviewConfig)  # patient_specific only


def register_configs() -> None:
    cs = ConfigStore.instance()
    apps = {
        "prepare": PrepareConfig,
        "download": DownloadConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "finetune": FinetuneConfig,
        "export": ExportConfig,
        "monitor": MonitorConfig,
        "analyze": AnalyzeConfig,
        "live": LiveConfig,
        "noise_stress": NoiseStressConfig,
        "zeroshot": ZeroShotConfig,
        "kit": KitConfig,
        "personalize": PersonalizeConfig,
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
