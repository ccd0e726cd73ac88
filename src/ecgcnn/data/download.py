"""Download the MIT-BIH Arrhythmia Database from PhysioNet, every file checked against SHA256SUMS.

Plain HTTP(S) with :mod:`urllib.request` from a configurable base URL, not ``wfdb.dl_database``:
wfdb first asks PhysioNet's *content* pages which version is current, so it cannot be pinned to
1.0.0 nor pointed at a mirror, and it writes straight into the final file without a checksum.
Here each file streams into a temporary file next to its destination, its SHA-256 is compared
with PhysioNet's ``SHA256SUMS.txt``, and only then is it renamed into place (``ecgcnn.atomic``)
(atomic on one filesystem), so a failed or tampered download never leaves a file a reader could
mistake for a record.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ecgcnn.atomic import atomic_output, write_bytes_atomic
from ecgcnn.data.io import MITDB_RECORDS
from ecgcnn.errors import EcgError

#: PhysioNet's file server for MIT-BIH 1.0.0; the version is in the path so it never drifts.
DEFAULT_BASE_URL = "https://physionet.org/files/mitdb/1.0.0/"
#: The checksum list PhysioNet publishes next to every database version.
SUMS_FILE = "SHA256SUMS.txt"
#: Files fetched with every download, whatever records are asked for.
INDEX_FILES: tuple[str, ...] = ("RECORDS", "ANNOTATORS")
#: The files that make up one record: header, signal, reference annotations.
RECORD_SUFFIXES: tuple[str, ...] = (".hea", ".dat", ".atr")

_CHUNK = 1 << 16


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sums(text: str, source: str) -> dict[str, str]:
    """Parse ``sha256sum`` output into ``{relative path: hex digest}``.

    Parameters
    ----------
    text : the file's content, lines ``<64 hex> <name>`` (``*name`` for binary mode is accepted)
    source : file or URL named in error messages

    Returns
    -------
    dict mapping each listed path (POSIX, relative) to its lower-case hex digest
    """
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise EcgError(f"{source}: line {lineno} is not '<sha256> <file>': {line!r}")
        name = parts[1].strip().lstrip("*")
        path = PurePosixPath(name)
        # The list decides which local paths get read; a name escaping the directory is hostile.
        if path.is_absolute() or ".." in path.parts:
            raise EcgError(f"{source}: line {lineno} names a path outside the database: {name!r}")
        sums[name] = digest
    if not sums:
        raise EcgError(f"{source}: lists no files")
    return sums


def verify_directory(root: str | os.PathLike) -> list[str]:
    """Check every file listed in ``root/SHA256SUMS.txt`` that exists in ``root``.

    Files listed but absent are not an error (a partial download of a few records is
    legitimate); a present file whose content differs is.

    Parameters
    ----------
    root : directory holding ``SHA256SUMS.txt`` and the database files

    Returns
    -------
    list of the verified file names (relative to ``root``), in the order of the sums file

    Raises
    ------
    EcgError
        ``SHA256SUMS.txt`` missing or malformed, or the first file whose checksum differs.
    """
    root = Path(root)
    sums_path = root / SUMS_FILE
    if not sums_path.is_file():
        raise EcgError(f"{sums_path}: checksum list not found")
    sums = parse_sums(sums_path.read_text(encoding="utf-8"), str(sums_path))
    verified = []
    for name, expected in sums.items():
        path = root / name
        if not path.is_file():
            continue
        got = _sha256_file(path)
        if got != expected:
            raise EcgError(f"{path}: SHA256 mismatch (expected {expected}, got {got})")
        verified.append(name)
    return verified


def _url(base_url: str, name: str) -> str:
    return base_url.rstrip("/") + "/" + name


def _open(url: str, timeout: float):
    """Open ``url``; every way it can fail becomes one EcgError naming the URL."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise EcgError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise EcgError(f"{url}: cannot reach server ({exc.reason})") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # ValueError: a base URL without a scheme; OSError: timeouts, resets.
        raise EcgError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None


def _fetch_text(url: str, timeout: float) -> str:
    with _open(url, timeout) as response:
        try:
            return response.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as exc:
            raise EcgError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None
        except UnicodeDecodeError:
            raise EcgError(f"{url}: not a text file") from None


def _download_file(url: str, dest: Path, expected: str, timeout: float, bar: tqdm | None) -> int:
    """Stream ``url`` into a temp file beside ``dest``, check its SHA-256, then move it in place.

    Returns the number of bytes written. On any failure the temp file is removed and ``dest``
    is left as it was.
    """
    digest = hashlib.sha256()
    n_bytes = 0
    # atomic_output: a temp file beside dest, renamed over it only when the block succeeds
    # (a checksum mismatch, a network error or a Ctrl-C leave dest as it was and no temp file).
    with atomic_output(dest, "wb") as out, _open(url, timeout) as response:
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                n_bytes += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise EcgError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None
        got = digest.hexdigest()
        if got != expected:
            raise EcgError(f"{dest.name}: SHA256 mismatch (expected {expected}, got {got})")
    return n_bytes


def _wanted_files(records: Iterable[str] | None) -> list[str]:
    if records is None:
        names = list(MITDB_RECORDS)
    else:
        names = list(dict.fromkeys(str(r) for r in records))  # dedupe, keep order
        unknown = [r for r in names if r not in MITDB_RECORDS]
        if unknown:
            raise EcgError(
                f"records: unknown MIT-BIH record(s) {', '.join(unknown)} "
                f"(valid: {MITDB_RECORDS[0]}..{MITDB_RECORDS[-1]}, 48 records)"
            )
        if not names:
            names = list(MITDB_RECORDS)
    return list(INDEX_FILES) + [r + s for r in names for s in RECORD_SUFFIXES]


def download_mitdb(
    target: str | os.PathLike,
    records: Iterable[str] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    progress: bool = True,
    timeout: float = 30.0,
) -> dict:
    """Download MIT-BIH Arrhythmia Database 1.0.0 records into ``target``, checksum-verified.

    ``SHA256SUMS.txt`` is fetched first from ``base_url`` and saved into ``target``; then
    ``RECORDS``, ``ANNOTATORS`` and each record's ``.hea``, ``.dat`` and ``.atr``. A file already
    in ``target`` whose checksum matches is skipped; one that differs is downloaded again.

    Parameters
    ----------
    target : directory to write into (created if missing)
    records : record names such as ``["100", "101"]``; ``None`` or empty -> all 48 records
        (the WFDB files only, not PhysioNet's HTML pages or the ``x_mitdb`` extras)
    base_url : directory URL holding the database files (a mirror or a local server works)
    progress : show a tqdm progress bar in bytes on stderr
    timeout : seconds to wait for the server on connect and on each read

    Returns
    -------
    dict with ``target`` (str), ``downloaded`` and ``skipped`` (lists of file names) and
    ``bytes`` (int, bytes downloaded, the checksum list included)

    Raises
    ------
    EcgError
        Unknown record name (before any network access), server unreachable or HTTP error
        (naming the URL), a file missing from the checksum list, or a checksum mismatch
        (naming the file; nothing is left behind for that file).
    """
    files = _wanted_files(records)
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise EcgError(f"{target}: target exists and is not a directory")
    target.mkdir(parents=True, exist_ok=True)

    # The checksum list is the trust root: always taken fresh from the server, never from disk.
    sums_url = _url(base_url, SUMS_FILE)
    sums_text = _fetch_text(sums_url, timeout)
    sums = parse_sums(sums_text, sums_url)
    missing = [f for f in files if f not in sums]
    if missing:
        raise EcgError(f"{sums_url}: no checksum listed for {', '.join(missing)}")

    summary: dict = {"target": str(target.resolve()), "downloaded": [], "skipped": [], "bytes": 0}
    sums_dest = target / SUMS_FILE
    if sums_dest.is_file() and sums_dest.read_text(encoding="utf-8") == sums_text:
        summary["skipped"].append(SUMS_FILE)
    else:
        data = sums_text.encode("utf-8")
        write_bytes_atomic(sums_dest, data)
        summary["downloaded"].append(SUMS_FILE)
        summary["bytes"] += len(data)

    todo = []
    for name in files:
        dest = target / name
        if dest.is_file() and _sha256_file(dest) == sums[name]:
            summary["skipped"].append(name)
        else:
            todo.append(name)

    # Sizes are unknown without an extra request per file, so the bar counts bytes without a
    # total and names the file in flight.
    with tqdm(
        total=None, unit="B", unit_scale=True, disable=not progress or not todo, desc="mitdb"
    ) as bar:
        for name in todo:
            bar.set_postfix_str(name, refresh=False)
            summary["bytes"] += _download_file(
                _url(base_url, name), target / name, sums[name], timeout, bar
            )
            summary["downloaded"].append(name)
    return summary
