"""Shared fixtures: a tiny synthetic WFDB record (no download needed) and the real data dir."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import wfdb

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "src" / "ecgcnn" / "configs"


def synth_ecg(n_beats: int = 60, fs: int = 360, rr_s: float = 0.8, seed: int = 0, v_every: int = 0):
    """A crude ECG: Gaussian QRS complexes (+ T waves) on a slow baseline.

    Returns (signal (n, 2) mV, r_samples, symbols). Every ``v_every``-th beat (if > 0) is a
    premature, wide, tall 'V' beat.
    """
    rng = np.random.default_rng(seed)
    r, syms, t = [], [], 1.0
    for i in range(n_beats):
        is_v = v_every and i % v_every == v_every - 1
        t += rr_s * (0.7 if is_v else 1.0) + rng.normal(0, 0.02)
        r.append(int(t * fs))
        syms.append("V" if is_v else "N")
    n = r[-1] + int(1.5 * fs)
    tt = np.arange(n)
    x = 0.1 * np.sin(2 * np.pi * 0.2 * tt / fs)
    for ri, s in zip(r, syms):
        w = 0.03 * fs if s == "V" else 0.01 * fs
        amp = 1.8 if s == "V" else 1.0
        x += amp * np.exp(-0.5 * ((tt - ri) / w) ** 2)
        x += 0.25 * np.exp(-0.5 * ((tt - ri - 0.25 * fs) / (0.04 * fs)) ** 2)
    x += rng.normal(0, 0.01, n)
    sig = np.stack([x, 0.5 * x], axis=1)
    return sig, np.array(r), syms


def write_record(
    directory: Path, name: str, sig, r, syms, fs: int = 360, leads=("MLII", "V1")
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * sig.shape[1],
        sig_name=list(leads),
        p_signal=sig,
        fmt=["212"] * sig.shape[1],
        adc_gain=[200.0] * sig.shape[1],
        baseline=[0] * sig.shape[1],
        write_dir=str(directory),
    )
    wfdb.wrann(name, "atr", np.asarray(r), symbol=list(syms), write_dir=str(directory))
    return directory


@pytest.fixture
def synth_dir(tmp_path) -> Path:
    """A directory with two synthetic records ``s1`` (normal + V) and ``s2`` at 360 Hz."""
    d = tmp_path / "db"
    sig, r, syms = synth_ecg(80, v_every=5)
    write_record(d, "s1", sig, r, syms)
    sig, r, syms = synth_ecg(80, rr_s=0.9, seed=1)
    write_record(d, "s2", sig, r, syms)
    return d


#: Fixtures that read real records (MIT-BIH, NSTDB): a test using one is marked ``needs_data``.
DATA_FIXTURES = ("mitdb", "data_dir", "model_119", "nstdb")


def pytest_collection_modifyitems(config, items):
    """``needs_data`` on every test that uses the real records, so ``-m "not needs_data"``
    selects the data-free tests (they run without ECGCNN_DATA_DIR)."""
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in DATA_FIXTURES):
            item.add_marker(pytest.mark.needs_data)


@pytest.fixture(scope="session")
def bindir() -> Path:
    """WFDB's bxb and sumstats, built once from the shared sources (skipped without a C
    compiler or the sources)."""
    import shutil

    from ecgcnn.errors import EcgError
    from ecgcnn.evaluation import bxb

    try:
        return bxb.build_bxb()
    except EcgError as exc:
        if shutil.which(os.environ.get("CC", "cc")) is None or "not found" in str(exc):
            pytest.skip(f"bxb cannot be built here: {exc}")
        raise


@pytest.fixture(scope="session")
def mitdb() -> Path:
    """The real MIT-BIH copy from $ECGCNN_DATA_DIR (integration tests are skipped without it)."""
    root = os.environ.get("ECGCNN_DATA_DIR")
    if not root or not Path(root, "100.hea").is_file():
        pytest.skip("ECGCNN_DATA_DIR does not point at the MIT-BIH records")
    return Path(root)


def compose(config_name: str, overrides=()):
    """Compose a config through Hydra's compose API (never through the decorator)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    # registers the base_* schemas (ecgcnn.config's and base_inter_patient)
    import ecgcnn.training.inter_patient  # noqa: F401

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hcompose(
            config_name=config_name, overrides=list(overrides), return_hydra_config=False
        )


def load_group(group: str, name: str):
    """One group option (e.g. ``split/inter_patient.yaml``) validated against its schema."""
    from omegaconf import OmegaConf

    from ecgcnn import config as c

    schemas = {
        "split": {
            "patient_specific": c.PatientSpecificSplit,
            "inter_patient": c.InterPatientSplit,
        }.get(name),
        "model": c.ModelConfig,
        "optim": c.OptimConfig,
        "trainer": c.TrainerConfig,
        "data": c.DataConfig,
    }
    raw = OmegaConf.load(CONFIGS / group / f"{name}.yaml")
    raw.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(schemas[group]), raw)


@pytest.fixture
def synth_split(tmp_path) -> list[str]:
    """Overrides for an inter-patient split of two synthetic records: s1 (N + every 5th beat V)
    trains, s2 (every 7th V) tests."""
    root = tmp_path / "db"
    sig, r, syms = synth_ecg(120, v_every=5)
    write_record(root, "s1", sig, r, syms)
    sig, r, syms = synth_ecg(100, rr_s=0.9, seed=1, v_every=7)
    write_record(root, "s2", sig, r, syms)
    return [
        f"data.root={root}",
        'data.records=["s1","s2"]',
        f"data.cache_dir={tmp_path / 'c'}",
        'split.train_records=["s1"]',
        'split.test_records=["s2"]',
    ]
