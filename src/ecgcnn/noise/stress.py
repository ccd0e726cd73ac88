"""The MIT-BIH Noise Stress Test of the patient-specific models with generated/recorded noise
(``ecgcnn-noise-stress mode=generated``).

Each patient's model is trained (or loaded from ``models_dir``) on the clean first
``split.minutes`` of its record, as in deployment; then the record is corrupted the way PhysioNet's
``nst`` builds the NSTDB records (noise off for 5 min, then 2 min on / 2 min off; SNR from the
QRS peak-to-peak amplitude, see :mod:`ecgcnn.noise.nst`), beats are cut at the reference R peaks
of the noisy signal, and the test part (after ``split.minutes``, common-set beats excluded, as in
``ecgcnn-finetune``) is scored per noise type and SNR. Gross VEB/SVEB figures come from the
summed per-patient confusion matrices. "all" scores every test beat, as the NST does (``bxb``
from 5:00); "noisy_only" only the beats whose R peak lies in a noise-on segment. The noises are
the real NSTDB bw and ma records and a *synthetic* electrode motion (:func:`synth_em`); the real
em test of the streaming monitor is :mod:`ecgcnn.noise.real_em` (the default mode).

With ``monitor_snr_db`` (e.g. ``[12]``) the clean and noisy records at those SNRs are also
written as WFDB and streamed through :func:`ecgcnn.monitor.session.monitor` (QRS detection, no
annotations at run time): QRS Se/+P and end-to-end VEB/SVEB (bxb conventions, from
``noise.clean_minutes``) per noise type, under ``monitor`` in the JSON. About 8 s per record.
Patients run in ``workers`` joblib processes, one torch thread each.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ecgcnn.atomic import write_json
from ecgcnn.config import FinetuneConfig, PatientModelConfig
from ecgcnn.data.preprocess import resample
from ecgcnn.errors import EcgError
from ecgcnn.noise.nst import (
    NOISE_TYPES,
    NSTDB_FS,
    NSTDB_SAMPLES,
    added_snr,
    masked_noise_size,
    noise_size,
    noise_stream,
    noisy_record,
    nst_mask,
    qrs_size,
    read_noise,
    resolve_noise_root,
    synth_em,
)
from ecgcnn.noise.report import figure, format_table, snr_key


def finetune_config(cfg: DictConfig, record: str) -> DictConfig:
    """The ``FinetuneConfig`` that trains ``record``'s model with this run's settings."""
    # every field the two apps share: a new patient-model setting reaches these models too
    part = {f.name: cfg[f.name] for f in dataclasses.fields(PatientModelConfig)}
    return OmegaConf.merge(
        OmegaConf.structured(FinetuneConfig), part, {"record": record, "report": False}
    )


def load_noises(ncfg, n: int, fs: float) -> dict[str, np.ndarray]:
    """Noise type -> (n_noise, channels) array at ``fs``: real bw/ma, synthetic em, and "mix"
    (bw + ma + em, each at unit nst noise size, so all three weigh the same)."""
    bad = [t for t in ncfg.types if t not in NOISE_TYPES]
    if bad or not ncfg.types:
        raise EcgError(f"noise.types: {bad or 'empty'} (choose from {NOISE_TYPES})")
    need = set(ncfg.types) | ({"bw", "ma", "em"} if "mix" in ncfg.types else set())
    out = {}
    if need & {"bw", "ma"}:
        root = resolve_noise_root(ncfg.root)
        out.update({t: read_noise(root, t, fs) for t in ("bw", "ma") if t in need})
    if "em" in need:
        m = max([len(v) for v in out.values()] + [n])
        out["em"] = np.stack(
            [synth_em(m, fs, ncfg.em_seed + c, tuple(ncfg.em_band)) for c in range(2)], axis=1
        )
    if "mix" in need:
        m = min(len(out[t]) for t in ("bw", "ma", "em"))
        out["mix"] = sum(
            out[t][:m] / np.array([noise_size(out[t][:m, c], fs) for c in range(2)])
            for t in ("bw", "ma", "em")
        ).astype(np.float32)
    return {t: out[t] for t in ncfg.types}


def _load_models(path_dir: Path, views, ensemble: int):
    """The patient's models as ``(view, model)`` pairs (``finetune.view_files``) and the plain
    view's checkpoint (its data settings)."""
    from ecgcnn.data.beats import RR_FEATURES
    from ecgcnn.personalize.patient_specific import view_files
    from ecgcnn.training.checkpoint import load_model

    models, ck = [], None
    for view, name in view_files(views, ensemble):
        p = path_dir / name
        if not p.is_file():
            raise EcgError(f"{p}: patient model not found (models_dir / views / ensemble)")
        model, c = load_model(p)
        if model.n_rr and model.n_rr != len(RR_FEATURES):
            raise EcgError(
                f"{p}: model takes {model.n_rr} RR features, this code extracts "
                f"{len(RR_FEATURES)} (retrain it: leave models_dir unset)"
            )
        models.append((view, model))
        ck = ck or c
    return models, ck


def _score(models, rec, data_cfg, boundary: int, common: set, mask: np.ndarray) -> dict:
    """Confusions of a (noisy) record's test beats: all, and those in noise-on segments.
    ``data_cfg``: prepared so that every model's view can be cut from it."""
    import torch

    from ecgcnn.data.beats import extract_beats, plain_channels, select_view
    from ecgcnn.evaluation.aami import confusion
    from ecgcnn.training.loop import predict

    beats, _ = extract_beats(rec, data_cfg)
    sel = (beats.sample >= boundary) & ~np.isin(beats.keys(), list(common))
    test = beats.subset(sel)
    plain = plain_channels(data_cfg)
    probs = sum(
        predict(m, select_view(test, data_cfg.beat.template, v, plain), torch.device("cpu"))
        for v, m in models
    )
    pred = probs.argmax(1)
    # beat samples are at the model's rate, the mask at the record's
    at = np.clip(np.round(test.sample * rec.fs / data_cfg.fs).astype(np.int64), 0, len(mask) - 1)
    on = mask[at]
    return {
        "all": confusion(test.y, pred).tolist(),
        "noisy": confusion(test.y[on], pred[on]).tolist(),
    }


def noisy_records(rec, noises: dict, ncfg, noise_fs: float = NSTDB_FS):
    """Yield ``(noise_type, snr_db, noisy Record, measured SNR of lead 0)`` for one clean record."""
    n, fs = rec.n_samples, rec.fs
    mask = nst_mask(n, fs, ncfg.clean_minutes, ncfg.segment_minutes)
    pp = np.array(
        [
            qrs_size(rec.signal[:, j], fs, rec.ann_samples, rec.ann_symbols)
            for j in range(rec.signal.shape[1])
        ]
    )
    for t, noise in noises.items():
        if fs != noise_fs:  # nst mixes at the ECG's rate (it resamples the noise with xform)
            noise = resample(noise, noise_fs, fs)
        chans = [(ncfg.channel + j) % noise.shape[1] for j in range(rec.signal.shape[1])]
        streams = np.stack(
            [noise_stream(noise[:, c], n, round(ncfg.offset_s * fs)) for c in chans], axis=1
        )
        if ncfg.measure == "nst":
            sizes = [noise_size(streams[:, j], fs) for j in range(len(chans))]
        else:
            sizes = [masked_noise_size(streams[:, j], fs, mask) for j in range(len(chans))]
        for snr in ncfg.snr_db:
            noisy = noisy_record(rec, streams, float(snr), mask, pp, np.array(sizes))
            yield (
                t,
                float(snr),
                noisy,
                added_snr(rec.signal[:, 0], noisy.signal[:, 0], fs, mask, float(pp[0])),
            )


def run_patient(record: str, state: dict) -> dict:
    """Train (or load) one patient's model and score it clean and under every noise condition.

    ``state``: ``cfg``, ``out`` (output folder), ``noises``, ``beats`` (prepared beats to reuse
    or None) and ``common`` (keys of the common-set beats left out of the test).
    """
    import torch

    from ecgcnn.data.io import read_record
    from ecgcnn.data.splits import boundary_sample
    from ecgcnn.personalize.patient_specific import (
        finetune_patient,
        prepared_template,
        view_data,
    )
    from ecgcnn.training.checkpoint import checkpoint_data_config

    torch.set_num_threads(1)  # one thread per worker process: workers x 1 = the cores
    cfg, out = state["cfg"], state["out"]
    t0 = time.perf_counter()
    sub = f"{record}_m{float(cfg.split.minutes):g}"
    if cfg.models_dir:
        mdir = Path(cfg.models_dir) / sub
    else:
        mdir = out / "models" / sub
        finetune_patient(finetune_config(cfg, record), mdir, beats=state.get("beats"))
    t_train = time.perf_counter() - t0
    models, ck = _load_models(mdir, list(cfg.views), int(cfg.ensemble))
    dcfg = view_data(
        checkpoint_data_config(ck, cfg.data, source=str(mdir)), prepared_template(list(cfg.views))
    )
    rec = read_record(dcfg.root, record, leads=list(dcfg.leads), annotator=dcfg.annotator)
    mask = nst_mask(rec.n_samples, rec.fs, cfg.noise.clean_minutes, cfg.noise.segment_minutes)
    b = boundary_sample(cfg.split.minutes, dcfg.fs)
    args = (dcfg, b, state["common"], mask)
    res = {"record": record, "clean": _score(models, rec, *args), "by_noise": {}}
    for t, snr, noisy, measured in noisy_records(rec, state["noises"], cfg.noise):
        c = _score(models, noisy, *args)
        res["by_noise"].setdefault(t, {})[snr_key(snr)] = {**c, "measured_snr_db": measured}
    if cfg.monitor_snr_db:
        res["monitor"] = _monitor_patient(cfg, rec, mdir, out, state["noises"])
    res["seconds"] = {"train": round(t_train, 2), "total": round(time.perf_counter() - t0, 2)}
    return res


def _monitor_patient(cfg, rec, mdir: Path, out: Path, noises: dict) -> dict:
    """Stream the clean record and the noisy ones at ``monitor_snr_db`` through the monitor."""
    import tempfile

    from ecgcnn.config import MonitorConfig
    from ecgcnn.monitor.session import monitor
    from ecgcnn.noise import write_wfdb

    ncfg = OmegaConf.merge(cfg.noise, {"snr_db": list(cfg.monitor_snr_db)})
    runs = [("clean", "-", rec)] + [
        (t, snr_key(snr), noisy) for t, snr, noisy, _ in noisy_records(rec, noises, ncfg)
    ]
    res: dict = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for t, snr, r in runs:
            write_wfdb(r, Path(tmp) / "db", rec.name)
            mc = OmegaConf.merge(
                OmegaConf.structured(MonitorConfig),
                {
                    "data": {"root": str(Path(tmp) / "db")},
                    "record": rec.name,
                    "checkpoint": str(mdir / "model.pt"),
                    "leads": list(rec.leads),
                    "score_from_s": 60.0 * float(cfg.noise.clean_minutes),
                    "plot": {"enabled": False},
                },
            )
            sc = monitor(mc, Path(tmp) / "run")["score"]
            q = sc["qrs"]["whole"]
            res.setdefault(t, {})[snr] = {
                "qrs": [q["tp"], q["fn"], q["fp"]],
                "confusion": sc["classification"]["confusion"],
            }
    return res


def _monitor_summary(results: list[dict]) -> dict:
    from ecgcnn.evaluation.aami import combine

    out: dict = {}
    for t, by_snr in results[0]["monitor"].items():
        for snr in by_snr:
            tp, fn, fp = np.sum([r["monitor"][t][snr]["qrs"] for r in results], axis=0).tolist()
            g = combine({r["record"]: r["monitor"][t][snr]["confusion"] for r in results})
            out.setdefault(t, {})[snr] = {
                "QRS": {
                    "Se": tp / max(1, tp + fn),
                    "PPV": tp / max(1, tp + fp),
                    "TP": tp,
                    "FN": fn,
                    "FP": fp,
                },
                **_stats(g),
            }
    return out


def _stats(block: dict) -> dict:
    keep = ("Se", "PPV", "Spe", "Acc", "TP", "FN", "FP", "TN")
    return {k: {m: block[k][m] for m in keep} for k in ("VEB", "SVEB")}


def summarize(results: list[dict], cfg) -> dict:
    """Gross figures per noise type and SNR from per-patient confusions (``aami.combine``)."""
    from ecgcnn.evaluation.aami import combine

    def gross(*path):
        def get(r):
            for k in path:
                r = r[k]
            return r

        return combine({r["record"]: get(r) for r in results})

    clean, clean_on = gross("clean", "all"), gross("clean", "noisy")
    out = {
        "snr_db": [float(s) for s in cfg.noise.snr_db],
        "noise_types": list(cfg.noise.types),
        "n_patients": len(results),
        "records": sorted(r["record"] for r in results),
        "clean": {
            **_stats(clean),
            "n_beats": clean["n_beats"],
            # the same model on the clean record, scored on the beats that the noisy
            # runs' noisy_only blocks score: their baseline
            "noisy_only": {**_stats(clean_on), "n_beats": clean_on["n_beats"]},
        },
        "by_noise": {},
    }
    for t in cfg.noise.types:
        for snr in map(snr_key, cfg.noise.snr_db):
            g = gross("by_noise", t, snr, "all")
            gn = gross("by_noise", t, snr, "noisy")
            meas = [r["by_noise"][t][snr]["measured_snr_db"] for r in results]
            out["by_noise"].setdefault(t, {})[snr] = {
                **_stats(g),
                "n_beats": g["n_beats"],
                "noisy_only": {**_stats(gn), "n_beats": gn["n_beats"]},
                "measured_snr_db": {
                    "median": float(np.median(meas)),
                    "min": float(np.min(meas)),
                    "max": float(np.max(meas)),
                },
            }
    out["protocol"] = {
        k: OmegaConf.to_container(cfg.noise, resolve=True)[k]
        for k in (
            "channel",
            "offset_s",
            "clean_minutes",
            "segment_minutes",
            "em_seed",
            "em_band",
            "measure",
        )
    }
    out["protocol"].update(
        {
            "train_minutes": float(cfg.split.minutes),
            "models_dir": cfg.models_dir,
            "em": "synthetic (ecgcnn.noise.synth_em)",
        }
    )
    return out


def generated_stress(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the noise stress test; write noise_stress.json, per_record.json, .png and report.md."""
    from ecgcnn.data.cache import load_beats
    from ecgcnn.data.splits import draw_common_set

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    records = [str(r) for r in (cfg.records or cfg.split.records)]
    bad = [r for r in records if r not in cfg.split.records]
    if bad:
        raise EcgError(f"records: {bad} are not patients of the split (split.records)")
    if cfg.workers < 1:
        raise EcgError(f"workers: must be >= 1, got {cfg.workers}")
    if not cfg.noise.snr_db:
        raise EcgError("noise.snr_db: empty")
    if (cfg.ensemble != 1 or len(cfg.views) != 1) and cfg.monitor_snr_db:
        raise EcgError(
            "monitor_snr_db: the monitor streams one model; needs ensemble=1 and one view"
        )
    # at the noise records' own rate: noisy_records resamples to a record's rate if it differs
    noises = load_noises(cfg.noise, NSTDB_SAMPLES, NSTDB_FS)
    # the common set is drawn from clean beats exactly as ecgcnn-finetune draws it, so the test
    # beats here are the finetune test beats (models_dir models must share these settings)
    need = sorted(set(cfg.split.common_records) | ({*records} if not cfg.models_dir else set()))
    from ecgcnn.personalize.patient_specific import prepared_template, view_data

    beats = load_beats(view_data(cfg.data, prepared_template(list(cfg.views))), records=need).beats
    common = draw_common_set(
        beats, list(cfg.split.common_records), dict(cfg.split.common_counts), cfg.split.common_seed
    )
    state = {
        "cfg": cfg,
        "out": out_dir,
        "noises": noises,
        "beats": beats,
        "common": set(common.keys().tolist()) if cfg.split.exclude_common_from_test else set(),
    }
    from joblib import Parallel, delayed

    results = []
    # workers=1 runs in this process (no pickling of the beats); else loky processes
    runs = Parallel(n_jobs=int(cfg.workers), return_as="generator_unordered")(
        delayed(run_patient)(r, state) for r in records
    )
    for r in runs:
        results.append(r)
        print(
            f"  patient {r['record']}: train {r['seconds']['train']:.1f} s, noise "
            f"conditions {r['seconds']['total'] - r['seconds']['train']:.1f} s",
            flush=True,
        )
    results.sort(key=lambda r: r["record"])
    summary = summarize(results, cfg)
    if cfg.monitor_snr_db:
        summary["monitor"] = _monitor_summary(results)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    write_json(out_dir / "noise_stress.json", summary)
    write_json(out_dir / "per_record.json", {r["record"]: r for r in results})
    figure(summary).savefig(out_dir / "noise_stress.png", dpi=110)
    (out_dir / "report.md").write_text(format_table(summary, markdown=True))
    return summary
