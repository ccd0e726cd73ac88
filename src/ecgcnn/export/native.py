"""Native kernels of the GEMM runtime: build ``kernels.c`` once, load it with ctypes.

The library is compiled on first use with the system C compiler (``$CC``, else Python's own
``CC``, else ``cc``) into a per-user cache (``$ECGCNN_CACHE_DIR``, else
``$XDG_CACHE_HOME/ecgcnn``, else ``~/.cache/ecgcnn``), under a name that hashes the source,
the flags and the compiler's version, so an upgrade rebuilds and two versions never clash. The
build is atomic (temporary file, then rename): concurrent first uses at worst both compile.

No compiler (a slim Docker image, Windows) is not an error: :func:`load_kernels` returns None
and :class:`~ecgcnn.export.gemm.GemmCNN1D` runs the same arithmetic as ATen ops, slower; it
says which path it took (``GemmCNN1D.native``). ``ECGCNN_NATIVE=0`` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from functools import cache
from pathlib import Path

import torch

from ecgcnn.errors import EcgError

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
VERSION = 1  # must equal ecgcnn_kernels_version() in kernels.c
FLAGS = ["-O3", "-fno-math-errno", "-fPIC", "-shared", "-std=c99"]
OPENMP = ["-fopenmp"]
#: Activation codes of ``ecgcnn_pool_bias_act`` (others run as ATen ops after the kernel).
ACT_CODES = {"identity": 0, "tanh": 1, "relu": 2}

_p, _l, _i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


def cache_dir() -> Path:
    if os.environ.get("ECGCNN_CACHE_DIR"):
        return Path(os.environ["ECGCNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ecgcnn"


def compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def _version_text(cc: list[str]) -> str:
    try:
        res = subprocess.run(
            [*cc, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EcgError(f"C compiler {shlex.join(cc)!r} cannot run: {exc}") from exc
    if res.returncode != 0:
        raise EcgError(f"C compiler {shlex.join(cc)!r} cannot run: exit {res.returncode}")
    return res.stdout


def build(cc: list[str] | None = None, out_dir: Path | None = None) -> Path:
    """Compile ``kernels.c`` into the cache (no-op when the cached build exists); its path.

    Raises
    ------
    EcgError
        One line naming the compiler and its first error when the build fails.
    """
    cc = cc or compiler()
    out_dir = out_dir or cache_dir()
    src = SOURCE.read_bytes()
    ident = _version_text(cc)
    last_err = ""
    for extra in (OPENMP, []):  # without OpenMP (Apple clang) the kernels run on one thread
        flags = FLAGS + extra
        key = hashlib.sha256(
            b"\0".join(
                [
                    src,
                    ident.encode(),
                    " ".join(flags).encode(),
                    platform.machine().encode(),
                    sys.platform.encode(),
                ]
            )
        ).hexdigest()[:16]
        path = out_dir / f"kernels-{key}.so"
        if path.exists():
            return path
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EcgError(f"kernel cache {out_dir}: cannot create it ({exc})") from exc
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            res = subprocess.run(
                [*cc, *flags, str(SOURCE), "-o", tmp, "-lm"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if res.returncode == 0:
                os.replace(tmp, path)
                return path
            lines = [ln for ln in res.stderr.splitlines() if "error" in ln.lower()]
            last_err = (lines or res.stderr.splitlines() or [f"exit {res.returncode}"])[0]
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise EcgError(f"C compiler {shlex.join(cc)!r} cannot build {SOURCE.name}: {last_err}")


class Kernels:
    """The loaded library, with checked tensor wrappers around its two entry points."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        if lib.ecgcnn_kernels_version() != VERSION:
            raise EcgError(
                f"{path}: kernel library version {lib.ecgcnn_kernels_version()}, expected {VERSION}"
            )
        lib.ecgcnn_pool_bias_act.argtypes = [_p, _p, _p, _l, _l, _l, _l, _l, _i]
        lib.ecgcnn_pool_bias_act.restype = None
        lib.ecgcnn_blocks.argtypes = [_p, _p, _l, _l, _l, _l, _l, _l, _l]
        lib.ecgcnn_blocks.restype = None
        self.lib, self.path = lib, path

    @staticmethod
    def _check(t: torch.Tensor, name: str) -> None:
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise EcgError(f"native kernel: {name} must be a contiguous float32 CPU tensor")

    def pool_bias_act(
        self, y: torch.Tensor, bias: torch.Tensor, size: int, act: str, pooled: int | None = None
    ) -> torch.Tensor:
        """``(B, T, C) -> (B, P, C)``: ``act(max over size rows + bias)``, ``P = T // size``
        (or ``pooled``, fewer, to drop a tail)."""
        self._check(y, "y")
        self._check(bias, "bias")
        n, t, c = y.shape
        p = t // size if pooled is None else pooled
        if p * size > t or bias.numel() != c:
            raise EcgError(f"native kernel: cannot pool {tuple(y.shape)} by {size} into {p}")
        out = torch.empty(n, p, c)
        self.lib.ecgcnn_pool_bias_act(
            y.data_ptr(), bias.data_ptr(), out.data_ptr(), n, t, c, size, p, ACT_CODES[act]
        )
        return out

    def blocks(
        self, x: torch.Tensor, n_blocks: int, span: int, step: int, pad: int
    ) -> torch.Tensor:
        """``(B, C, T) -> (B * n_blocks, C * span)``: block ``k`` of a beat holds input samples
        ``k * step - pad`` onwards, ``span`` of them per channel, zeros outside the beat."""
        self._check(x, "x")
        n, c, t = x.shape
        out = torch.empty(n * n_blocks, c * span)
        self.lib.ecgcnn_blocks(x.data_ptr(), out.data_ptr(), n, c, t, n_blocks, span, step, pad)
        return out


@cache
def _load(enabled: bool) -> Kernels | EcgError:
    """The kernels, or why not (cached: built, or logged, once per process)."""
    if not enabled:
        return EcgError("native kernels are off (ECGCNN_NATIVE=0)")
    try:
        return Kernels(build())
    except EcgError as exc:
        err = exc
    except OSError as exc:  # a cached file that does not load (e.g. truncated by a full disk)
        err = EcgError(f"native kernels: cannot load ({exc})")
    log.warning("%s; the GEMM runtime uses ATen ops instead (slower)", err)
    return err


def load_kernels(required: bool = False) -> Kernels | None:
    """The kernels, built on first use; None when they cannot be built (logged once), or an
    :class:`~ecgcnn.errors.EcgError` when ``required``."""
    res = _load(os.environ.get("ECGCNN_NATIVE", "1") != "0")
    if isinstance(res, Kernels):
        return res
    if required:
        raise res
    return None
