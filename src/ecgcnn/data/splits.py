"""Patient-specific (Kiranyaz 2016) and inter-patient (de Chazal 2004) splits.

Record lists come from ``configs/split/*.yaml``; this module only applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgcnn.data.beats import CLASSES, BeatSet
from ecgcnn.errors import EcgError, check_settings


@dataclass
class PatientData:
    """One patient's beats under the patient-specific protocol."""

    record: str
    own_train: BeatSet  # beats with R peak in the first `minutes` minutes
    test: BeatSet  # the rest of the record (minus common-set beats when excluded)


def check_patient_split(s) -> None:
    """Refuse an out-of-range patient-specific split (``PatientSpecificSplit``)."""
    counts = dict(s.common_counts)
    check_settings(
        [
            ("split.minutes", s.minutes, s.minutes > 0, "> 0 minutes"),
            ("split.common_counts", counts, all(v >= 0 for v in counts.values()), ">= 0"),
        ]
    )


def boundary_sample(minutes: float, fs: float) -> int:
    """First sample of a patient's test part: R peaks before it go to training."""
    if minutes <= 0:
        raise EcgError(f"split.minutes: must be > 0, got {minutes}")
    return round(minutes * 60.0 * fs)


def draw_common_set(
    beats: dict[str, BeatSet], records: list[str], counts: dict[str, int], seed: int
) -> BeatSet:
    """The common training set: ``counts[c]`` beats of each class drawn from ``records``.

    Kiranyaz 2016 draws 75 N, 75 S, 75 V and all 13 F and 7 Q beats of records 100-124.
    A class with fewer beats than requested is an error, not a silent shortfall.
    """
    missing = [r for r in records if r not in beats]
    if missing:
        raise EcgError(f"split.common_records: records {missing} have no prepared beats")
    pool = BeatSet.concat([beats[r] for r in records])
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, k in counts.items():
        if cls not in CLASSES:
            raise EcgError(f"split.common_counts: unknown class '{cls}' (classes {CLASSES})")
        idx = np.flatnonzero(pool.y == CLASSES.index(cls))
        if k > len(idx):
            raise EcgError(
                f"split.common_counts: {k} {cls} beats requested, records {records[0]}-"
                f"{records[-1]} hold only {len(idx)}"
            )
        chosen.append(np.sort(rng.choice(idx, size=int(k), replace=False)))
    return pool.subset(np.concatenate(chosen))


def patient_specific(
    beats: dict[str, BeatSet], cfg, fs: float
) -> tuple[BeatSet, dict[str, PatientData]]:
    """Common set plus, per patient, the first ``cfg.minutes`` for training and the rest for test.

    Parameters
    ----------
    beats : record -> beats (prepared)
    cfg : ``SplitConfig`` with name ``patient_specific``
    fs : model sampling rate (beats' ``sample`` unit)

    Returns
    -------
    (common, patients)
    """
    common = draw_common_set(
        beats, list(cfg.common_records), dict(cfg.common_counts), cfg.common_seed
    )
    common_keys = set(common.keys().tolist())
    b = boundary_sample(cfg.minutes, fs)
    patients = {}
    for rec in cfg.records:
        if rec not in beats:
            raise EcgError(f"split.records: record {rec} has no prepared beats")
        pb = beats[rec]
        train = pb.sample < b
        test = ~train
        if cfg.exclude_common_from_test:
            # A beat of the common set was seen in training: scoring it would flatter the model.
            test &= ~np.isin(pb.keys(), list(common_keys))
        patients[rec] = PatientData(rec, pb.subset(train), pb.subset(test))
    return common, patients


def patient_train_set(common: BeatSet, patient: PatientData) -> BeatSet:
    """A patient's training beats: the common set plus the patient's own first minutes."""
    own_keys = set(patient.own_train.keys().tolist())
    extra = ~np.isin(common.keys(), list(own_keys))  # no beat twice
    return BeatSet.concat([common.subset(extra), patient.own_train])


def inter_patient(beats: dict[str, BeatSet], cfg) -> tuple[BeatSet, BeatSet]:
    """DS1 beats for training, DS2 beats for test (de Chazal 2004)."""
    overlap = set(cfg.train_records) & set(cfg.test_records)
    if overlap:
        raise EcgError(f"split: train_records and test_records share {sorted(overlap)}")
    for r in list(cfg.train_records) + list(cfg.test_records):
        if r not in beats:
            raise EcgError(f"split: record {r} has no prepared beats")
    train = BeatSet.concat([beats[r] for r in cfg.train_records])
    test = BeatSet.concat([beats[r] for r in cfg.test_records])
    return train, test


def split_records(cfg) -> tuple[list[str], list[str]]:
    """(training records, test records) named by a split config."""
    if cfg.name == "patient_specific":
        recs = list(cfg.records)
        return sorted(set(recs) | set(cfg.common_records)), recs
    return list(cfg.train_records), list(cfg.test_records)
