"""``ecgcnn-eval``: score a checkpoint on a split's test beats and write the report."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.apps.train import check_split_records
from ecgcnn.config import DataConfig, check_config
from ecgcnn.data.beats import BeatSet
from ecgcnn.data.cache import load_beats
from ecgcnn.data.splits import patient_specific, split_records
from ecgcnn.errors import EcgError, cli_errors
from ecgcnn.evaluation.aami import score
from ecgcnn.evaluation.report import console_table, published_for, write_report
from ecgcnn.models import CNN1D
from ecgcnn.training.checkpoint import load_checkpoint
from ecgcnn.training.loop import predict, select_device


def load_model(path) -> tuple[CNN1D, dict]:
    """Rebuild a model from a checkpoint (``weights_only=True``); errors name the file."""
    ck = load_checkpoint(path)
    try:
        model = CNN1D.from_args(ck["model_args"])
        model.load_state_dict(ck["model"])
    except (EcgError, RuntimeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        msg = str(exc).strip().splitlines()[0][:160]
        raise EcgError(f"{path}: checkpoint does not fit its model ({msg})") from None
    model.eval()
    return model, ck


def checkpoint_data_config(ck: dict, data_cfg: DictConfig, source="checkpoint") -> DictConfig:
    """The checkpoint's beat settings (windows, filter, leads) with this run's root, cache and
    resampling policy (how to read records is the user's choice, not the model's)."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), ck.get("data") or {})
    except (OmegaConfBaseException, ValueError) as exc:  # unknown keys, bad values, not a dict
        msg = str(exc).strip().splitlines()[0][:160]
        raise EcgError(f"{source}: checkpoint data settings do not fit DataConfig ({msg})") from None
    cfg.root, cfg.cache_dir, cfg.resample = data_cfg.root, data_cfg.cache_dir, data_cfg.resample
    return cfg


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
    if missing:  # `???` in eval.yaml: say so in one line rather than let OmegaConf raise deep inside
        raise EcgError(f"{', '.join(missing)}: required setting not given "
                       "(e.g. ecgcnn-eval checkpoint=outputs/train/<run>/best.pt)")
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
