"""Dataclass schemas for every app, registered in Hydra's ConfigStore.

Each YAML under ``configs/`` names its schema first in ``defaults`` (``base_*``), so a typo
or a wrong type fails when the config is composed, with Hydra's own message.
Record lists live in the YAML files, not here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

#: Hydra config directory: ``$ECGCNN_CONFIG_DIR`` (set in the Docker image), else the
#: ``configs/`` folder of the source tree this package was installed from.
CONFIG_DIR = os.environ.get("ECGCNN_CONFIG_DIR") or str(
    Path(__file__).resolve().parents[2] / "configs"
)


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
    normalize: str = "none"  # none | beat_zscore | beat_minmax | record
    rr_local: int = 10  # previous RR intervals averaged into the local mean RR
    rr_long: int = 300  # previous RR intervals averaged into the long-term (patient) mean RR
    # Each window minus its running template: the sample-wise median of the `template_window`
    # beats before it whose pre_local >= `template_gate` (causal, label-free; what the monitor
    # computes online too). none | add (the difference channels after the plain ones) | replace
    template: str = "none"
    template_window: int = 30
    template_gate: float = 0.9


@dataclass
class FilterConfig:
    kind: str = "bandpass"  # none | bandpass | median | median+bandpass
    low_hz: float = 0.5
    high_hz: float = 40.0
    order: int = 2
    median_s: list[float] = field(default_factory=lambda: [0.2, 0.6])  # de Chazal 2004


@dataclass
class DataConfig:
    root: str | None = None  # WFDB record directory; None -> $ECGCNN_DATA_DIR -> data/mitdb
    records: list[str] = field(default_factory=list)  # [] -> all 48 MIT-BIH records
    leads: list[str] = field(default_factory=lambda: ["MLII"])
    annotator: str = "atr"
    fs: float = 360.0  # the model's rate
    resample: bool = True  # records at another rate: resample (true) or refuse (false)
    cache_dir: str = "outputs/cache"  # beat cache, keyed by the settings below
    filter: FilterConfig = field(default_factory=FilterConfig)
    beat: BeatConfig = field(default_factory=BeatConfig)


@dataclass
class PrepareConfig:
    data: DataConfig = field(default_factory=DataConfig)
    use_cache: bool = True
    progress: bool = True
    workers: int = 1  # processes preparing records in parallel (the beats do not depend on it)


@dataclass
class DownloadConfig:
    target: str = "data/mitdb"
    records: list[str] = field(default_factory=list)  # [] -> the whole database
    base_url: str = "https://physionet.org/files/mitdb/1.0.0/"
    progress: bool = True


# ----------------------------------------------------------------------------- splits
@dataclass
class SplitConfig:
    name: str = MISSING  # patient_specific | inter_patient
    # patient-specific (Kiranyaz 2016)
    records: list[str] = field(default_factory=list)  # the patients (44 non-paced records)
    minutes: float = 5.0  # each patient's first minutes go to training
    common_records: list[str] = field(default_factory=list)  # where the common set is drawn
    common_counts: dict[str, int] = field(default_factory=dict)  # class -> beats
    common_seed: int = 0
    exclude_common_from_test: bool = True  # a common beat never counts as a test beat
    # inter-patient (de Chazal 2004)
    train_records: list[str] = field(default_factory=list)  # DS1
    test_records: list[str] = field(default_factory=list)  # DS2


# ----------------------------------------------------------------------------- model
@dataclass
class ConvLayerConfig:
    channels: int = 32
    kernel: int = 15
    stride: int = 1
    pool: str = "max"  # max | avg | none
    pool_size: int = 3
    pool_stride: int = 3


@dataclass
class ModelConfig:
    name: str = "kiranyaz2016"
    conv: list[ConvLayerConfig] = field(default_factory=list)
    fc: list[int] = field(default_factory=lambda: [16])  # hidden FC sizes; output layer added
    activation: str = "tanh"
    activation_param: float = 1.0  # swish slope c, leaky_relu slope, elu alpha
    batch_norm: bool = False
    dropout: float = 0.0
    use_rr: bool = True


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    scheduler: str = "none"  # none | step | exponential | cosine | plateau
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
    max_epochs: int = 50
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # mixed precision, CUDA only
    num_threads: int = 2
    seed: int = 0
    loss: str = "cross_entropy"  # cross_entropy | mse | hinge
    class_weighting: str = "none"  # none | inverse | sqrt
    balanced_sampling: bool = False
    val_fraction: float = 0.1  # carved from the training patients' beats only
    early_stopping_patience: int = 10
    grad_clip: float = 0.0
    resume: bool = False
    progress: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# ----------------------------------------------------------------------------- apps
@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    # patient_specific only: train the common model on the common set alone ("common"), or on
    # the common set plus every patient's first `split.minutes` ("all")
    train_on: str = "common"


@dataclass
class EvalConfig:
    data: DataConfig = field(default_factory=DataConfig)  # root/cache; beat settings: checkpoint's
    split: SplitConfig = MISSING
    checkpoint: str = MISSING
    device: str = "auto"
    batch_size: int = 4096
    title: str = ""


@dataclass
class AbsConfig:
    taps: int = 31  # FIR length (odd, centered); 31 of 128 samples = 170 ms at 360 Hz
    ridge: float = 0.01  # Tikhonov weight, relative to the mean energy of the normal beat
    per_patient: int = 20  # at most this many abnormal beats per class and library patient
    classes: list[str] = field(default_factory=lambda: ["S", "V"])
    max_residual: float = 1.0  # drop filters with a larger relative fit error (1.0: keep all)


@dataclass
class SynthConfig:
    n_per_class: int = 600  # synthetic beats per abnormal class
    from_average: float = 0.5  # share made from the average normal beat (rest: single beats)
    scale: float = 0.1  # amplitude factor 1 +- scale
    noise: float = 0.01  # Gaussian noise std, mV
    shift: int = 2  # circular shift of the beat channel, samples
    rr_mode: str = "source"  # source | ectopic: RR context of the synthetic beats


@dataclass
class PatientModelConfig:
    """How patient-specific models are built (shared by finetune and the noise stress test)."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = MISSING  # patient_specific: common set, minutes, records
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    # input views (data.beat.template values): one model per view, probabilities averaged;
    # "add" also sees each window minus its running template (see BeatConfig)
    views: list[str] = field(default_factory=lambda: ["none"])
    # a common-model checkpoint, or a list with one per view (in order); None: from scratch
    init_from: Any = None
    freeze_conv: bool = False  # with init_from: train only the FC layers
    ensemble: int = 1  # models trained with seeds seed .. seed+ensemble-1, probabilities averaged
    # abnormal-beat synthesis (Sci Rep 2017) as augmentation: synth.n_per_class synthetic beats
    # of each abs.classes class made from the patient's own first-minutes N beats with filters
    # fitted on the other patients' first minutes (their training beats only); 0: off
    abs: AbsConfig = field(default_factory=AbsConfig)
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_per_class=0))


@dataclass
class FinetuneConfig(PatientModelConfig):
    """One patient's model under the patient-specific protocol (Kiranyaz 2016)."""

    record: str = MISSING  # the patient
    # where the patient's own training windows are centred: on the reference annotations
    # (the protocol), or on the streaming detector's R peaks (what ecgcnn-monitor will see)
    train_peaks: str = "annotations"  # annotations | detector
    report: bool = True  # per-patient report.md/html with figures (metrics.json is always written)


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a training checkpoint (best.pt)
    format: str = "torchscript"  # torchscript | onnx


# ----------------------------------------------------------------------------- monitor
@dataclass
class RuleConfig:
    enabled: bool = True
    severity: str = "medium"  # low | medium | high
    refractory_s: float = 30.0  # no second alarm of this rule within this time


@dataclass
class AlarmConfig:
    """Alarm rules (see ``ecgcnn.monitor.alarms``): one block per rule, then thresholds."""

    v_beat: RuleConfig = field(default_factory=lambda: RuleConfig(True, "low", 60.0))
    v_couplet: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 30.0))
    vt: RuleConfig = field(default_factory=lambda: RuleConfig(True, "high", 30.0))
    bigeminy: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 60.0))
    trigeminy: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 60.0))
    svt: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 30.0))
    pause: RuleConfig = field(default_factory=lambda: RuleConfig(True, "high", 10.0))
    brady: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 60.0))
    tachy: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 60.0))
    flat_line: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 10.0))
    saturation: RuleConfig = field(default_factory=lambda: RuleConfig(True, "medium", 10.0))
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
    """Signal-quality stage (``ecgcnn.monitor.quality``): unreadable segments are shut down
    (their beats written as Q, no alarm from them, reported as shutdown time)."""

    enabled: bool = True
    segment_s: float = 1.0  # verdicts on a fixed grid of this step
    context_s: float = 1.0  # each verdict looks this far on both sides of its segment
    reference_s: float = 300.0  # the low-frequency reference: the record's past ...
    reference_quantile: float = 0.2  # ... at this quantile
    min_agreement: float = 0.85  # two leads: unreadable below this R-peak agreement ...
    max_lf_excess: float = 2.5  # ... and above this 1-4 Hz / 5-25 Hz power over the reference
    min_template_corr: float = 0.85  # ... and a beat there unlike each of the template_beats
    template_beats: int = 16  # beats before it (a PVC run repeats its shape, noise does not)
    # one lead: unreadable above this excess alone; None (default): a lone lead is never shut
    # down, since wide-complex runs (VT) raise the excess as much as electrode motion does
    max_lf_excess_single: float | None = None


@dataclass
class PlotConfig:
    enabled: bool = True
    start_s: float = 0.0
    duration_s: float = 20.0


@dataclass
class MonitorConfig:
    data: DataConfig = field(default_factory=DataConfig)  # root, annotator; beats: checkpoint's
    record: str | None = None  # WFDB record under data.root ...
    input: str | None = None  # ... or a CSV / .npy file (samples x columns, mV)
    fs: float | None = None  # required with input=
    columns: list[int] = field(default_factory=lambda: [0])  # input= columns, one per lead
    leads: list[str] = field(default_factory=list)  # record= leads; [] -> the model's leads
    # checkpoint (best.pt / model.pt) or exported model.pt / .onnx; None: the shipped model
    checkpoint: str | None = None
    # more models of the same patient (e.g. [<run>/208_m5/model_add.pt], the other input view
    # of a two-view patient): every beat's probabilities are averaged over all the models
    also: list[str] = field(default_factory=list)
    engine: str = "torch"  # a checkpoint's runtime: torch (eager, BN folded) | onnx (ONNX Runtime)
    chunk_s: float = 1.0
    realtime: bool = False
    margin_s: float = 4.0  # zero-phase filter margin beyond the beat windows (both sides)
    max_duration_s: float | None = None  # stream only the first seconds
    num_threads: int = 1
    score_from_s: float = 0.0  # score beats from here (bxb's -f; 300 = after minute 5)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class AnalyzeConfig:
    """``ecgcnn-analyze``: a whole recording classified offline (the stream in large blocks)."""

    data: DataConfig = field(default_factory=DataConfig)  # annotator, resample; beats: model's
    record: str | None = None  # a WFDB record path (no extension), an .edf or a .csv file
    # checkpoint or exported model; None: the shipped generic model ('checkpoint' as in
    # ecgcnn-monitor: 'model' is a config group)
    checkpoint: str | None = None
    also: list[str] = field(default_factory=list)  # more views of the same patient, averaged
    lead: str | None = None  # the record's lead (name or index) instead of the model's
    fs: float | None = None  # required for CSV
    engine: str = "torch"  # torch | onnx, as MonitorConfig
    block_s: float = 600.0  # signal fed to the stream at a time (memory: one block)
    margin_s: float = 4.0  # as ecgcnn-monitor: the same beats
    num_threads: int = 1
    annotator: str = "ecgcnn"  # <record>.<annotator>, as ecgcnn-personalize writes
    trend_bin_s: float = 3600.0  # heart-rate trend and ectopic counts per bin
    report: bool = True
    alarms: AlarmConfig = field(default_factory=AlarmConfig)


@dataclass
class LiveConfig:
    """``ecgcnn-live``: the monitor on a page (``ecgcnn.monitor.live``)."""

    data: DataConfig = field(default_factory=DataConfig)  # root; beats: the checkpoint's
    # a WFDB record (name under data.root, or path), an .edf file, a CSV file, or "-" (CSV
    # lines on standard input)
    record: str | None = None
    lead: str | None = None  # the record's lead to use in place of the model's (ECG1, 0, ...)
    follow: bool = False  # record is a CSV that grows: read new lines as they arrive
    idle_timeout_s: float | None = None  # follow: end the stream after this long unchanged
    fs: float | None = None  # required for CSV / stdin; checked against WFDB / EDF
    columns: list[int] = field(default_factory=lambda: [0])  # CSV columns, one per lead
    leads: list[str] = field(default_factory=list)  # record leads; [] -> the model's leads
    checkpoint: str | None = None  # None -> the shipped default model
    engine: str = "torch"  # torch | onnx, as MonitorConfig
    chunk_s: float = 0.1  # replay chunk: the strip advances in steps this long
    margin_s: float = 4.0
    num_threads: int = 1
    max_duration_s: float | None = None  # replay only the first seconds
    speed: float = 1.0  # initial replay speed: 1, 10, or 0 = as fast as possible
    host: str = "127.0.0.1"  # another address opens the page to other hosts (logged)
    port: int = 8765
    window_s: float = 10.0  # seconds of strip on the page
    refresh_ms: int = 50  # how often the page pulls new points (10x: 0.5 s of signal)
    linger_s: float | None = None  # stop serving this long after the stream ends
    alarms: AlarmConfig = field(default_factory=AlarmConfig)


# ----------------------------------------------------------------------------- noise stress
@dataclass
class NoiseConfig:
    root: str | None = None  # NSTDB noise records (bw, ma); None -> $ECGCNN_NSTDB_DIR
    types: list[str] = field(default_factory=lambda: ["bw", "ma", "em"])  # + "mix"
    snr_db: list[float] = field(default_factory=lambda: [24.0, 18.0, 12.0, 6.0, 0.0, -6.0])
    channel: int = 0  # noise channel added to the first lead; lead i gets (channel + i) mod 2
    offset_s: float = 0.0  # where in the noise record the added noise starts
    clean_minutes: float = 5.0  # nst: noise off before 5:00 ...
    segment_minutes: float = 2.0  # ... then alternately 2 min on, 2 min off
    em_seed: int = 0  # synthetic electrode motion (the NSTDB em record is not available)
    em_band: list[float] = field(default_factory=lambda: [0.5, 10.0])
    # noise size: "nst" = first 300 s of the noise (nst/sigamp, what NSTDB records used);
    # "segments" = the noise-on segments, so the realized SNR there equals the nominal one
    measure: str = "nst"


@dataclass
class NoiseStressConfig(PatientModelConfig):
    """Noise stress test of the patient-specific models."""

    records: list[str] = field(default_factory=list)  # [] -> split.records (the 44 patients)
    models_dir: str | None = None  # a benchmark run with <record>_m<minutes>/model.pt
    workers: int = 2  # patient processes, one torch thread each
    monitor_snr_db: list[float] = field(default_factory=list)  # also stream these SNRs (+ clean)
    noise: NoiseConfig = field(default_factory=NoiseConfig)


# ----------------------------------------------------------------------------- zero-shot
@dataclass
class ZeroShotConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    record: str | None = None  # the person
    records: list[str] = field(default_factory=list)  # the persons of the benchmark
    library_records: list[str] = field(default_factory=list)  # ABS filter patients (yaml: 44)
    minutes: float = 5.0  # the person's first minutes: their normal beats for training
    labels: str = "nsv"  # nsv: N/S/V outputs | binary: N vs one abnormal output
    abs: AbsConfig = field(default_factory=AbsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    threshold: float = 0.5  # flag a beat when P(not N) exceeds this
    # raise the threshold per person so that at most this share of their held-out (validation)
    # normal beats is flagged; 0: off
    threshold_fpr: float = 0.0
    beat_scale: str = "none"  # none | std | running (see synthesis.normalize)
    scale_window: int = 60  # beats in the running amplitude median (beat_scale=running)
    # views of the beats, each trained on by `ensemble` models, P(abnormal) averaged over all:
    # none (the windows) | add | replace (each window minus the median of the beats before
    # it, appended as channels or in place of the windows; see synthesis.normalize)
    template: list[str] = field(default_factory=lambda: ["none"])
    template_window: int = 60  # beats in that running median
    template_gate: float = 0.0  # > 0: only beats with pre_local >= this enter the median
    rr_drop: list[str] = field(default_factory=list)  # RR features zeroed (input masking)
    ensemble: int = 1  # models per person (trainer seeds seed, seed+1, ...), P averaged
    alarm_refractory_s: float = 10.0  # flags within this long after an alarm raise none
    seed: int = 0
    figures: bool = True
    save_model: bool = True
    summarize: str | None = None  # a folder of runs: summarize it instead


# ----------------------------------------------------------------------------- personalization
@dataclass
class KitConfig:
    """``ecgcnn-kit``: a reference kit built once from a reference database (see
    ``ecgcnn.personalize.kit``)."""

    out: str = MISSING  # the kit directory (new or empty)
    reference: str | None = None  # reference database (WFDB folder); None: data.root's default
    generic: str | None = None  # generic model copied as generic.pt; None: the shipped one
    common_epochs: int = 12  # epochs of each view's common model (as the benchmark)
    workers: int = 2  # processes (beat preparation, the views' common models)
    # Hydra overrides of configs/finetune.yaml and configs/zeroshot.yaml: the settings the
    # kit's patient-specific and zero-shot models are made with (e.g. 'split.records=[...]')
    patient_specific: list[str] = field(default_factory=list)
    zero_shot: list[str] = field(default_factory=list)


@dataclass
class PersonalizeConfig:
    """``ecgcnn-personalize``: one patient's model(s) from a kit plus their first minutes."""

    kit: str = MISSING  # a kit directory (ecgcnn-kit)
    record: str = MISSING  # WFDB record path without extension, an .edf or a .csv
    mode: str = "patient_specific"  # patient_specific | zero_shot
    lead: str | None = None  # the record's lead to use for the kit's (e.g. ECG1)
    fs: float | None = None  # sampling rate (required for CSV)
    labels: str | None = None  # a sample,symbol CSV of beat labels instead of the record's own
    reference_annotator: str = "atr"  # the record's reference annotations, when present
    minutes: float = 5.0  # the patient's first minutes used for training
    annotator: str = "ecgcnn"  # extension of the annotation file written
    threads: int = 2  # torch threads
    report: bool = True  # report.md/html (patient_specific) next to metrics.json


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_prepare", node=PrepareConfig)
    cs.store(name="base_download", node=DownloadConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_eval", node=EvalConfig)
    cs.store(name="base_finetune", node=FinetuneConfig)
    cs.store(name="base_export", node=ExportConfig)
    cs.store(name="base_monitor", node=MonitorConfig)
    cs.store(name="base_analyze", node=AnalyzeConfig)
    cs.store(name="base_live", node=LiveConfig)
    cs.store(name="base_noise_stress", node=NoiseStressConfig)
    cs.store(name="base_zeroshot", node=ZeroShotConfig)
    cs.store(name="base_kit", node=KitConfig)
    cs.store(name="base_personalize", node=PersonalizeConfig)
    cs.store(group="split", name="base_split", node=SplitConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="optim", name="base_optim", node=OptimConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)


def to_plain(cfg: Any) -> Any:
    """Resolved plain-Python copy of a DictConfig (for checkpoints and JSON)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


register_configs()


# ----------------------------------------------------------------------------- range checks
def _checks(cfg) -> list[tuple[str, bool, str]]:
    """(setting, ok, what is expected) for every section present in ``cfg``."""
    out = []
    get = getattr
    if "data" in cfg:
        from ecgcnn.data.beats import TEMPLATES

        d, b = cfg.data, cfg.data.beat
        out += [
            ("data.fs", d.fs > 0, "> 0 Hz"),
            ("data.leads", len(d.leads) > 0, "at least one lead name"),
            ("data.beat.before", b.before >= 0, ">= 0 samples"),
            ("data.beat.after", b.after > 0, "> 0 samples"),
            ("data.beat.length", b.length >= 2, ">= 2 samples"),
            ("data.beat.trio_before", not b.trio or b.trio_before >= 0, ">= 0 samples"),
            ("data.beat.trio_after", not b.trio or b.trio_after > 0, "> 0 samples"),
            ("data.beat.rr_local", b.rr_local >= 1, ">= 1 beat"),
            ("data.beat.rr_long", b.rr_long >= 1, ">= 1 beat"),
            ("data.beat.template", b.template in TEMPLATES, f"one of {', '.join(TEMPLATES)}"),
            ("data.beat.template_window", b.template_window >= 1, ">= 1 beat"),
        ]
    if "split" in cfg and get(cfg.split, "name", None) == "patient_specific":
        s = cfg.split
        out += [
            ("split.minutes", s.minutes > 0, "> 0 minutes"),
            ("split.common_counts", all(v >= 0 for v in s.common_counts.values()), "counts >= 0"),
        ]
    if "model" in cfg:
        from ecgcnn.models.cnn1d import ACTIVATIONS

        m = cfg.model
        out += [
            (
                "model.activation",
                m.activation in ACTIVATIONS,
                f"one of {', '.join(sorted(ACTIVATIONS))}",
            ),
            ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)"),
            ("model.fc", all(n >= 1 for n in m.fc), "positive sizes"),
        ]
        for i, c in enumerate(m.conv):
            out += [
                (
                    f"model.conv[{i}]",
                    c.channels >= 1 and c.kernel >= 1 and c.stride >= 1,
                    "channels, kernel and stride >= 1",
                )
            ]
    if "optim" in cfg:
        out += [
            ("optim.lr", cfg.optim.lr > 0, "> 0"),
            ("optim.weight_decay", cfg.optim.weight_decay >= 0, ">= 0"),
        ]
    if "trainer" in cfg:
        t = cfg.trainer
        out += [
            ("trainer.max_epochs", t.max_epochs >= 1, ">= 1"),
            ("trainer.batch_size", t.batch_size >= 1, ">= 1"),
            ("trainer.num_threads", t.num_threads >= 1, ">= 1"),
            ("trainer.val_fraction", 0 <= t.val_fraction < 1, "in [0, 1)"),
            ("trainer.device", t.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
        ]
    return out


def check_config(cfg) -> None:
    """Refuse out-of-range settings before any work starts (types are Hydra's job)."""
    from ecgcnn.errors import EcgError

    for key, ok, expected in _checks(cfg):
        if not ok:
            value = cfg
            try:
                for part in key.replace("[", ".").replace("]", "").split("."):
                    value = value[int(part)] if part.isdigit() else value[part]
            except (KeyError, IndexError, TypeError):
                value = "?"
            raise EcgError(f"{key}: got {value}, expected {expected}")
