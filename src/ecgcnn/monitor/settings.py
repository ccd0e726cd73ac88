"""Schemas of the streaming apps (``ecgcnn-monitor``, ``ecgcnn-analyze``, ``ecgcnn-live``),
registered in Hydra's ConfigStore as ``base_monitor``, ``base_analyze``, ``base_live``.

Imported by :mod:`ecgcnn.config`, which re-exports the names (``from ecgcnn.config import
AlarmConfig`` works).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from ecgcnn.config import AppConfig, Engine, Severity, _list


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
    min_template_corr: float = 0.9  # ... and a beat there unlike each of the template_beats
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
    engine: Engine = Engine.torch
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
    quality: QualityConfig = field(default_factory=QualityConfig)  # as ecgcnn-monitor's


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


_cs = ConfigStore.instance()
for _name, _node in {
    "monitor": MonitorConfig,
    "analyze": AnalyzeConfig,
    "live": LiveConfig,
}.items():
    _cs.store(name=f"base_{_name}", node=_node)
