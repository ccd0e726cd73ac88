"""``ecgcnn-live``: the monitor on a page - the ECG strip, every beat's class and the alarms.

``ecgcnn-live checkpoint=<run>/model.pt record=119 speed=10`` replays MIT-BIH record 119
through the same beat stream, classifier and alarm engine as ``ecgcnn-monitor`` and serves
http://127.0.0.1:8765/ (Bokeh server, in this process): a scrolling strip of the classified
lead with each beat marked N/S/V/F/Q, the heart rate, the alarms with their priority and
time, beat counts per class; pause, next alarm, 1x / 10x / as fast as possible.
``record=ecg.csv fs=250 follow=true`` follows a growing CSV, ``record=- fs=250`` reads CSV
lines from standard input (a device). Without ``checkpoint`` the shipped default model runs.
``events.jsonl`` in the Hydra run directory holds exactly the events the page shows.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.monitor.live import run_live
from ecgcnn.monitor.models import load_classifier, resolve_checkpoint
from ecgcnn.training.checkpoint import checkpoint_data_config


def live(cfg: DictConfig, out_dir, on_ready=None, stop=None):
    """Load the model, then serve the page until interrupted (see ``monitor.live.run_live``)."""
    import torch

    if cfg.num_threads < 1:
        raise EcgError(f"num_threads: must be >= 1, got {cfg.num_threads}")
    torch.set_num_threads(int(cfg.num_threads))
    path = resolve_checkpoint(cfg.checkpoint)
    classifier, ck, classes = load_classifier(path, cfg.engine)
    data_cfg = checkpoint_data_config(ck, cfg.data, source=path)
    return run_live(cfg, out_dir, classifier, data_cfg, classes, on_ready, stop)


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="live")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    feed = live(
        cfg,
        out,
        on_ready=lambda url, feed: print(
            f"live page: {url}\nevents: {out / 'events.jsonl'}", flush=True
        ),
    )
    print(f"{feed.title}: {feed.n_beats} beats {feed.counts}, {len(feed.alarms)} alarms")


if __name__ == "__main__":
    main()
