"""``ecgcnn-eval``: score a checkpoint on a split's test beats and write the report."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.config import check_config
from ecgcnn.data.beats import BeatSet
from ecgcnn.data.cache import load_beats
from ecgcnn.data.splits import patient_specific, split_records
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.evaluation.aami import score
from ecgcnn.evaluation.report import console_table, published_for, write_report
from ecgcnn.training.checkpoint import checkpoint_data_config, load_model
from ecgcnn.training.loop import predict, select_device
from ecgcnn.training.train import check_split_records


def test_beats(data_cfg: DictConfig, split_cfg: DictConfig) -> BeatSet:
    """A split's test beats: DS2, or each patient's record after ``split.minutes``."""
    _, test_recs = split_records(split_cfg)
    if split_cfg.name == "inter_patient":
        data = load_beats(data_cfg, records=test_recs)
        return BeatSet.concat([data.beats[r] for r in test_recs])
    train_recs, _ = split_records(split_cfg)
    data = load_beats(data_cfg, records=sorted(set(train_recs) | set(test_recs)))
    _, patients = patient_specific(data.beats, split_cfg, data_cfg.fs)
    return BeatSet.concat([patients[r].test for r in test_recs])


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Score ``cfg.checkpoint`` on ``cfg.split``'s test beats; write metrics.json + reports."""
    check_config(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if (
        missing
    ):  # `???` in eval.yaml: say so in one line rather than let OmegaConf raise deep inside
        raise EcgError(
            f"{', '.join(missing)}: required setting not given "
            "(e.g. ecgcnn-eval checkpoint=outputs/train/<run>/best.pt)"
        )
    train_recs, test_recs = split_records(cfg.split)
    check_split_records(cfg.data, test_recs if cfg.split.name == "inter_patient" else train_recs)
    model, ck = load_model(cfg.checkpoint)
    data_cfg = checkpoint_data_config(ck, cfg.data, source=cfg.checkpoint)
    beats = test_beats(data_cfg, cfg.split)
    device = select_device(cfg.device)
    probs = predict(model.to(device), beats, device, cfg.batch_size)
    metrics = score(beats.y, probs.argmax(1), records=beats.record)
    metrics["published"] = published_for(cfg.split.name)
    metrics["checkpoint"] = str(cfg.checkpoint)
    metrics["split"] = cfg.split.name
    title = cfg.title or f"ecgcnn evaluation: {cfg.split.name} split"
    write_report(metrics, out_dir, title=title, published=metrics["published"])
    return metrics


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    m = evaluate(cfg, out)

    print(console_table(m, m["published"]))
    print(f"{m['n_beats']} test beats; report: {out / 'report.html'}")


if __name__ == "__main__":
    main()
