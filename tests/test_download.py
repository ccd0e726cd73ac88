"""Checksum-verified download, against a real HTTP server on 127.0.0.1 serving a few MIT-BIH records.

No network mocks: the server is ``http.server.ThreadingHTTPServer`` over a temp copy laid out like
PhysioNet's ``files/mitdb/1.0.0/``, so urllib, streaming, temp files and renames all run for real.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ecgcnn.data.download import download_mitdb, parse_sums, verify_directory
from ecgcnn.data.io import read_record
from ecgcnn.errors import EcgError

SERVED = ["RECORDS", "ANNOTATORS", "SHA256SUMS.txt"] + [
    f"{r}.{s}" for r in ("100", "101") for s in ("hea", "dat", "atr")
]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = os.environ.get("ECGCNN_DATA_DIR")
    if not root:
        pytest.skip("ECGCNN_DATA_DIR is not set")
    return Path(root)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path, data_dir):
    """Serve copies of records 100 and 101 at ``http://127.0.0.1:<port>/mitdb/1.0.0/``.

    Yields ``(base_url, served_dir)``; tests may tamper with files in ``served_dir``.
    """
    served = tmp_path / "www" / "mitdb" / "1.0.0"
    served.mkdir(parents=True)
    for name in SERVED:
        # Copies, not symlinks: the tamper test rewrites a served file.
        shutil.copyfile(data_dir / name, served / name)
        (served / name).chmod(0o644)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/mitdb/1.0.0/", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sums(data_dir: Path) -> dict[str, str]:
    return parse_sums((data_dir / "SHA256SUMS.txt").read_text(), "SHA256SUMS.txt")


def _flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _leftovers(target: Path) -> list[str]:
    """Temp files of ecgcnn.atomic (hidden, beside the final names) left in ``target``."""
    return sorted(p.name for p in target.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- unit, no data
def test_parse_sums_accepts_sha256sum_formats_and_rejects_escapes():
    h = "ab" * 32
    assert parse_sums(f"{h} 100.dat\n{h}  *x/101.hea\n\n", "s") == {"100.dat": h, "x/101.hea": h}
    with pytest.raises(EcgError, match="line 1"):
        parse_sums("nothex 100.dat", "s")
    with pytest.raises(EcgError, match="outside"):
        parse_sums(f"{h} ../etc/passwd", "s")


def test_verify_directory_flags_first_mismatch(tmp_path):
    (tmp_path / "a").write_bytes(b"hello")
    (tmp_path / "b").write_bytes(b"world")
    good = hashlib.sha256(b"hello").hexdigest()
    bad = hashlib.sha256(b"other").hexdigest()
    (tmp_path / "SHA256SUMS.txt").write_text(f"{good} a\n{good} missing\n")
    assert verify_directory(tmp_path) == ["a"]  # listed-but-absent files are fine
    (tmp_path / "SHA256SUMS.txt").write_text(f"{good} a\n{bad} b\n")
    with pytest.raises(EcgError, match=r"b: SHA256 mismatch \(expected " + bad):
        verify_directory(tmp_path)
    (tmp_path / "SHA256SUMS.txt").unlink()
    with pytest.raises(EcgError, match="SHA256SUMS.txt: checksum list not found"):
        verify_directory(tmp_path)


def test_unknown_record_raises_before_any_network_access(tmp_path):
    # Port 9 on a TEST-NET address: any network attempt would hang or fail differently.
    with pytest.raises(EcgError, match="unknown MIT-BIH record.*999"):
        download_mitdb(tmp_path / "t", records=["100", "999"], base_url="http://192.0.2.1:9/")
    assert not (tmp_path / "t").exists()


def test_dead_url_names_the_url(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago, with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/mitdb/1.0.0/"
    with pytest.raises(EcgError, match=f"{base}SHA256SUMS.txt: cannot reach server"):
        download_mitdb(tmp_path / "t", records=["100"], base_url=base, progress=False, timeout=5)


# ----------------------------------------------------------------------------- real records
@pytest.mark.slow
def test_download_verifies_and_reads(server, tmp_path, data_dir):
    base, _ = server
    target = tmp_path / "target"
    summary = download_mitdb(target, records=["100", "101"], base_url=base, progress=False)
    assert sorted(summary["downloaded"]) == sorted(SERVED)
    assert summary["skipped"] == []
    assert summary["bytes"] == sum((data_dir / n).stat().st_size for n in SERVED)
    sums = _sums(data_dir)
    for name in SERVED:
        if name != "SHA256SUMS.txt":
            assert hashlib.sha256((target / name).read_bytes()).hexdigest() == sums[name]
    assert sorted(verify_directory(target)) == sorted(n for n in SERVED if n != "SHA256SUMS.txt")
    assert _leftovers(target) == []

    got, ref = read_record(target, "100"), read_record(data_dir, "100")
    assert got.n_samples == 650000 and got.fs == 360
    np.testing.assert_array_equal(got.signal, ref.signal)
    np.testing.assert_array_equal(got.ann_samples, ref.ann_samples)

    again = download_mitdb(target, records=["100", "101"], base_url=base, progress=False)
    assert again["downloaded"] == [] and again["bytes"] == 0
    assert sorted(again["skipped"]) == sorted(SERVED)


@pytest.mark.slow
def test_corrupt_local_file_is_downloaded_again(server, tmp_path, data_dir):
    base, _ = server
    target = tmp_path / "target"
    download_mitdb(target, records=["100"], base_url=base, progress=False)
    _flip_byte(target / "100.atr", 10)
    summary = download_mitdb(target, records=["100"], base_url=base, progress=False)
    assert summary["downloaded"] == ["100.atr"]
    assert summary["bytes"] == (data_dir / "100.atr").stat().st_size
    assert (target / "100.atr").read_bytes() == (data_dir / "100.atr").read_bytes()


@pytest.mark.slow
def test_tampered_file_raises_and_leaves_nothing(server, tmp_path, data_dir):
    base, served = server
    _flip_byte(served / "101.dat")
    target = tmp_path / "target"
    with pytest.raises(EcgError, match=r"101\.dat: SHA256 mismatch \(expected [0-9a-f]{64}, got"):
        download_mitdb(target, records=["100", "101"], base_url=base, progress=False)
    assert not (target / "101.dat").exists()
    assert _leftovers(target) == []
    assert (target / "101.hea").is_file()  # files before the bad one are kept, verified
    assert not (target / "101.atr").exists()  # the download stopped at the bad file


@pytest.mark.slow
def test_missing_file_on_server_names_url(server, tmp_path):
    base, served = server
    (served / "100.atr").unlink()
    target = tmp_path / "target"
    with pytest.raises(EcgError, match=f"{base}100.atr: HTTP 404"):
        download_mitdb(target, records=["100"], base_url=base, progress=False)
    assert not (target / "100.atr").exists() and _leftovers(target) == []


# ----------------------------------------------------------------------------- console script
def _run_cli(cwd: Path, *overrides: str, script: bool = False) -> subprocess.CompletedProcess:
    # Both ways in: Hydra resolves config_path differently for `python -m` (a file) and for the
    # installed console script (a module), and only the latter is what users run.
    cmd = (
        [str(Path(sys.executable).with_name("ecgcnn-download"))]
        if script
        else [sys.executable, "-m", "ecgcnn.apps.download"]
    )
    return subprocess.run(
        [*cmd, *overrides],
        cwd=cwd,  # Hydra writes outputs/ under the working directory: keep it out of the repo
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the exit status is what the test asserts
    )


@pytest.mark.slow
def test_cli_downloads_then_fails_cleanly_on_tampering(server, tmp_path, data_dir):
    base, served = server
    ok = _run_cli(
        tmp_path, "target=t1", "records=[100]", f"base_url={base}", "progress=false", script=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "downloaded 6 file(s)" in ok.stdout  # sums, RECORDS, ANNOTATORS, 3 record files
    assert (tmp_path / "t1" / "100.dat").read_bytes() == (data_dir / "100.dat").read_bytes()

    _flip_byte(served / "101.dat")
    bad = _run_cli(tmp_path, "target=t2", "records=[101]", f"base_url={base}", "progress=false")
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 101.dat: SHA256 mismatch"), bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "t2" / "101.dat").exists() and _leftovers(tmp_path / "t2") == []
