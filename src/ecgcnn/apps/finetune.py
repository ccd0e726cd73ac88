"""``ecgcnn-finetune``: one patient-specific CNN per patient (Kiranyaz, Ince & Gabbouj 2016).

``ecgcnn-finetune record=208`` trains that patient's model on the common set plus the
patient's first ``split.minutes`` minutes and scores it on the rest of the record.
``ecgcnn-finetune -m record=100,101,…`` runs patients through Hydra multirun; the
``SummaryCallback`` (configs/finetune.yaml) gathers them into one summary at the end, and
``ecgcnn-finetune-summary DIR`` does the same for any directory of patient runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.evaluation.report import pct
from ecgcnn.evaluation.summary import format_summary, summarize
from ecgcnn.personalize.patient_specific import (  # noqa: F401  (the app's public names)
    finetune_patient,
    init_paths,
    model_file,
    prepared_template,
    synthetic_beats,
    view_data,
    view_files,
)

log = logging.getLogger(__name__)


class SummaryCallback(Callback):
    """Hydra callback: after a multirun, summarize the patients into the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            s = summarize(sweep)
        except EcgError as exc:
            log.warning("no summary: %s", exc)
            return
        print(format_summary(s) + f"\nsummary: {sweep / 'report.html'}")


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="finetune")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    m = finetune_patient(cfg, out)

    print(
        f"patient {m['record']}: VEB Se {pct(m['VEB']['Se'])} +P {pct(m['VEB']['PPV'])}, "
        f"SVEB Se {pct(m['SVEB']['Se'])} +P {pct(m['SVEB']['PPV'])} on {m['n_beats']} test "
        f"beats ({m['seconds']} s); {out / 'metrics.json'}"
    )


@cli_errors
def summary_main(argv: list[str] | None = None) -> None:
    """``ecgcnn-finetune-summary DIR [OUT]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: ecgcnn-finetune-summary RUN_DIR [OUT_DIR]")
        sys.exit(0 if args else 2)
    s = summarize(Path(args[0]), Path(args[1]) if len(args) > 1 else None)
    print(format_summary(s))


if __name__ == "__main__":
    main()
