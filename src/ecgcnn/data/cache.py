"""Beat cache: one ``.npz`` per record, keyed by every setting that changes the beats.

``load_beats`` is what every app calls: it reads records with wfdb, segments them and
stores the result, or returns the stored beats when the settings and the source files
(size + modification time) are unchanged. Nothing is written unless every record succeeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from omegaconf import OmegaConf
from tqdm import tqdm

from ecgcnn.atomic import write_npz_atomic
from ecgcnn.data.beats import CLASSES, BeatSet, class_counts_with_dropped, extract_beats
from ecgcnn.data.io import MITDB_RECORDS, MissingLeadError, read_record, resolve_root
from ecgcnn.errors import EcgError

log = logging.getLogger(__name__)

#: Bump when the beat extraction changes, so old caches are not reused.
CACHE_VERSION = 2


@dataclass
class PreparedData:
    beats: dict[str, BeatSet]  # record -> beats, in record order
    info: dict[str, dict]  # record -> {"N": …, …, "dropped": …, "dropped_by_class": {…}}
    skipped: dict[str, str] = field(default_factory=dict)  # record -> reason
    cache_dir: Path | None = None
    from_cache: int = 0

    def all(self, records=None) -> BeatSet:
        names = [r for r in (records or self.beats) if r in self.beats]
        return BeatSet.concat([self.beats[r] for r in names])


def _settings(cfg) -> dict:
    c = OmegaConf.to_container(
        OmegaConf.structured(cfg) if not OmegaConf.is_config(cfg) else cfg, resolve=True
    )
    return {
        "version": CACHE_VERSION,
        "leads": list(c["leads"]),
        "annotator": c["annotator"],
        "fs": c["fs"],
        "resample": c["resample"],
        "filter": c["filter"],
        "beat": c["beat"],
    }


def cache_key(cfg) -> str:
    blob = json.dumps(_settings(cfg), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def _source_signature(root: Path, name: str, annotator: str) -> str:
    parts = []
    for ext in ("hea", "dat", annotator):
        p = root / f"{name}.{ext}"
        st = p.stat() if p.exists() else None
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}" if st else f"{p.name}:-")
    return "|".join(parts)


def _load_cached(path: Path, signature: str):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["signature"]) != signature:
                return None
            beats = BeatSet(**{f.name: z[f.name] for f in fields(BeatSet)})
            info = json.loads(str(z["info"]))
    except Exception:  # noqa: BLE001  (a damaged cache entry is rebuilt, never trusted)
        return None
    return beats, info


def _prepare_record(job) -> tuple[str, BeatSet | None, dict | str]:
    """``(name, beats, info)`` of one record, or ``(name, None, reason)`` when it lacks a lead.
    Runs in a worker process when ``load_beats`` has ``workers > 1``."""
    root, name, cfg = job
    try:
        rec = read_record(root, name, list(cfg.leads), cfg.annotator)
    except MissingLeadError as exc:
        return name, None, str(exc)
    beats, dropped = extract_beats(rec, cfg)
    total = class_counts_with_dropped(rec)
    kept = beats.counts()
    info = {
        **kept,
        "dropped": dropped,
        "dropped_by_class": {c: total[c] - kept[c] for c in CLASSES},
    }
    return name, beats, info


def load_beats(
    cfg, records=None, use_cache: bool = True, progress: bool = False, workers: int = 1
) -> PreparedData:
    """Beats of ``records`` (default ``cfg.records``, else all 48) under data settings ``cfg``.

    Parameters
    ----------
    cfg : ``DataConfig`` (or DictConfig of it)
    records : record names; overrides ``cfg.records``
    use_cache : read and write the cache under ``cfg.cache_dir``
    progress : show a progress bar
    workers : processes that prepare the records not in the cache (each record on its own, so
        the beats do not depend on it)

    Returns
    -------
    PreparedData. Records lacking a requested lead are skipped (warning, listed in ``skipped``);
    any other problem raises :class:`EcgError` before anything is written.
    """
    names = [str(r) for r in (records if records is not None else (cfg.records or MITDB_RECORDS))]
    if not names:
        raise EcgError("data.records: empty record list")
    if workers < 1:
        raise EcgError(f"workers: need at least 1 process, got {workers}")
    root = resolve_root(cfg.root)
    if not root.is_dir():
        raise EcgError(
            f"data.root: {root} is not a directory (set ECGCNN_DATA_DIR or data.root, "
            "or run ecgcnn-download)"
        )
    cdir = Path(cfg.cache_dir) / cache_key(cfg) if use_cache else None
    out = PreparedData(beats={}, info={}, cache_dir=cdir)
    got: dict[str, tuple[BeatSet, dict]] = {}  # record -> (beats, info), cached or fresh
    sigs: dict[str, str] = {}  # record -> source signature, for the records to prepare
    fresh: dict[str, tuple[BeatSet, dict]] = {}  # the prepared ones, for the cache
    # the bar as a context: closed (and, leave=False, cleared) on an error too, so the error is
    # the one line left on the terminal
    with tqdm(
        total=len(names), desc="prepare", unit="rec", disable=not progress, leave=False
    ) as bar:
        for name in names:
            sig = _source_signature(root, name, cfg.annotator)
            hit = _load_cached(cdir / f"{name}.npz", sig) if cdir else None
            if hit:
                got[name] = hit
                out.from_cache += 1
                bar.update()
            else:
                sigs[name] = sig
        jobs = [(root, name, cfg) for name in sigs]
        # in record order as they finish (joblib's processes; one record per task)
        run = Parallel(n_jobs=max(1, min(workers, len(jobs))), return_as="generator")
        results = run(delayed(_prepare_record)(job) for job in jobs)
        for name, beats, info in results:
            bar.update()
            if beats is None:
                log.warning("skipping record %s: %s", name, info)
                out.skipped[name] = info
            else:
                fresh[name] = (beats, info)
    got.update(fresh)
    for name in names:  # in record order
        if name in got:
            out.beats[name], out.info[name] = got[name]
    if cdir:
        for name, (beats, info) in fresh.items():
            arrays = {f.name: getattr(beats, f.name) for f in fields(BeatSet)}
            write_npz_atomic(
                cdir / f"{name}.npz",
                signature=np.array(sigs[name]),
                info=np.array(json.dumps(info)),
                **arrays,
            )
    return out
