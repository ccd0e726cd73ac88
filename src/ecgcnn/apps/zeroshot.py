"""``ecgcnn-zeroshot``: zero-shot personal CNN from abnormal-beat synthesis (Kiranyaz 2017).

ecgcnn-zeroshot record=208                       # one person -> metrics.json, beats.png
ecgcnn-zeroshot -m record=100,101,103            # several persons (Hydra multirun)
ecgcnn-zeroshot summarize=multirun/zeroshot/DIR  # summary.json + report.md/html of a sweep
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the group schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.data.cache import load_beats
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.personalize.zero_shot import check_person, run_patient
from ecgcnn.synthesis.report import summarize_dir


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """One person (``cfg.record``) or, with ``cfg.summarize``, the summary of a folder."""
    if cfg.summarize:
        return summarize_dir(Path(cfg.summarize))
    record = check_person(cfg, cfg.record)
    if not set(map(str, cfg.library_records)) - {record}:
        raise EcgError("library_records: no patient other than the person for the ABS library")
    data = load_beats(cfg.data, records=sorted({record, *map(str, cfg.library_records)}))
    return run_patient(cfg, data.beats, record, out_dir, save_model=cfg.save_model)


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="zeroshot")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    m = run(cfg, out)
    if cfg.summarize:
        g = m["binary_gross"]
        print(
            f"{m['patients']} patients: F1 {g['F1']:.3f}, Spe {g['Spe']:.3f}, "
            f"P(first 3) {m['p_detect_first3']:.3f}; report: {Path(cfg.summarize)}/report.html"
        )
        return
    b, a = m["binary"], m["alarm"]
    print(
        f"record {m['record']}: Se {b['Se']}, Spe {b['Spe']}, F1 {b['F1']}, "
        f"first-3 detected {a['detected_first3']}, false alarms/h "
        f"{a['false_alarms_per_hour']}; outputs: {out}"
    )


if __name__ == "__main__":
    main()
