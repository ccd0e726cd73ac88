"""A reference kit: what a new patient needs from the reference database, built once.

``build_kit`` writes into one directory

- ``common_beats.npz``: the common beat set (prepared with every view's channels),
- ``common_<view>.pt``: the common model of each input view (``views``, default [none, add]),
  trained as ``scripts/benchmark_patient_specific.py`` does: on the common set + every reference
  patient's first minutes,
- ``abs_library.npz``: the ABS filter library of the zero-shot method, fitted on every library
  record with each filter's source record (so a reference patient is personalized
  leave-one-out: :func:`ecgcnn.personalize.zero_shot.person_library` drops their filters),
- ``generic.pt``: the generic model for recordings without labelled minutes: the shipped
  inter-patient model (``ecgcnn.models.shipped``) unless another path is given at build time,
- ``kit.json``: ecgcnn version, kit format version, the resolved patient-specific and zero-shot
  settings the files were made with, the record lists and the sha256 of every file.

``load_kit`` checks the format version and every checksum first: a kit of another format or a
damaged one is one :class:`EcgError` line naming the file.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ecgcnn.atomic import write_json, write_npz_atomic
from ecgcnn.data.beats import BeatSet
from ecgcnn.errors import EcgError
from ecgcnn.synthesis.abs_filters import FilterLibrary

#: Bumped whenever the files or their meaning change; a kit of another format is refused.
KIT_FORMAT = 1
MANIFEST = "kit.json"


def ecgcnn_version() -> str:
    try:
        return version("ecgcnn")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Kit:
    """A loaded, verified kit.

    Attributes
    ----------
    root : the kit directory
    manifest : kit.json
    patient_specific : ``FinetuneConfig`` the common models were made with (``record`` "kit")
    zero_shot : ``ZeroShotConfig`` the library was made with
    common : the common beat set (prepared with ``data.beat.template=prepared``)
    prepared : the template the common beats carry (every view is cut from it)
    common_models : one checkpoint path per view of ``patient_specific.views``
    library : the ABS filters (every library record's)
    generic : the generic model's path, or None
    """

    root: Path
    manifest: dict
    patient_specific: DictConfig
    zero_shot: DictConfig
    common: BeatSet
    prepared: str
    common_models: list[Path]
    library: FilterLibrary
    generic: Path | None

    @property
    def fs(self) -> float:
        """The model rate: every record is resampled to it."""
        return float(self.patient_specific.data.fs)


def compose_config(config_name: str, overrides) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra ``overrides``, also from inside a
    running Hydra app (whose global state is set aside for the call and put back)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ecgcnn.config import CONFIG_DIR

    gh = GlobalHydra.instance()
    saved = gh.hydra
    gh.clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        gh.hydra = saved


def compose_settings(overrides, config_name: str, extra=()) -> DictConfig:
    """A protocol's config (``finetune`` or ``zeroshot``) with Hydra ``overrides``."""
    cfg = compose_config(config_name, [*extra, *overrides])
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg


def _train_common_job(job) -> str:
    from ecgcnn.personalize.common import common_config, train_common

    overrides, view, beats, prepared, out, minutes, epochs = job
    cfg = common_config(overrides, view, minutes, epochs)
    return str(train_common(cfg, view, beats, prepared, Path(out)))


def build_kit(cfg, log=print) -> Path:
    """Build a kit into ``cfg.out`` (new or empty).

    Parameters
    ----------
    cfg : ``KitConfig``
    log : progress lines

    Returns
    -------
    the kit directory
    """
    from joblib import Parallel, delayed

    from ecgcnn.data.cache import load_beats
    from ecgcnn.data.splits import draw_common_set
    from ecgcnn.personalize.patient_specific import prepared_template, view_data
    from ecgcnn.synthesis.abs_filters import build_library

    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EcgError(f"{out}: kit directory exists and is not empty (nothing is overwritten)")
    t0 = time.perf_counter()
    root = [f"data.root={cfg.reference}"] if cfg.reference else []
    ps_over = [*root, *cfg.patient_specific]
    # fine-tuning from a common model uses trainer=finetune, as the benchmark does
    tuned = [] if any(o.startswith("trainer=") for o in ps_over) else ["trainer=finetune"]
    ps = compose_settings(ps_over, "finetune", extra=["record=kit", *tuned])
    zs = compose_settings([*root, *cfg.zero_shot], "zeroshot")
    views = [str(v) for v in ps.views]
    prepared = prepared_template(views)
    records = sorted(set(map(str, ps.split.records)) | set(map(str, ps.split.common_records)))
    beats = load_beats(
        view_data(ps.data, prepared), records=records, workers=int(cfg.workers)
    ).beats
    split = ps.split
    common = draw_common_set(
        beats,
        list(map(str, split.common_records)),
        dict(split.common_counts),
        int(split.common_seed),
    )
    log(
        f"kit: {len(records)} reference records prepared, common set {common.counts()} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    out.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    names = [f"common_{v}" for v in views]
    jobs = [
        (
            ps_over,
            v,
            beats,
            prepared,
            str(out / f".train_{n}"),
            float(split.minutes),
            int(cfg.common_epochs),
        )
        for v, n in zip(views, names)
    ]
    # one process per view (each seeds torch's global RNG: threads would race on it)
    paths = Parallel(n_jobs=min(len(jobs), max(1, int(cfg.workers))))(
        delayed(_train_common_job)(j) for j in jobs
    )
    for path, n in zip(paths, names):
        shutil.move(path, out / f"{n}.pt")
        shutil.rmtree(out / f".train_{n}")
    log(f"kit: common models {views} trained in {time.perf_counter() - t1:.1f} s")
    write_npz_atomic(
        out / "common_beats.npz", **{f.name: getattr(common, f.name) for f in fields(BeatSet)}
    )
    lib_records = [str(r) for r in zs.library_records]
    zbeats = load_beats(zs.data, records=lib_records, workers=int(cfg.workers)).beats
    a = zs.abs
    lib = build_library(
        zbeats,
        lib_records,
        None,
        int(a.taps),
        float(a.ridge),
        int(a.per_patient),
        int(zs.seed),
        tuple(a.classes),
        float(a.max_residual),
    )
    write_npz_atomic(
        out / "abs_library.npz", **{f.name: getattr(lib, f.name) for f in fields(FilterLibrary)}
    )
    files = ["common_beats.npz", "abs_library.npz", *[f"{n}.pt" for n in names]]
    from ecgcnn.models.shipped import default_checkpoint
    from ecgcnn.training.checkpoint import load_checkpoint

    src = Path(cfg.generic) if cfg.generic else default_checkpoint()
    load_checkpoint(src)  # a generic model that does not load is refused at build time
    shutil.copyfile(src, out / "generic.pt")
    files.append("generic.pt")
    manifest = {
        "ecgcnn_version": ecgcnn_version(),
        "kit_format": KIT_FORMAT,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fs": float(ps.data.fs),
        "leads": [str(x) for x in ps.data.leads],
        "views": views,
        "prepared": prepared,
        "common_models": [f"{n}.pt" for n in names],
        "generic": "generic.pt",
        "generic_source": str(cfg.generic or "shipped"),
        "records": {
            "reference": records,
            "common": [str(r) for r in split.common_records],
            "library": lib_records,
        },
        "library_filters": lib.counts(),
        "common_counts": common.counts(),
        "common_epochs": int(cfg.common_epochs),
        "settings": {
            "patient_specific": OmegaConf.to_container(ps, resolve=True),
            "zero_shot": OmegaConf.to_container(zs, resolve=True),
        },
        "sha256": {f: sha256(out / f) for f in files},
    }
    write_json(out / MANIFEST, manifest)  # written last: a kit without it is unfinished
    log(f"kit: {out} ({time.perf_counter() - t0:.1f} s)")
    return out


def load_kit(path) -> Kit:
    """Load and verify a kit directory.

    Raises
    ------
    EcgError naming the file: no kit.json, another kit format, a file listed in it missing or
    with another sha256.
    """
    from ecgcnn.config import FinetuneConfig, ZeroShotConfig

    root = Path(path)
    man_path = root / MANIFEST
    if not man_path.is_file():
        raise EcgError(f"{man_path}: not a kit (no {MANIFEST}; build one with ecgcnn-kit out=DIR)")
    import json

    try:
        man = json.loads(man_path.read_text())
    except ValueError as exc:
        raise EcgError(f"{man_path}: kit manifest does not parse ({exc})") from None
    if not isinstance(man, dict) or man.get("kit_format") != KIT_FORMAT:
        got = man.get("kit_format") if isinstance(man, dict) else None
        raise EcgError(
            f"{man_path}: kit format {got} (built by ecgcnn "
            f"{man.get('ecgcnn_version', '?') if isinstance(man, dict) else '?'}), "
            f"this ecgcnn {ecgcnn_version()} reads format {KIT_FORMAT}; rebuild it "
            "with ecgcnn-kit"
        )
    for name, digest in (man.get("sha256") or {}).items():
        f = root / name
        if not f.is_file():
            raise EcgError(f"{f}: kit file missing")
        if sha256(f) != digest:
            raise EcgError(f"{f}: kit file damaged (sha256 differs from {MANIFEST})")
    try:
        s = man["settings"]
        ps = OmegaConf.merge(OmegaConf.structured(FinetuneConfig), s["patient_specific"])
        zs = OmegaConf.merge(OmegaConf.structured(ZeroShotConfig), s["zero_shot"])
        with np.load(root / "common_beats.npz") as z:
            common = BeatSet(**{f.name: z[f.name] for f in fields(BeatSet)})
        with np.load(root / "abs_library.npz") as z:
            lib = FilterLibrary(**{f.name: z[f.name] for f in fields(FilterLibrary)})
        models = [root / m for m in man["common_models"]]
    except Exception as exc:  # noqa: BLE001  (a manifest that passed its checksums but not ours)
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EcgError(f"{man_path}: kit does not fit this ecgcnn ({first})") from None
    generic = root / man["generic"] if man.get("generic") else None
    return Kit(root, man, ps, zs, common, str(man["prepared"]), models, lib, generic)
