"""``ecgcnn-personalize``: one patient's model(s) from a reference kit plus their first minutes.

    ecgcnn-personalize kit=kits/mitdb record=/data/svdb/801 lead=ECG1
    ecgcnn-personalize kit=kits/mitdb record=holter.edf mode=zero_shot lead="ECG II"
    ecgcnn-personalize kit=kits/mitdb record=beats.csv fs=250 mode=zero_shot

Writes the personal model(s), ``<record>.ecgcnn`` (WFDB annotations at the record's rate),
``metrics.json`` and a report (when the record has labels) into the run directory.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import cli_errors
from ecgcnn.evaluation.report import pct
from ecgcnn.personalize.run import personalize_record


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="personalize")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    m = personalize_record(cfg, out)
    line = f"{m['record']} ({m['mode']}, {m['beats']} beats at {m['fs']:g} Hz)"
    if "VEB" in m:
        line += (
            f": VEB Se {pct(m['VEB']['Se'])} +P {pct(m['VEB']['PPV'])}, SVEB Se "
            f"{pct(m['SVEB']['Se'])} +P {pct(m['SVEB']['PPV'])}"
        )
    elif "binary" in m:
        b = m["binary"]
        line += f": Se {pct(b['Se'])} +P {pct(b['PPV'])} F1 {pct(b['F1'])}"
    if "review" in m:
        line += f" ({m['review']['asked']} beats asked and not scored: review-in-the-loop)"
    print(f"{line} in {m['seconds']} s; annotations: {m['annotations']}")


if __name__ == "__main__":
    main()
