"""One patient's record end to end: read it, cut its beats at the kit's rate, build the
patient's model(s) from the kit plus the first minutes, classify the whole recording, write the
beat decisions as a WFDB annotation file at the record's own rate, score when labels exist.

Which beats are classified: the reference annotations' beat positions when the record has
labels (the protocol: the model is judged on the beats, not on finding them), else the beats
the streaming QRS detector (``ecgcnn.monitor.qrs.detect``) finds, which zero-shot takes as its
normal training beats in the first minutes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ecgcnn.atomic import write_json
from ecgcnn.data.annotations import class_symbols, write_annotations
from ecgcnn.data.beats import AAMI_MAP, CLASSES, BeatSet, extract_beats
from ecgcnn.data.io import Record
from ecgcnn.data.preprocess import resample_samples
from ecgcnn.data.splits import boundary_sample
from ecgcnn.errors import EcgError
from ecgcnn.evaluation.report import pct
from ecgcnn.personalize.kit import Kit, load_kit

MODES = ("patient_specific", "zero_shot")


def record_name(path) -> str:
    """``/data/svdb/801`` -> ``801``, ``holter.edf`` -> ``holter``."""
    p = Path(str(path))
    return p.stem if p.suffix.lower() in (".edf", ".csv", ".hea", ".dat") else p.name


def read_patient(cfg, leads) -> Record:
    """The record of ``cfg.record`` with the kit's ``leads`` (or ``cfg.lead``) at its own rate."""
    from ecgcnn.data.records import load_record

    rec = load_record(
        cfg.record,
        leads=list(leads),
        lead=cfg.lead,
        fs=cfg.fs,
        labels=cfg.labels,
        annotator=cfg.reference_annotator,
    )
    rec.name = record_name(cfg.record)
    return rec


def has_labels(rec: Record) -> bool:
    return bool(np.isin(rec.ann_symbols, list(AAMI_MAP)).any())


def detected_as_normal(rec: Record) -> Record:
    """The record with the QRS detector's beats as its annotations, every one labelled N."""
    from ecgcnn.monitor.qrs import detect

    peaks = detect(rec.signal[:, 0], rec.fs)
    if len(peaks) < 2:
        raise EcgError(
            f"{rec.name}: the QRS detector found {len(peaks)} beats, nothing to personalize on"
        )
    return replace(rec, ann_samples=peaks, ann_symbols=np.full(len(peaks), "N", dtype="<U2"))


def beats_at_kit_rate(rec: Record, data_cfg) -> tuple[BeatSet, np.ndarray]:
    """The record's beats at the kit's rate and, for each, its annotation sample at the
    record's own rate (kept from the annotation, not mapped back)."""
    beats, _ = extract_beats(rec, data_cfg)
    is_beat = np.isin(rec.ann_symbols, list(AAMI_MAP))
    own = rec.ann_samples[is_beat]
    at_kit = resample_samples(own, rec.fs, float(data_cfg.fs)) if rec.fs != data_cfg.fs else own
    # extract_beats keeps beats in annotation order and drops only edge beats
    idx = np.searchsorted(at_kit, beats.sample)
    if (idx >= len(own)).any() or (at_kit[np.minimum(idx, len(own) - 1)] != beats.sample).any():
        raise EcgError(f"{rec.name}: beat positions do not map back to the record's samples")
    return beats, own[idx]


def _patient_specific(kit: Kit, cfg, beats: BeatSet, name: str, out_dir: Path):
    from ecgcnn.personalize.patient_specific import train_views

    ps = OmegaConf.merge(kit.patient_specific, {"record": name, "split": {"minutes": cfg.minutes}})
    boundary = boundary_sample(cfg.minutes, kit.fs)
    common = kit.common
    # a reference patient's beats that are in the common set are neither their own training
    # beats twice nor scored (exclude_common_from_test, as the protocol)
    in_common = np.isin(beats.keys(), common.keys())
    own = beats.subset((beats.sample < boundary) & ~in_common)
    if len(own) == 0:
        raise EcgError(f"{cfg.record}: no labelled beat in the first {cfg.minutes:g} min")
    train_all = BeatSet.concat([common, own])
    by_view, _, models = train_views(
        ps, train_all, beats, name, out_dir, kit.prepared, [str(p) for p in kit.common_models]
    )
    proba = sum(by_view.values()) / (len(by_view) * int(ps.ensemble))
    scored = (beats.sample >= boundary) & ~in_common
    info = {"train_counts": train_all.counts()}
    pred = proba.argmax(1)
    if cfg.review.budget > 0:
        from ecgcnn.data.beats import plain_channels
        from ecgcnn.personalize.review import review_record

        rest = np.flatnonzero(scored)
        rv = review_record(
            models, kit.prepared, plain_channels(ps.data), train_all, beats.subset(rest),
            boundary, kit.fs, cfg.review, ps.optim, ps.trainer,
        )  # fmt: skip
        asked = rest[rv.asked]
        pred[rest] = rv.proba.argmax(1)
        pred[asked] = beats.y[asked]  # the cardiologist's answers go into the annotation file
        scored[asked] = False  # answered beats are not test beats
        info["review"] = {"index": asked, "beats": rv.reasons, "rounds": rv.rounds}
    return pred, scored, info


def _zero_shot(kit: Kit, cfg, beats: BeatSet, name: str, out_dir: Path):
    from ecgcnn.personalize.zero_shot import fit_person, person_library

    zs = OmegaConf.merge(kit.zero_shot, {"record": name, "minutes": cfg.minutes})
    boundary = boundary_sample(cfg.minutes, kit.fs)
    early = beats.sample < boundary
    # no abnormal beat of the person is ever a training beat: with labels, the protocol's
    # labelled N beats; without, every detected beat of the first minutes taken as normal
    normals = beats.subset(early & (beats.y == CLASSES.index("N")))
    if len(normals) < 2:
        raise EcgError(
            f"{cfg.record}: fewer than 2 normal beats in the first {cfg.minutes:g} "
            "min, nothing to personalize on"
        )
    lib = person_library(zs, {}, name, kit.library)
    fitted = fit_person(zs, normals, lib, name, beats, out_dir, save_model=True)
    flagged = fitted["p_abnormal"] > fitted["threshold"]
    # a flagged beat is written as the likelier of S and V (nsv labels), else N
    sv = np.where(
        fitted["p_sv"][:, 0] >= fitted["p_sv"][:, 1], CLASSES.index("S"), CLASSES.index("V")
    )
    pred = np.where(flagged, sv, CLASSES.index("N"))
    return (
        pred,
        ~early,
        {
            "threshold": fitted["threshold"],
            "normal_beats": len(normals),
            "library_filters": lib.counts(),
            "flagged": flagged,
            "library_records": sorted(set(lib.record.tolist())),
            "synthetic": fitted["synth"].counts(),
        },
    )


def personalize_record(cfg, out_dir) -> dict:
    """Personalize one patient's record from a kit and classify the whole recording.

    Parameters
    ----------
    cfg : ``PersonalizeConfig``
    out_dir : the run directory: the personal model(s), ``<record>.<annotator>`` (WFDB
        annotations at the record's own rate, symbols N/S/V/F/Q), ``metrics.json`` when the
        record has reference labels (scored on the beats after the training minutes) and a
        report

    Returns
    -------
    dict: ``record``, ``mode``, ``fs``, ``beats``, ``annotations`` (path), ``seconds`` and,
    with labels, the figures (patient_specific: EC57 ``VEB``/``SVEB``; zero_shot: ``binary``)
    """
    t0 = time.perf_counter()
    if cfg.minutes <= 0:
        raise EcgError(f"minutes: got {cfg.minutes}, expected > 0 minutes")
    if cfg.review.budget > 0 and cfg.mode != "patient_specific":
        raise EcgError(
            f"review.budget: review-in-the-loop needs mode=patient_specific (got {cfg.mode})"
        )
    import torch

    torch.set_num_threads(max(1, int(cfg.threads)))
    kit = load_kit(cfg.kit)
    settings = kit.patient_specific if cfg.mode == "patient_specific" else kit.zero_shot
    data_cfg = settings.data
    if cfg.mode == "patient_specific":
        from ecgcnn.personalize.patient_specific import view_data

        data_cfg = view_data(data_cfg, kit.prepared)
    rec = read_patient(cfg, data_cfg.leads)
    labelled = has_labels(rec)
    if not labelled:
        if cfg.mode == "patient_specific":
            raise EcgError(
                f"{cfg.record}: no beat labels; patient_specific trains on the "
                f"labelled beats of the first {cfg.minutes:g} min (give labels=FILE"
                ".csv, or use mode=zero_shot)"
            )
        rec = detected_as_normal(rec)
    beats, own_samples = beats_at_kit_rate(rec, data_cfg)
    if rec.n_samples / rec.fs <= cfg.minutes * 60:
        raise EcgError(
            f"{cfg.record}: {rec.n_samples / rec.fs / 60:.1f} min long, nothing left "
            f"after the first {cfg.minutes:g} min (minutes=)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.mode == "patient_specific":
        pred, scored, info = _patient_specific(kit, cfg, beats, rec.name, out_dir)
    else:
        pred, scored, info = _zero_shot(kit, cfg, beats, rec.name, out_dir)
    ann = write_annotations(
        out_dir, rec.name, own_samples, class_symbols(pred), rec.fs, annotator=cfg.annotator
    )
    result = {
        "record": rec.name,
        "path": str(cfg.record),
        "mode": cfg.mode,
        "fs": rec.fs,
        "kit": str(kit.root),
        "kit_fs": kit.fs,
        "lead": rec.leads[0],
        "minutes": float(cfg.minutes),
        "beats": len(beats),
        "annotations": str(ann),
        "labelled": labelled,
    }
    if labelled:
        result.update(_score(cfg, kit, beats, pred, scored, rec, info))
    if "review" in info:
        # the asked beats at the record's own rate, for the cardiologist's list
        for i, b in zip(info["review"]["index"], info["review"]["beats"]):
            b.update(sample=int(own_samples[i]), time_s=round(own_samples[i] / rec.fs, 2))
        result["review"] = {
            "budget": int(cfg.review.budget),
            "asked": len(info["review"]["beats"]),
            "rounds": info["review"]["rounds"],
            "beats": info["review"]["beats"],
        }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if labelled:
        _write_outputs(cfg, result, out_dir)
    return result


def _score(cfg, kit, beats, pred, scored, rec, info) -> dict:
    from ecgcnn.evaluation.aami import score
    from ecgcnn.synthesis.zeroshot import alarm_stats, binary_counts, binary_rates

    y, p = beats.y[scored], pred[scored]
    if cfg.mode == "patient_specific":
        m = score(y, p)
        m["train_counts"] = info["train_counts"]
        return m
    test = beats.subset(scored)
    flagged = info["flagged"][scored]
    counts = binary_counts(y, flagged)
    hours = max(0.0, rec.n_samples / rec.fs - cfg.minutes * 60.0) / 3600.0
    zs = kit.zero_shot
    return {
        "binary": {**counts, **binary_rates(counts)},
        "alarm": alarm_stats(test, flagged, kit.fs, hours, float(zs.alarm_refractory_s)),
        "test_counts": test.counts(),
        "train": {k: v for k, v in info.items() if k != "flagged"},
    }


def _review_notes(review: dict | None) -> list[str]:
    """Report lines of review-in-the-loop: which beats were asked for, and why."""
    if not review:
        return []
    lines = [
        (
            f"Review-in-the-loop (review.budget={review['budget']}): {review['asked']} beats "
            f"asked after the training minutes, {review['rounds']} fine-tuning rounds; "
            "asked beats are not scored (a protocol of its own, not the strict one)."
        )
    ]
    for b in review["beats"]:
        lines.append(
            f"Asked: sample {b['sample']} ({b['time_s']:.1f} s), model said {b['predicted']} "
            f"(margin {b['margin']:.2f}), answer {b['label']}: {b['why']}."
        )
    return lines


def _write_outputs(cfg, metrics: dict, out_dir: Path) -> None:
    if cfg.mode == "patient_specific" and cfg.report:
        from ecgcnn.evaluation.report import published_for, write_report

        write_report(
            metrics,
            out_dir,
            title=f"Patient {metrics['record']}: patient-specific CNN from a reference kit",
            published=published_for("patient_specific"),
            notes=[
                (
                    f"record {metrics['path']} ({metrics['fs']:g} Hz, lead "
                    f"{metrics['lead']}), kit {metrics['kit']}; scored on the beats "
                    f"after the first {metrics['minutes']:g} min"
                ),
                *_review_notes(metrics.get("review")),
            ],
        )
        return
    write_json(out_dir / "metrics.json", metrics)
    if cfg.report:
        b = metrics["binary"]
        lines = [
            f"# Record {metrics['record']}: zero-shot personal CNN",
            "",
            (
                f"{metrics['path']} ({metrics['fs']:g} Hz, lead {metrics['lead']}), kit "
                f"{metrics['kit']}; {metrics['beats']} beats, scored after the first "
                f"{metrics['minutes']:g} min."
            ),
            "",
            "| Se | Spe | +P | F1 | false alarms/h |",
            "|---|---|---|---|---|",
            "| "
            + " | ".join(pct(b[k]) for k in ("Se", "Spe", "PPV", "F1"))
            + f" | {metrics['alarm']['false_alarms_per_hour'] or 0:.1f} |",
            "",
        ]
        (out_dir / "report.md").write_text("\n".join(lines))
