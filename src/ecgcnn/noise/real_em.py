"""The noise stress test of the streaming monitor with PhysioNet's real electrode-motion noise
(``ecgcnn-noise-stress``, its default ``mode=real_em``).

PhysioNet's NSTDB records ``118e24`` ... ``118e_6`` are MIT-BIH 118 with the database's
electrode-motion (em) record added by ``nst`` (noise off for 5 min, then 2 min on / 2 min off).
Each record of ``real_em.records`` is streamed through :func:`ecgcnn.monitor.session.monitor`
(QRS detection, the patient's model(s), alarms; no annotations at run time) clean and at every
SNR, once with ``quality.enabled=false`` and once with the quality stage, and scored from
``real_em.score_from_s`` (5:00, bxb's default):

* QRS Se/+P and VEB Se/+P of the decided beats (not in shutdown; all beats under ``all``);
* shutdown as a fraction of the noisy time (the noise-on segments) and of the beats;
* alarms that the clean run of the same setting does not have (same rule within
  ``real_em.match_s``) per hour, and how many of them are VT;
* WFDB's ``bxb`` on the written annotations (beats in shutdown left out, shutdown marked by
  ``~`` of subtype 0x30 as bxb reads it).

Record 118 uses the NSTDB records themselves. Any other record gets the em noise recovered from
them (:func:`recover_em`: ``118e_6 - 118`` on the noise-on segments, nst's switching offsets
removed) added as nst adds it (:func:`em_noisy`: the same em, sized as nst sized it for 118): a
held-out check of settings chosen on 118.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ecgcnn.atomic import write_json
from ecgcnn.data.io import Record, read_record
from ecgcnn.errors import EcgError
from ecgcnn.noise.nst import added_snr, noisy_record, nst_mask, qrs_size
from ecgcnn.noise.report import snr_key

#: SNR (dB) -> NSTDB record of 118 with em noise at that SNR.
EM_RECORDS = {24.0: "118e24", 18.0: "118e18", 12.0: "118e12", 6.0: "118e06", 0.0: "118e00"}
EM_RECORDS[-6.0] = "118e_6"
EM_SOURCE = "118"  # the clean record of the NSTDB em records
EM_LEADS = ["MLII", "V1"]
#: AAMI class -> MIT-BIH symbol written for bxb.
SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}


def em_root(cfg: DictConfig) -> Path:
    """Folder of the NSTDB em records: ``real_em.root``, else ``nstdb-118e`` beside data.root."""
    from ecgcnn.data.io import resolve_root

    root = cfg.real_em.root
    path = Path(root) if root else resolve_root(cfg.data.root).parent / "nstdb-118e"
    if not (path / f"{EM_RECORDS[12.0]}.hea").is_file():
        raise EcgError(f"real_em.root: {path} does not hold the NSTDB records 118e24..118e_6")
    return path


def recover_em(clean_root, root, ncfg=None) -> tuple[np.ndarray, np.ndarray]:
    """NSTDB's em noise as ``118e_6 - 118``, ``(n, 2)`` mV, zero where nst switched it off,
    and the noise size nst gave it per channel.

    At -6 dB the noise is largest, so the records' 0.005 mV quantization matters least. nst
    adds a constant at each switch to keep its output continuous (``nst.mix``); subtracting the
    difference just before each noise-on segment removes it. nst scaled the em so that
    ``noise_gain(-6, S, N) = 1`` for this recovered noise, with ``S`` the QRS size of 118
    (:func:`qrs_size`) and ``N`` the em record's size on its first 300 s (not in our data):
    hence ``N = 10**(6/20) sqrt(2)/4 S``, which :func:`em_noisy` uses so that every record
    gets the em as nst would add it (the noise-on segments of NSTDB's 118e12 are 7.5 dB, not
    12 dB: the em record is quieter in its first 300 s than later).
    """
    clean = read_record(clean_root, EM_SOURCE, leads=EM_LEADS)
    noisy = read_record(root, EM_RECORDS[-6.0], leads=EM_LEADS, annotator=None)
    if clean.signal.shape != noisy.signal.shape or clean.fs != noisy.fs:
        raise EcgError(f"{root}/{EM_RECORDS[-6.0]}: not record 118's size and rate")
    d = noisy.signal.astype(np.float64) - clean.signal.astype(np.float64)
    mask = _mask(clean.n_samples, clean.fs, ncfg)
    on = np.flatnonzero(np.diff(mask.astype(np.int8)) == 1) + 1  # first samples of segments
    for a, b in itertools.pairwise([*on, len(mask)]):
        d[a:b] -= d[a - 1]
    d[~mask] = 0.0
    s = [
        qrs_size(clean.signal[:, j], clean.fs, clean.ann_samples, clean.ann_symbols) for j in (0, 1)
    ]
    return d.astype(np.float32), 10 ** (6 / 20) * np.sqrt(2) / 4 * np.asarray(s)


def _mask(n: int, fs: float, ncfg) -> np.ndarray:
    if ncfg is None:
        return nst_mask(n, fs)
    return nst_mask(n, fs, ncfg.clean_minutes, ncfg.segment_minutes)


def em_noisy(rec: Record, em: np.ndarray, size: np.ndarray, snr: float, ncfg=None) -> Record:
    """``rec`` with the recovered em (``size``: its nst noise size per channel, see
    :func:`recover_em`) added at ``snr`` dB as nst adds it; lead ``j`` gets channel ``j mod 2``.
    Applied to 118 itself this rebuilds NSTDB's 118e records."""
    if rec.n_samples != len(em):
        raise EcgError(f"record {rec.name}: {rec.n_samples} samples, the em noise {len(em)}")
    mask = _mask(rec.n_samples, rec.fs, ncfg)
    k = rec.signal.shape[1]
    streams = np.stack([em[:, j % em.shape[1]] for j in range(k)], axis=1)
    pp = [qrs_size(rec.signal[:, j], rec.fs, rec.ann_samples, rec.ann_symbols) for j in range(k)]
    sizes = [size[j % len(size)] for j in range(k)]
    return noisy_record(rec, streams, float(snr), mask, np.array(pp), np.array(sizes))


def _events(out: Path) -> tuple[list[dict], list[dict]]:
    ev = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return [e for e in ev if e["type"] == "beat"], [e for e in ev if e["type"] == "alarm"]


def run_bxb_decided(root: Path, record: str, out: Path, s: dict, start_s: float) -> dict:
    """bxb on a run's decided beats: beats in shutdown are not written, shutdown is ``~``
    (subtype 0x30 starts it, 0 ends it), as bxb counts "missed in shutdown"."""
    import wfdb

    from ecgcnn.evaluation.bxb import run_bxb

    fs = s["fs"]
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
        np.asarray([a[0] for a in ann], np.int64),
        symbol=[a[1] for a in ann],
        subtype=np.asarray([a[2] for a in ann]),
        write_dir=str(d),
    )
    try:
        r = run_bxb(root, record, "ecg", start_s=start_s, end_s=s["duration_s"], test_dir=d)
    except EcgError as exc:  # bxb missing or failing: say so, keep our own figures
        return {"error": str(exc).splitlines()[0]}
    q, v, sh = r["qrs"], r["veb"], r["shutdown"]
    return {
        "qrs_se": q["se"],
        "qrs_ppv": q["ppv"],
        "veb_se": v["se"],
        "veb_ppv": v["ppv"],
        "shutdown_s": sh["time_s"],
        "beats_missed_in_shutdown": sh["beats_missed"],
    }


def figures(s: dict, alarms: list, clean_alarms: list, noisy_s: float, match_s: float) -> dict:
    """One run's row: decided-beat figures (``all``: every beat), shutdown, new alarms."""

    def pick(sc):
        c = sc["classification"]["VEB"]
        q = sc["qrs"]["whole"]
        return {"qrs_se": q["se"], "qrs_ppv": q["ppv"], "veb_se": c["Se"], "veb_ppv": c["PPV"]}

    start = s["score"]["from_s"]
    hours = max(s["duration_s"] - start, 1e-9) / 3600
    new = [
        a
        for a in alarms
        if a["t"] >= start
        and not any(
            c["rule"] == a["rule"] and abs(c["t"] - a["t"]) <= match_s for c in clean_alarms
        )
    ]
    q = s["quality"] or {"shutdown_s": 0.0, "beats_in_shutdown_frac": 0.0}
    return {
        **pick(s.get("score_decided") or s["score"]),
        "all": pick(s["score"]),
        "shutdown_frac": q["shutdown_s"] / max(noisy_s, 1e-9) if noisy_s else 0.0,
        "shutdown_beats_frac": q["beats_in_shutdown_frac"],
        "false_alarms_per_h": len(new) / hours,
        "false_vt": sum(a["rule"] == "vt" for a in new),
        "new_alarms": [{"rule": a["rule"], "t": a["t"]} for a in new],
    }


def _monitor_run(cfg: DictConfig, root: str, record: str, quality: bool, model, out: Path):
    """One monitor run; returns its summary and its alarms."""
    from ecgcnn.config import MonitorConfig
    from ecgcnn.monitor.session import monitor

    rc = cfg.real_em
    over = {
        "data": {"root": str(root)},
        "record": record,
        "checkpoint": model[0],
        "also": list(model[1]),
        "score_from_s": float(rc.score_from_s),
        "plot": {"enabled": False},
        "alarms": cfg.alarms,
        "quality": {**OmegaConf.to_container(cfg.quality), "enabled": quality},
    }
    if rc.max_minutes:
        over["max_duration_s"] = 60.0 * float(rc.max_minutes)
    s = monitor(OmegaConf.merge(OmegaConf.structured(MonitorConfig), over), out)
    return s, _events(out)[1]


def _models(cfg: DictConfig, out: Path, records: list[str]) -> dict:
    """record -> (checkpoint, also): the shipped model, models_dir's, or trained now."""
    from ecgcnn.personalize.patient_specific import finetune_patient, view_files

    if cfg.real_em.shipped:
        return {r: (None, []) for r in records}
    from ecgcnn.noise.stress import finetune_config

    res = {}
    for r in records:
        mdir = Path(cfg.models_dir or out / "models") / f"{r}_m{float(cfg.split.minutes):g}"
        if not cfg.models_dir:
            finetune_patient(finetune_config(cfg, r), mdir)
        files = [mdir / name for _, name in view_files(list(cfg.views), int(cfg.ensemble))]
        miss = [str(f) for f in files if not f.is_file()]
        if miss:
            raise EcgError(f"{miss[0]}: patient model not found (models_dir / views / ensemble)")
        res[r] = (str(files[0]), [str(f) for f in files[1:]])
    return res


def _task(cfg, root, name, quality, model, out):
    import torch

    torch.set_num_threads(1)
    return _monitor_run(cfg, root, name, quality, model, out)


def real_em_stress(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the real-em noise stress test; write ``real_em.json`` and ``report.md``.

    Parameters
    ----------
    cfg : ``NoiseStressConfig`` (``real_em``, ``quality``, ``alarms``, the patient-model
        settings, ``models_dir``, ``workers``)
    out_dir : output folder (``runs/`` holds every run's events and bxb files)

    Returns
    -------
    The summary: ``records[rec][with|without][snr]`` rows (see :func:`figures`) and, for the
    first record, ``snr`` (with the stage) and ``without``.
    """
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    rc, out_dir = cfg.real_em, Path(out_dir)
    if cfg.workers < 1:
        raise EcgError(f"workers: must be >= 1, got {cfg.workers}")
    bad = [s for s in rc.snr_db if float(s) not in EM_RECORDS]
    if bad or not rc.snr_db:
        raise EcgError(f"real_em.snr_db: {bad or 'empty'} (the NSTDB SNRs: {list(EM_RECORDS)})")
    if not rc.records:
        raise EcgError("real_em.records: empty")
    from ecgcnn.data.io import resolve_root

    clean_root, eroot = resolve_root(cfg.data.root), em_root(cfg)
    records = [str(r) for r in rc.records]
    models = _models(cfg, out_dir, records)
    em, em_size = (
        recover_em(clean_root, eroot, cfg.noise) if set(records) - {EM_SOURCE} else (None, None)
    )
    db = out_dir / "db"  # noisy copies of the held-out records (WFDB, for the monitor and bxb)
    runs, info = [], {}
    for r in records:
        rec = read_record(clean_root, r, leads=EM_LEADS)
        info[r] = {"measured_snr_db": {}}
        cond = [("clean", str(clean_root), r)]
        for snr in map(float, rc.snr_db):
            if r == EM_SOURCE:
                root, name = str(eroot), EM_RECORDS[snr]
                noisy = read_record(eroot, name, leads=EM_LEADS, annotator=None).signal
            else:
                from ecgcnn.noise.nst import write_wfdb

                root, name = str(db / f"{r}_{snr_key(snr)}"), r
                noisy = em_noisy(rec, em, em_size, snr, cfg.noise).signal
                write_wfdb(
                    Record(r, noisy, rec.fs, rec.leads, rec.ann_samples, rec.ann_symbols), root, r
                )
            mask = _mask(rec.n_samples, rec.fs, cfg.noise)
            pp = qrs_size(rec.signal[:, 0], rec.fs, rec.ann_samples, rec.ann_symbols)
            info[r]["measured_snr_db"][snr_key(snr)] = round(
                added_snr(rec.signal[:, 0], noisy[:, 0], rec.fs, mask, pp), 2
            )
            cond.append((snr_key(snr), root, name))
        n = (
            rec.n_samples
            if not rc.max_minutes
            else min(rec.n_samples, round(60 * rc.max_minutes * rec.fs))
        )
        start = round(rc.score_from_s * rec.fs)
        info[r]["noisy_s"] = float(_mask(rec.n_samples, rec.fs, cfg.noise)[start:n].sum()) / rec.fs
        for q in (False, True):
            for key, root, name in cond:
                tag = f"{r}_{key}_{'with' if q else 'without'}"
                runs.append((r, key, q, root, name, out_dir / "runs" / tag))
    got = Parallel(n_jobs=int(cfg.workers))(
        delayed(_task)(cfg, root, name, q, models[r], o) for r, _, q, root, name, o in runs
    )
    res: dict = {r: {"with": {}, "without": {}} for r in records}
    clean = {(r, q): got[i][1] for i, (r, k, q, *_) in enumerate(runs) if k == "clean"}
    for (r, key, q, root, name, o), (s, alarms) in zip(runs, got):
        row = figures(s, alarms, clean[(r, q)], info[r]["noisy_s"], float(rc.match_s))
        if rc.bxb:
            row["bxb"] = run_bxb_decided(Path(root), name, o, s, float(rc.score_from_s))
        res[r]["with" if q else "without"][key] = row
    first = records[0]
    summary = {
        "snr": res[first]["with"],
        "without": res[first]["without"],
        "record": first,
        "records": res,
        "info": info,
        "protocol": {
            "em": f"NSTDB {', '.join(EM_RECORDS.values())} (118); others: 118e_6 - 118 added",
            "score_from_s": float(rc.score_from_s),
            "model": "shipped generic" if rc.shipped else "patient-specific",
            "models_dir": cfg.models_dir,
            "views": list(cfg.views),
            "quality": OmegaConf.to_container(cfg.quality),
        },
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    write_json(out_dir / "real_em.json", summary)
    (out_dir / "report.md").write_text(format_real_em(summary, markdown=True))
    return summary


def format_real_em(s: dict, markdown: bool = False) -> str:
    """Per record and SNR: without | with the quality stage (decided beats), in %."""

    def p(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    head = "record SNR | without: QRS Se/+P VEB Se/+P new alarms/h VT | with: QRS Se/+P VEB Se/+P "
    head += "shutdown time/beats new alarms/h VT | bxb with: QRS +P VEB Se/+P"
    lines = [head]
    for r, d in s["records"].items():
        for snr, w in d["with"].items():
            o, b = d["without"][snr], w.get("bxb") or {}
            lines.append(
                f"{r} {snr} | {p(o['qrs_se'])}/{p(o['qrs_ppv'])} {p(o['veb_se'])}/{p(o['veb_ppv'])}"
                f" {o['false_alarms_per_h']:.1f} {o['false_vt']} | {p(w['qrs_se'])}/"
                f"{p(w['qrs_ppv'])} {p(w['veb_se'])}/{p(w['veb_ppv'])} {p(w['shutdown_frac'])}/"
                f"{p(w['shutdown_beats_frac'])} {w['false_alarms_per_h']:.1f} {w['false_vt']} | "
                f"{p(b.get('qrs_ppv'))} {p(b.get('veb_se'))}/{p(b.get('veb_ppv'))}"
            )
    if not markdown:
        return "\n".join(lines)
    rows = ["| " + " | ".join(x.split(" | ")) + " |" for x in lines]
    rows.insert(1, "|" + "---|" * 4)
    intro = (
        "# Real electrode-motion noise stress test of the monitor\n\n"
        f"Scored from {s['protocol']['score_from_s']:g} s; {s['protocol']['em']}; "
        f"{s['protocol']['model']} model. Decided beats = outside shutdown; shutdown as a share "
        "of the noise-on time and of the beats; new alarms = not in the clean run.\n\n"
    )
    return intro + "\n".join(rows) + "\n"


def headline_real_em(s: dict) -> dict:
    """The one-line JSON: ``{"snr": {"12": {qrs_ppv, veb_ppv, veb_se, shutdown_frac,
    false_alarms_per_h, false_vt}, ...}, "without": ...}`` of the first record."""
    keys = ("qrs_se", "qrs_ppv", "veb_se", "veb_ppv", "shutdown_frac", "false_alarms_per_h")
    keys += ("false_vt",)
    return {
        part: {k: {m: row[m] for m in keys} for k, row in s[part].items()}
        for part in ("snr", "without")
    } | {"record": s["record"], "wall_s": s["wall_s"]}
