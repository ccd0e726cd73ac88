"""Real electrode-motion noise stress test of the monitor, without and with the quality stage.

Streams the clean record (``--clean-dir``, e.g. MIT-BIH 118) and PhysioNet's NSTDB records of
it with the real em noise (``--noisy-dir``: 118e24 ... 118e_6) through ``ecgcnn-monitor``'s
pipeline (QRS detection, the patient's model(s), alarms), once with ``quality.enabled=false``
and once with it on, and reports per SNR, from minute 5 (bxb's default start):

* QRS Se/+P and VEB Se/+P of all beats and of the decided beats (not in shutdown);
* shutdown time as a fraction of the noisy time (the noise-on segments) and of the beats;
* alarms not in the clean run (same rule within ``--match-s``) per hour, and false VT alarms;
* the same figures from WFDB's ``bxb`` on the written annotations (beats in shutdown left
  out, shutdown marked with ``~`` of subtype 0x30 as bxb expects), when bxb builds.

    python scripts/bench_real_em.py --checkpoint outputs/pm118/model.pt \
        --also outputs/pm118/model_add.pt
    python scripts/bench_real_em.py --quick     # 118 + 118e12, 12 min, a stub classifier

Ends with one JSON line ``{"snr": {"12": {"qrs_ppv", "veb_ppv", "veb_se", "shutdown_frac",
"false_alarms_per_h", ...}, ...}, "without": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import wfdb
from hydra import compose, initialize_config_dir

from ecgcnn.apps import CONFIG_DIR
from ecgcnn.data.beats import CLASSES
from ecgcnn.monitor.session import monitor
from ecgcnn.noise.nst import nst_mask

SNRS = {
    "24": "118e24",
    "18": "118e18",
    "12": "118e12",
    "6": "118e06",
    "0": "118e00",
    "-6": "118e_6",
}
SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}


def _stub_classifier():
    """Every beat N: the quick mode's stand-in for a patient model (no training)."""

    def classify(x, rr):
        p = np.zeros((len(x), len(CLASSES)), np.float32)
        p[:, 0] = 1.0
        return p

    return classify


def _run(args, root: str, record: str, quality: bool, out: Path, stub) -> dict:
    over = [
        f"data.root={root}",
        f"record='{record}'",
        "plot.enabled=false",
        f"score_from_s={args.start_s}",
        f"quality.enabled={str(quality).lower()}",
    ]
    if args.max_minutes:
        over.append(f"max_duration_s={60 * args.max_minutes}")
    if stub is None:
        over += [f"checkpoint={args.checkpoint}", f"also=[{','.join(args.also)}]"]
    else:
        over += ["checkpoint=none"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("monitor", overrides=over)
    if stub is None:
        return monitor(cfg, out)
    from omegaconf import OmegaConf

    from ecgcnn.config import DataConfig

    data = OmegaConf.merge(OmegaConf.structured(DataConfig), {"root": root})
    return monitor(cfg, out, classifier=stub, data_cfg=data, classes=CLASSES)


def _events(out: Path) -> tuple[list[dict], list[dict]]:
    ev = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return [e for e in ev if e["type"] == "beat"], [e for e in ev if e["type"] == "alarm"]


def _bxb(
    root: str, record: str, out: Path, s: dict, fs: float, start_s: float, end_s: float
) -> dict | None:
    """bxb on the decided beats: beats in shutdown are not written, shutdown is ``~`` 0x30."""
    try:
        from ecgcnn.evaluation.bxb import run_bxb
    except ImportError:
        return None
    beats, _ = _events(out)
    ann = [(e["sample"], SYMBOL[e["class"]], 0) for e in beats if not e.get("unreadable")]
    for a, b in (s["quality"] or {}).get("spans_s", []):
        ann += [(round(a * fs), "~", 0x30), (round(b * fs) - 1, "~", 0)]
    ann.sort(key=lambda t: t[0])
    d = out / "bxb"
    d.mkdir(exist_ok=True)
    wfdb.wrann(
        record,
        "ecg",
        np.asarray([a[0] for a in ann]),
        symbol=[a[1] for a in ann],
        subtype=np.asarray([a[2] for a in ann]),
        write_dir=str(d),
    )
    try:
        r = run_bxb(root, record, "ecg", start_s=start_s, end_s=end_s, test_dir=d)
    except Exception as exc:  # noqa: BLE001  bxb missing or failing: report, keep our figures
        return {"error": str(exc).splitlines()[0]}
    return {
        "qrs_se": r["qrs"]["se"],
        "qrs_ppv": r["qrs"]["ppv"],
        "veb_se": r["veb"]["se"],
        "veb_ppv": r["veb"]["ppv"],
        "shutdown_s": r["shutdown"]["time_s"],
        "beats_missed_in_shutdown": r["shutdown"]["beats_missed"],
    }


def figures(
    s: dict,
    alarms: list[dict],
    clean_alarms: list[dict],
    noisy_s: float,
    match_s: float,
    hours: float,
) -> dict:
    """One run's row: all-beat and decided figures, shutdown, alarms not in the clean run."""

    def pick(sc):
        c = sc["classification"]["VEB"]
        return {
            "qrs_se": sc["qrs"]["whole"]["se"],
            "qrs_ppv": sc["qrs"]["whole"]["ppv"],
            "veb_se": c["Se"],
            "veb_ppv": c["PPV"],
        }

    new = [
        a
        for a in alarms
        if a["t"] >= s["score"]["from_s"]
        and not any(
            c["rule"] == a["rule"] and abs(c["t"] - a["t"]) <= match_s for c in clean_alarms
        )
    ]
    q = s["quality"] or {"shutdown_s": 0.0, "beats_in_shutdown_frac": 0.0}
    return {
        **pick(s.get("score_decided") or s["score"]),
        "all": pick(s["score"]),
        "shutdown_frac": q["shutdown_s"] / max(noisy_s, 1e-9),
        "shutdown_beats_frac": q["beats_in_shutdown_frac"],
        "false_alarms_per_h": len(new) / hours,
        "false_vt": sum(a["rule"] == "vt" for a in new),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--also", nargs="*", default=[])
    ap.add_argument("--clean-dir", default="../shared/data/mitdb")
    ap.add_argument("--noisy-dir", default="../shared/data/nstdb-118e")
    ap.add_argument("--snr", nargs="*", default=list(SNRS))
    ap.add_argument("--start-s", type=float, default=300.0)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--match-s", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="118e12 only, 12 min, stub classifier")
    args = ap.parse_args()
    if args.quick:
        args.snr, args.max_minutes = ["12"], args.max_minutes or 12.0
    stub = _stub_classifier() if args.checkpoint is None else None
    fs = float(wfdb.rdheader(str(Path(args.clean_dir) / "118")).fs)
    n = int(wfdb.rdheader(str(Path(args.clean_dir) / "118")).sig_len)
    if args.max_minutes:
        n = min(n, round(60 * args.max_minutes * fs))
    start = round(args.start_s * fs)
    noisy_s = float(nst_mask(n, fs)[start:].sum()) / fs
    hours = (n - start) / fs / 3600
    res: dict = {"with": {}, "without": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for quality in (False, True):
            key = "with" if quality else "without"
            out = Path(tmp) / f"clean_{key}"
            s = _run(args, args.clean_dir, "118", quality, out, stub)
            _, clean_alarms = _events(out)
            res[key]["clean"] = figures(s, clean_alarms, clean_alarms, noisy_s, args.match_s, hours)
            res[key]["clean"]["bxb"] = _bxb(args.clean_dir, "118", out, s, fs, args.start_s, n / fs)
            for snr in args.snr:
                out = Path(tmp) / f"{SNRS[snr]}_{key}"
                s = _run(args, args.noisy_dir, SNRS[snr], quality, out, stub)
                _, alarms = _events(out)
                row = figures(s, alarms, clean_alarms, noisy_s, args.match_s, hours)
                row["bxb"] = _bxb(args.noisy_dir, SNRS[snr], out, s, fs, args.start_s, n / fs)
                res[key][snr] = row

    def p(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    print(
        "stage   SNR  QRS Se  +P   VEB Se  +P  | all: QRS +P VEB +P | shut time beats | "
        "new alarms/h  VT | bxb QRS +P VEB +P"
    )
    for key in ("without", "with"):
        for snr, r in res[key].items():
            b = r["bxb"] or {}
            print(
                f"{key:<8}{snr:>5} {p(r['qrs_se'])} {p(r['qrs_ppv'])} {p(r['veb_se'])} "
                f"{p(r['veb_ppv'])} | {p(r['all']['qrs_ppv'])} {p(r['all']['veb_ppv'])} | "
                f"{p(r['shutdown_frac'])} {p(r['shutdown_beats_frac'])} | "
                f"{r['false_alarms_per_h']:8.1f} {r['false_vt']:3d} | "
                f"{p(b.get('qrs_ppv'))} {p(b.get('veb_ppv'))}"
            )
    print(
        json.dumps(
            {"snr": res["with"], "without": res["without"], "noisy_s": noisy_s, "hours": hours}
        )
    )


if __name__ == "__main__":
    main()
