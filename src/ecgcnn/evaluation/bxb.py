"""WFDB's reference EC57 scorer ``bxb``, built from the WFDB sources and run on annotation files.

``bxb`` (WFDB Software Package 10.7.0, G. Moody) is the program AAMI EC57 and PhysioNet use to
compare a test annotator with the reference beat by beat. We do not reimplement it: the
sources kept in ``shared/tools/wfdb-bxb`` are compiled once (:func:`build_bxb`) and run as a
subprocess (:func:`run_bxb`), whose standard report is parsed into a dict.

Options passed to bxb (see ``bxb.c``):

- ``-r RECORD -a REF TEST``: the record and the two annotators (file extensions);
- ``-f TIME``: start of the comparison, from ``start_s`` (bxb's own default, used when EC57 is
  followed to the letter, is 5 minutes: pass ``start_s=300``);
- ``-t TIME``: end of the comparison, only when ``end_s`` is given (default: the record's end
  from its header);
- ``-S -``: the standard report with SVEB statistics on stdout, i.e. the full 7x7 confusion
  matrix of reference classes N, S, V, F, Q, O (no beat: extra detection), X (shutdown) against
  the test classes n, s, v, f, q, o (missed), x (missed in test shutdown).

The 150 ms match window (``-w``) is left at EC57's value. bxb maps MIT-BIH symbols to AAMI
classes itself (``amap`` in ``bxb.c``: paced ``/`` and ``f`` count as Q, a test annotation that
is not a beat is ignored).

How bxb's counts relate to the project's scorer (``monitor.scoring.match_beats``/``qrs_se_ppv``
and ``evaluation.aami.score``), checked in ``tests/test_annotations.py`` with a fake classifier
of known errors on the 44 non-paced MIT-BIH records, from 0 s and from 300 s:

- Pairing: bxb pairs a reference beat with the *nearer* of two detections in its window (with
  a look-ahead, see :func:`match_beats_bxb`, a port of its loop); ``match_beats`` with the
  *earliest* unused one, which can also pair more beats than bxb in crowded windows. QRS
  TP/FN/FP came out identical on all 44 records, but on 203, 209 and 210 a few beats were
  paired with the other detection, so VEB/SVEB counts differed from bxb's by 1-3 beats. With
  :func:`match_beats_bxb` every count below is bxb's on all 44 records.
- QRS: VF episodes are masked on both sides (``qrs_se_ppv(..., skip=vf_episodes(...))``):
  bxb ignores reference annotations inside ``[``..``]`` and does not count unmatched test
  beats there. The start time masks both sequences; bxb also lets a test beat just before
  ``-f`` pair with the first reference beat after it (a boundary case the masks miss).
- VEB TP/FN/FP: bxb's, when missed reference V beats (bxb's ``Vo``) are added to FN and extra
  test beats called V (``Ov``) to FP; an F beat called V is no FP in either.
- SVEB: bxb's ``amap`` counts atrial (``e``) and nodal (``j``) **escape** beats as S;
  ``data.beats.AAMI_MAP`` (de Chazal et al. 2004, the convention of the papers this project
  compares against) counts them as N. On records with such beats bxb's SVEB figures therefore
  differ: every e/j beat becomes an S beat (a TP if the test called it S, else an FN) and a
  test S on it is no longer an FP. MIT-BIH has 245 of them in the 44 non-paced records (222:
  212 j, 223: 16 e, 201: 10 j, 124: 5 j, 108: 1 j, 232: 1 j). Otherwise SVEB TP/FN/FP agree
  (with ``So`` added to FN and ``Os`` to FP).
- TN: bxb's VEB TN leaves missed beats out; the project scores classes on matched beats only,
  so compare TN only after the same construction.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ecgcnn.errors import EcgError

#: Environment variable naming the directory that holds ``build.sh`` and ``src/bxb.c``.
BXB_SRC_ENV = "ECGCNN_BXB_SRC"

#: Rows (reference) and columns (test) of bxb's standard report with SVEB statistics.
REF_CLASSES = ("N", "S", "V", "F", "Q", "O", "X")
TEST_CLASSES = ("n", "s", "v", "f", "q", "o", "x")

_REPO = Path(__file__).resolve().parents[3]


def _source_dir() -> Path:
    env = os.environ.get(BXB_SRC_ENV)
    src = Path(env).expanduser() if env else _REPO.parent / "shared" / "tools" / "wfdb-bxb"
    if not (src / "build.sh").is_file() or not (src / "src" / "bxb.c").is_file():
        where = f"${BXB_SRC_ENV}={env}" if env else str(src)
        raise EcgError(
            f"{where}: WFDB bxb sources not found (need build.sh and src/bxb.c; "
            f"set {BXB_SRC_ENV} to the wfdb-bxb tools directory)"
        )
    return src


def build_bxb(dest: Path | None = None) -> Path:
    """Compile ``bxb`` and ``sumstats`` once and return the directory that holds them.

    Parameters
    ----------
    dest : directory for the binaries; default ``~/.cache/ecgcnn/wfdb-bxb`` (or under
        ``$XDG_CACHE_HOME``). Binaries already there are reused.

    Returns
    -------
    Path
        The directory holding ``bxb`` and ``sumstats``.

    Examples
    --------
    >>> bindir = build_bxb()  # doctest: +SKIP
    >>> (bindir / "bxb").is_file()  # doctest: +SKIP
    True
    """
    if dest is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        dest = cache / "ecgcnn" / "wfdb-bxb"
    dest = Path(dest).expanduser()
    if all(os.access(dest / tool, os.X_OK) for tool in ("bxb", "sumstats")):
        return dest
    src = _source_dir()
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise EcgError(
            f"{src / 'build.sh'}: no C compiler '{cc}' on PATH to build bxb (install gcc or set CC)"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Build beside dest and rename: two processes building at once never see half a binary.
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    except OSError as exc:
        raise EcgError(f"{dest}: cannot create the bxb build directory ({exc})") from None
    try:
        proc = subprocess.run(
            ["bash", str(src / "build.sh"), str(tmp)],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "CC": cc},
        )
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EcgError(f"{src / 'build.sh'}: building bxb failed ({last[0]})")
        for tool in ("bxb", "sumstats"):
            os.replace(tmp / tool, _fresh(dest) / tool)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _fresh(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return dest


_ROW = re.compile(r"^\s*([NSVFQOX]) \|((?:\s+\d+)+)\s*$")
_STAT = re.compile(r"^\s*(.+?):\s+(?:[\d.]+%|-)\s+\((\d+)/(\d+)\)\s*$")
_RMS = re.compile(r"RMS RR interval error:\s+([\d.]+) ms")
_SHUT = re.compile(r"Total shutdown time:\s+(\d+) seconds")


def parse_bxb_report(text: str) -> dict:
    """Parse bxb's standard report with SVEB statistics (``-S``) into counts and figures.

    The counts are derived from the 7x7 matrix with bxb's own formulas (``print_results`` in
    ``bxb.c``) and checked against the ``(a/b)`` fractions bxb printed, so a report that does not
    parse as expected raises instead of giving wrong figures.

    Returns
    -------
    dict
        ``matrix`` ({ref: {test: count}}, ref in N S V F Q O X, test in n s v f q o x; the O and
        X rows have no o, x), ``qrs`` {tp, fn, fp, se, ppv}, ``veb`` {tp, fn, fp, tn, se, ppv,
        fpr}, ``sveb`` {tp, fn, fp, tn, se, ppv}, ``rms_rr_error_ms`` (None when bxb prints
        ``-``), ``shutdown`` {time_s, beats_missed, beats, N_missed, N, S_missed, S, V_missed,
        V, F_missed, F}. Figures are fractions (0..1) or None when undefined.
    """
    m: dict[str, dict[str, int]] = {}
    stats: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        row = _ROW.match(line)
        if row:
            values = [int(v) for v in row.group(2).split()]
            m[row.group(1)] = dict(zip(TEST_CLASSES, values))
            continue
        stat = _STAT.match(line)
        if stat:
            stats[stat.group(1).strip()] = (int(stat.group(2)), int(stat.group(3)))
    if set(m) != set(REF_CLASSES) or any(len(m[r]) != (5 if r in "OX" else 7) for r in m):
        raise EcgError(
            "bxb report: confusion matrix missing or malformed "
            f"(rows found: {''.join(m) or 'none'})"
        )
    for r in "OX":
        m[r].update(o=0, x=0)

    def total(rows, cols) -> int:
        return sum(m[r][c] for r in rows for c in cols)

    beats, dets = "NSVFQ", "nsvfq"
    qtp, qfn, qfp = total(beats, dets), total(beats, "ox"), total("OX", dets)
    vtp = m["V"]["v"]
    vfn, vfp = total("V", "nsfqox"), total("NSOX", "v")
    vtn = total("NSFQOX", "nsfq")
    stp = m["S"]["s"]
    sfn, sfp = total("S", "nvfqox"), total("NVFOX", "s")
    stn = total("NVFQOX", "nvfq")
    out = {
        "matrix": {r: dict(m[r]) for r in REF_CLASSES},
        "qrs": _figures(qtp, qfn, qfp),
        "veb": {**_figures(vtp, vfn, vfp), "tn": vtn, "fpr": _frac(vfp, vtn + vfp)},
        "sveb": {**_figures(stp, sfn, sfp), "tn": stn},
    }
    expect = {
        "QRS sensitivity": (qtp, qtp + qfn),
        "QRS positive predictivity": (qtp, qtp + qfp),
        "VEB sensitivity": (vtp, vtp + vfn),
        "VEB positive predictivity": (vtp, vtp + vfp),
        "SVEB sensitivity": (stp, stp + sfn),
        "SVEB positive predictivity": (stp, stp + sfp),
    }
    for name, pair in expect.items():
        if stats.get(name) != pair:
            raise EcgError(
                f"bxb report: '{name}' printed {stats.get(name)}, the matrix gives {pair}"
            )
    rms = _RMS.search(text)
    out["rms_rr_error_ms"] = float(rms.group(1)) if rms else None
    shut = _SHUT.search(text)
    if shut is None:
        raise EcgError("bxb report: no 'Total shutdown time' line")
    sd = {"time_s": int(shut.group(1))}
    sd["beats_missed"], sd["beats"] = stats.get("Beats missed in shutdown", (0, 0))
    for c in "NSVF":
        sd[f"{c}_missed"], sd[c] = stats.get(f"{c} missed in shutdown", (0, 0))
    out["shutdown"] = sd
    return out


def _frac(a: int, b: int) -> float | None:
    return a / b if b > 0 else None


def _figures(tp: int, fn: int, fp: int) -> dict:
    return {"tp": tp, "fn": fn, "fp": fp, "se": _frac(tp, tp + fn), "ppv": _frac(tp, tp + fp)}


def run_bxb(
    record_dir: str | os.PathLike,
    record: str,
    test_annotator: str,
    ref_annotator: str = "atr",
    start_s: float = 0.0,
    *,
    end_s: float | None = None,
    test_dir: str | os.PathLike | None = None,
    fs: float | None = None,
    n_samples: int | None = None,
    bindir: Path | None = None,
) -> dict:
    """Score ``record.<test_annotator>`` against ``record.<ref_annotator>`` with WFDB's bxb.

    The header and both annotation files are symlinked into a temporary directory where bxb
    runs, so nothing is written next to the data.

    Parameters
    ----------
    record_dir : directory holding ``record.hea`` and ``record.<ref_annotator>`` (and the test
        file unless ``test_dir`` is given)
    record : record name, e.g. ``"100"``
    test_annotator, ref_annotator : annotation file extensions
    start_s : start of the comparison in seconds (``-f``); EC57's learning period is 300 s
    end_s : end of the comparison in seconds (``-t``); default: the record's end
    test_dir : directory of the test annotation file, when not ``record_dir``
    fs, n_samples : sampling rate and length for a record without a WFDB header (e.g. read from
        EDF): a header without signals is written in the temporary directory
    bindir : directory of a built bxb (default: :func:`build_bxb`)

    Returns
    -------
    dict
        :func:`parse_bxb_report` of bxb's report, plus ``record``, ``ref_annotator``,
        ``test_annotator``, ``start_s``, ``command`` (argv) and ``report`` (bxb's text).

    Examples
    --------
    >>> r = run_bxb("/data/mitdb", "100", "atr")  # doctest: +SKIP
    >>> r["qrs"]["tp"], r["qrs"]["se"]  # doctest: +SKIP
    (2273, 1.0)
    """
    record_dir = Path(record_dir)
    test_dir = Path(test_dir) if test_dir is not None else record_dir
    files = {
        f"{record}.{ref_annotator}": record_dir / f"{record}.{ref_annotator}",
        f"{record}.{test_annotator}": test_dir / f"{record}.{test_annotator}",
    }
    hea = record_dir / f"{record}.hea"
    if hea.is_file():
        files[f"{record}.hea"] = hea
    elif fs is None:
        raise EcgError(
            f"{hea}: header not found (bxb needs the record's sampling rate; "
            "pass fs= and n_samples= for a record without a WFDB header)"
        )
    for path in files.values():
        if not path.is_file():
            raise EcgError(f"{path}: annotation file not found")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise EcgError(f"run_bxb: bad interval start_s={start_s}, end_s={end_s}")
    bxb = (bindir or build_bxb()) / "bxb"
    # Seconds with a fraction are what strtim parses as elapsed time (a bare "0" is too).
    argv = [
        str(bxb),
        "-r",
        record,
        "-a",
        ref_annotator,
        test_annotator,
        "-f",
        f"{start_s:.6f}",
        "-S",
        "-",
    ]
    if end_s is not None:
        argv += ["-t", f"{end_s:.6f}"]
    with tempfile.TemporaryDirectory(prefix="ecgcnn-bxb-") as tmp:
        for name, path in files.items():
            os.symlink(path.resolve(), Path(tmp, name))
        if not hea.is_file():
            length = f" {int(n_samples)}" if n_samples is not None else ""
            Path(tmp, f"{record}.hea").write_text(f"{record} 0 {float(fs):g}{length}\n")
        # WFDB=. and cwd=tmp: the WFDB path is space-separated, so never put a path in it.
        proc = subprocess.run(
            argv,
            check=False,
            cwd=tmp,
            env={**os.environ, "WFDB": "."},
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise EcgError(f"{files[f'{record}.{test_annotator}']}: bxb failed ({msg})")
    out = parse_bxb_report(proc.stdout)
    out.update(
        record=record,
        ref_annotator=ref_annotator,
        test_annotator=test_annotator,
        start_s=float(start_s),
        command=argv,
        report=proc.stdout,
    )
    return out


def match_beats_bxb(ref, det, tol: int) -> tuple[int, int, int, np.ndarray]:
    """One-to-one matching of detections to reference beats by bxb's own rule.

    A port of the comparison loop of ``bxb.c`` (``main``, cases 1-4, with the 2002 look-ahead
    criterion): walking both sequences in time order, the earlier of the current reference
    beat ``T`` and detection ``t`` is paired with the other when they lie within ``tol``
    samples and ``t`` is closer to ``T`` than to the next reference beat (or the next
    detection is closer to the next reference beat than to ``T``); otherwise it is counted as
    missed (a reference beat) or extra (a detection). Same signature and return as
    :func:`ecgcnn.monitor.scoring.match_beats`, whose earliest-unused-detection rule gives the
    same TP/FN/FP in the common cases but may pair a beat with another of two detections in its
    window (then the class counts differ from bxb's) and can pair more beats than bxb does.
    VF episodes and the start time are left to the caller (mask both sequences first).

    Returns
    -------
    tp, fn, fp : matched pairs, missed reference beats, extra detections
    pairs : int64 array (tp, 2) of matched ``(ref, det)`` positions, in time order

    Examples
    --------
    >>> match_beats_bxb([400], [390, 395], tol=54)[3].tolist()  # the nearer detection
    [[400, 395]]
    """
    if tol < 0:
        raise EcgError(f"match_beats_bxb: tol must be >= 0 samples, got {tol}")
    r = np.sort(np.asarray(ref, dtype=np.int64).ravel()).tolist()
    d = np.sort(np.asarray(det, dtype=np.int64).ravel()).tolist()
    huge = 1 << 62  # bxb's huge_time: an exhausted sequence
    r.append(huge)
    r.append(huge)
    d.append(huge)
    d.append(huge)
    n_ref, n_det = len(r) - 2, len(d) - 2
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n_ref or j < n_det:
        big_t, big_tn, t, tn = r[i], r[i + 1], d[j], d[j + 1]
        if t < big_t:  # the detection is earliest (bxb cases 1 and 2)
            dt = big_t - t
            if dt <= tol and (dt < abs(big_t - tn) or abs(big_tn - tn) < abs(big_t - tn)):
                pairs.append((big_t, t))
                i += 1
            j += 1
        else:  # the reference beat is earliest (cases 3 and 4)
            dt = t - big_t
            if dt <= tol and (dt < abs(t - big_tn) or abs(tn - big_tn) < abs(t - big_tn)):
                pairs.append((big_t, t))
                j += 1
            i += 1
    tp = len(pairs)
    return tp, n_ref - tp, n_det - tp, np.array(pairs, dtype=np.int64).reshape(-1, 2)
