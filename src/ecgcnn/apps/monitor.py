"""``ecgcnn-monitor``: replay a record as a live stream, classify every beat, raise alarms.

``ecgcnn-monitor checkpoint=outputs/finetune/<run>/model.pt record=208`` streams MIT-BIH
record 208 (lead by name, default the model's, MLII) in ``chunk_s`` chunks, at full speed or
paced to real time (``realtime=true``), with no annotations at run time: QRS detection,
beat windows and RR features (``monitor.stream``), the patient's CNN, alarm rules
(``monitor.alarms``). ``input=ecg.csv fs=250 columns=[1]`` streams a CSV or ``.npy`` file.
Without ``checkpoint`` the shipped generic model is used.

Outputs in the Hydra run directory: ``events.jsonl`` (one line per beat and per alarm, written
as they happen), ``monitor_summary.json`` and ``monitor.png`` (``plot.start_s``,
``plot.duration_s``). When the record has reference annotations the summary also scores the
detector (EC57 QRS Se/+P, 150 ms window) and the classification after detection (see
:func:`ecgcnn.monitor.scoring.score_stream`). The pipeline is :func:`ecgcnn.monitor.session.monitor`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import cli_errors
from ecgcnn.monitor.models import load_classifier  # noqa: F401  (public: ecgcnn.apps.monitor)
from ecgcnn.monitor.scoring import score_stream  # noqa: F401
from ecgcnn.monitor.session import monitor


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="monitor")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    s = monitor(cfg, out)
    p = s["processing"]
    print(
        f"{s['record']}: {s['beats_classified']} beats {s['class_counts']}, "
        f"{s['alarms']} alarms { ({k: v for k, v in s['alarms_by_rule'].items() if v}) }; "
        f"{p['realtime_factor']}x real time, latency p99 {s['latency_ms']['p99']} ms, "
        f"delay {s['delay_s']['emitted_p50']} s"
    )
    if s["score"]:
        q, c = s["score"]["qrs"]["whole"], s["score"]["classification"]

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}%"

        print(
            f"QRS Se {pct(q['se'])} +P {pct(q['ppv'])}; VEB Se {pct(c['VEB']['Se'])} "
            f"+P {pct(c['VEB']['PPV'])}; SVEB Se {pct(c['SVEB']['Se'])} "
            f"+P {pct(c['SVEB']['PPV'])} (EC57/bxb conventions, see score_stream)"
        )
    print(f"outputs: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
