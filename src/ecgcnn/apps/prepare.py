"""``ecgcnn-prepare``: read, filter and segment records into the beat cache; write summary.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides, write_json
from ecgcnn.config import check_config
from ecgcnn.data.beats import CLASSES
from ecgcnn.data.cache import load_beats
from ecgcnn.data.io import PACED_RECORDS
from ecgcnn.errors import cli_errors

log = logging.getLogger(__name__)


def _total(info: dict[str, dict], names) -> dict[str, int]:
    tot = {c: 0 for c in CLASSES} | {"dropped": 0}
    for n in names:
        for k in tot:
            tot[k] += info[n][k]
    return tot


def prepare(cfg: DictConfig, out_dir: Path) -> dict:
    """Prepare the beats of ``cfg.data.records`` and write ``summary.json`` into ``out_dir``.

    Returns
    -------
    The summary: per-record class counts of kept beats and edge-dropped beats, totals over all
    records and over the 44 non-paced ones, skipped records, cache location and wall time.
    """
    check_config(cfg)
    t0 = time.perf_counter()
    data = load_beats(cfg.data, use_cache=cfg.use_cache, progress=cfg.progress, workers=cfg.workers)
    names = list(data.beats)
    summary = {
        "records": {n: data.info[n] for n in names},
        "totals": _total(data.info, names),
        "totals_44": _total(data.info, [n for n in names if n not in PACED_RECORDS]),
        "skipped": data.skipped,
        "n_records": len(names),
        "from_cache": data.from_cache,
        "cache_dir": str(data.cache_dir) if data.cache_dir else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(Path(out_dir) / "summary.json", summary)
    return summary


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    s = prepare(cfg, out)
    t = s["totals_44"]
    print(
        f"prepared {s['n_records']} records in {s['seconds']} s ({s['from_cache']} from cache); "
        f"44 non-paced: N {t['N']} S {t['S']} V {t['V']} F {t['F']} Q {t['Q']} "
        f"(+{t['dropped']} dropped at edges); skipped: {', '.join(s['skipped']) or 'none'}"
    )
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
