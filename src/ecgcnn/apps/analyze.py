"""``ecgcnn-analyze``: classify every beat of a whole recording (24-hour Holter and more).

``ecgcnn-analyze checkpoint=<run>/208/model.pt record=/data/holter/rec01`` reads the record (WFDB
at any rate, EDF/EDF+, CSV with ``fs=``), runs the monitor's stream over it in ``block_s``
blocks (same beats and classes as ``ecgcnn-monitor``) and writes ``<record>.ecgcnn`` (WFDB
annotations at the record's rate), ``events.jsonl``, ``summary.json`` and ``report.md``. The
pipeline is :func:`ecgcnn.monitor.analyze.analyze`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import cli_errors
from ecgcnn.monitor.analyze import analyze


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="analyze")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    s = analyze(cfg, out)
    h = s["duration_s"] / 3600
    print(
        f"{s['record']}: {h:.2f} h, {s['beats_classified']} beats {s['class_counts']}, "
        f"alarms { ({k: v for k, v in s['alarms_by_rule'].items() if v}) }, signal loss "
        f"{s['signal_loss_s']} s; {s['seconds']['total']} s"
    )
    q = (s["score"] or {}).get("qrs", {}).get("whole")
    if q:
        print(f"QRS Se {100 * q['se']:.2f}% +P {100 * q['ppv']:.2f}% against the reference")
    print(f"outputs: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
