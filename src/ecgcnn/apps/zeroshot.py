"""``ecgcnn-zeroshot``: zero-shot personal CNN from abnormal-beat synthesis (Kiranyaz 2017).

    ecgcnn-zeroshot record=208                       # one person -> metrics.json, beats.png
    ecgcnn-zeroshot -m record=100,101,103            # several persons (Hydra multirun)
    ecgcnn-zeroshot summarize=multirun/zeroshot/DIR  # summary.json + report.md/html of a sweep

The schema lives here until it moves into ``ecgcnn.config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import ecgcnn.config  # noqa: F401  (registers the group schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir
from ecgcnn.config import DataConfig, ModelConfig, OptimConfig, TrainerConfig
from ecgcnn.data.cache import load_beats
from ecgcnn.errors import EcgError, cli_errors


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
class ZeroShotConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    record: Optional[str] = None  # noqa: UP045  (OmegaConf needs Optional) the person
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
    beat_scale: str = "none"  # none | std: each window channel scaled to unit std (amplitude drift)
    rr_drop: list[str] = field(default_factory=list)  # RR features zeroed (input masking)
    ensemble: int = 1  # models per person (trainer seeds seed, seed+1, ...), P averaged
    alarm_refractory_s: float = 10.0  # flags within this long after an alarm raise none
    seed: int = 0
    figures: bool = True
    save_model: bool = True
    summarize: Optional[str] = None  # noqa: UP045  a folder of runs: summarize it instead


ConfigStore.instance().store(name="base_zeroshot", node=ZeroShotConfig)


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """One person (``cfg.record``) or, with ``cfg.summarize``, the summary of a folder."""
    from ecgcnn.synthesis.zeroshot import run_patient, summarize_dir

    if cfg.summarize:
        return summarize_dir(Path(cfg.summarize))
    if not cfg.record:
        raise EcgError("record: name the person, e.g. record=208 (or summarize=DIR)")
    record = str(cfg.record)
    if not set(map(str, cfg.library_records)) - {record}:
        raise EcgError("library_records: no patient other than the person for the ABS library")
    data = load_beats(cfg.data, records=sorted({record, *map(str, cfg.library_records)}))
    return run_patient(cfg, data.beats, record, out_dir, save_model=cfg.save_model)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="zeroshot")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    m = run(cfg, out)
    if cfg.summarize:
        g = m["binary_gross"]
        print(f"{m['patients']} patients: F1 {g['F1']:.3f}, Spe {g['Spe']:.3f}, "
              f"P(first 3) {m['p_detect_first3']:.3f}; report: {Path(cfg.summarize)}/report.html")
        return
    b, a = m["binary"], m["alarm"]
    print(f"record {m['record']}: Se {b['Se']}, Spe {b['Spe']}, F1 {b['F1']}, "
          f"first-3 detected {a['detected_first3']}, false alarms/h "
          f"{a['false_alarms_per_hour']}; outputs: {out}")


if __name__ == "__main__":
    main()
