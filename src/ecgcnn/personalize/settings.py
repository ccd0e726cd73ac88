"""Schemas of the personal-model apps: patient-specific (``ecgcnn-finetune``, the noise stress
test), zero-shot (``ecgcnn-zeroshot``), the kit and ``ecgcnn-personalize``; registered in
Hydra's ConfigStore as ``base_finetune``, ``base_noise_stress``, ``base_zeroshot``,
``base_kit``, ``base_personalize``.

Imported by :mod:`ecgcnn.config`, which re-exports the names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ecgcnn.config import (
    BeatScale,
    Choice,
    Labels,
    NoiseMeasure,
    NoiseType,
    PatientSpecificSplit,
    Personalization,
    RRMode,
    Template,
    TrainingConfig,
    TrainPeaks,
    _choice,
    _list,
)
from ecgcnn.monitor.settings import AlarmConfig, QualityConfig

ReviewStrategy = _choice("ReviewStrategy", "margin abnormal")  # personalize/review.py


# ----------------------------------------------------------------------------- patient-specific
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


NoiseStressMode = Choice(
    "NoiseStressMode",
    {"real_em": "real_em", "generated": "generated"},
    module=__name__,
    qualname="NoiseStressMode",
)


@dataclass
class RealEmConfig:
    """``ecgcnn-noise-stress mode=real_em``: the monitor under PhysioNet's real electrode motion
    (``ecgcnn.noise.real_em``), without and with the quality stage."""

    root: str | None = None  # the NSTDB 118e24..118e_6 records; None -> <data.root>/../nstdb-118e
    # 118: the NSTDB records themselves; any other record gets the em recovered from them
    # (118e_6 - 118) added as nst adds it: a held-out check of settings chosen on 118
    records: list[str] = _list("118")
    snr_db: list[float] = _list(24.0, 18.0, 12.0, 6.0, 0.0, -6.0)
    score_from_s: float = 300.0  # bxb's default start (the noise starts at 5:00)
    match_s: float = 10.0  # an alarm of the clean run within this of a noisy one is no new alarm
    max_minutes: float | None = None  # stream only the first minutes (quick runs)
    shipped: bool = False  # the shipped generic model instead of each patient's own
    bxb: bool = True  # also score the written annotations with WFDB's bxb


@dataclass
class NoiseStressConfig(PatientModelConfig):
    """Noise stress test: the monitor under real em (default), or the patient models' beats
    under generated noise (``mode=generated``)."""

    mode: NoiseStressMode = NoiseStressMode.real_em
    records: list[str] = _list()  # generated: [] -> split.records (the 44 patients)
    models_dir: str | None = None  # a benchmark run with <record>_m<minutes>/model.pt
    workers: int = 2  # joblib processes, one torch thread each
    monitor_snr_db: list[float] = _list()  # generated: also stream these SNRs (+ clean)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    real_em: RealEmConfig = field(default_factory=RealEmConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)  # real_em: the "with" stage
    alarms: AlarmConfig = field(default_factory=AlarmConfig)


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


_cs = ConfigStore.instance()
for _name, _node in {
    "finetune": FinetuneConfig,
    "noise_stress": NoiseStressConfig,
    "zeroshot": ZeroShotConfig,
    "kit": KitConfig,
    "personalize": PersonalizeConfig,
}.items():
    _cs.store(name=f"base_{_name}", node=_node)
