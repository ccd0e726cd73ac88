"""Zero-shot personalization (Kiranyaz et al., Sci Rep 2017): one person's CNN trained on their
own normal beats plus abnormal beats synthesized with other patients' ABS filters.

Protocol, per person (record):
- training: the person's beats labelled N with R peak in the first ``minutes`` minutes (never an
  S/V/F/Q beat of theirs) + synthetic S and V beats from a leave-one-out filter library;
- test: every beat of the rest of the record (minutes 5-30 for MIT-BIH).

Binary scoring: abnormal = S or V (AAMI SVEB/VEB), normal = N. F and Q beats count as neither:
fusion beats are half normal by definition and MIT-BIH's few Q beats are unclassifiable, so a
flag on them is neither a hit nor a false alarm (their counts and flag rate are reported).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb
from matplotlib.figure import Figure

from ecgcnn.data.beats import CLASSES, RR_FEATURES, BeatSet
from ecgcnn.data.io import resolve_root
from ecgcnn.data.splits import boundary_sample
from ecgcnn.errors import EcgError
from ecgcnn.synthesis.abs_filters import FilterLibrary, average_normal

N, S, V, F, Q = range(5)
SYNTH_PREFIX = "~"


# ----------------------------------------------------------------------------- data
def person_split(beats: BeatSet, minutes: float, fs: float) -> tuple[BeatSet, BeatSet]:
    """(normal beats of the first ``minutes``, every beat after them) of one person's record."""
    b = boundary_sample(minutes, fs)
    early = beats.sample < b
    normals = beats.subset(early & (beats.y == N))
    if len(normals) < 2:
        raise EcgError(
            f"record {beats.record[0] if len(beats) else '?'}: fewer than 2 normal "
            f"beats in the first {minutes} min, nothing to personalize on"
        )
    return normals, beats.subset(~early)


def check_training_set(train: BeatSet, person: str, boundary: int, lib: FilterLibrary) -> None:
    """Raise unless the training set holds, of real beats, only the person's early N beats and
    the filter library holds no filter fitted on the person (leave-one-out)."""
    synthetic = np.char.startswith(train.record.astype(str), SYNTH_PREFIX)
    real = ~synthetic
    if (train.record[real] != person).any():
        others = sorted(set(train.record[real].tolist()) - {person})
        raise EcgError(f"zeroshot: real beats of other records {others} in {person}'s training set")
    bad = real & ((train.y != N) | (train.sample >= boundary) | (train.sample < 0))
    if bad.any():
        raise EcgError(
            f"zeroshot: {int(bad.sum())} real beats of {person} in its training set "
            f"are not normal beats of the first {boundary} samples"
        )
    if (lib.record == person).any() or (train.record == SYNTH_PREFIX + person).any():
        raise EcgError(f"zeroshot: the ABS library of {person} holds filters fitted on {person}")


def rr_columns(names) -> list[int]:
    """Indices of the RR features ``names`` (model input masking: those columns are zeroed
    for training and test beats alike); an unknown name is an error."""
    unknown = sorted(set(map(str, names)) - set(RR_FEATURES))
    if unknown:
        raise EcgError(f"rr_drop: unknown RR features {unknown} (choose from {list(RR_FEATURES)})")
    return [RR_FEATURES.index(str(n)) for n in names]


def person_threshold(p_val_normal: np.ndarray, base: float, fpr: float) -> float:
    """Decision threshold of one person from *their own* held-out normal beats only.

    ``fpr`` 0 keeps ``base``. Otherwise the threshold is raised (never lowered) to the
    ``1 - fpr`` quantile of P(abnormal) over the person's validation N beats (first minutes,
    held out of the weight fit), so that at most a share ``fpr`` of them would be flagged. No
    abnormal beat of the person takes part: the choice stays zero-shot.
    """
    if not 0.0 <= fpr < 1.0:
        raise EcgError(f"threshold_fpr: must be in [0, 1), got {fpr}")
    if fpr == 0.0 or len(p_val_normal) == 0:
        return float(base)
    return float(max(base, np.quantile(p_val_normal, 1.0 - fpr)))


def test_hours(root, record: str, fs: float, boundary: int) -> float:
    """Hours of signal after the training minutes (from the WFDB header's length)."""
    hdr = wfdb.rdheader(str(Path(resolve_root(root)) / record))
    return max(0.0, hdr.sig_len * fs / hdr.fs - boundary) / fs / 3600.0


# ----------------------------------------------------------------------------- metrics
def binary_counts(y: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
    """TP/FN/FP/TN of abnormal (S, V) vs normal (N); F and Q beats are left out."""
    abn = np.isin(y, [S, V])
    nor = y == N
    return {
        "TP": int((abn & flagged).sum()),
        "FN": int((abn & ~flagged).sum()),
        "FP": int((nor & flagged).sum()),
        "TN": int((nor & ~flagged).sum()),
    }


def binary_rates(c: dict[str, int]) -> dict[str, float | None]:
    """Se, Spe, +P (PPV), F1, Acc; None where the denominator is 0."""

    def r(a, b):
        return None if b == 0 else a / b

    return {
        "Se": r(c["TP"], c["TP"] + c["FN"]),
        "Spe": r(c["TN"], c["TN"] + c["FP"]),
        "PPV": r(c["TP"], c["TP"] + c["FP"]),
        "F1": r(2 * c["TP"], 2 * c["TP"] + c["FP"] + c["FN"]),
        "Acc": r(c["TP"] + c["TN"], sum(c.values())),
    }


def alarm_stats(
    test: BeatSet, flagged: np.ndarray, fs: float, hours: float, refractory_s: float, first: int = 3
) -> dict:
    """Early-warning figures of one person.

    - ``detected_first3``: was at least one of the first ``first`` abnormal (S/V) test beats
      flagged (None without abnormal test beats);
    - ``p_detect_first3_model``: ``1 - (1 - Se)^3``, the chance of catching one of three
      abnormal beats if misses were independent with this person's miss rate ``1 - Se``;
    - ``triplets_detected``: fraction of all runs of 3 consecutive abnormal occurrences
      (consecutive in the abnormal-beat sequence) with at least one flag;
    - false alarms: an alarm fires at a flagged beat unless one fired less than
      ``refractory_s`` seconds before; an alarm fired by an N beat is false.
    """
    order = np.argsort(test.sample, kind="stable")
    y, fl, t = test.y[order], flagged[order], test.sample[order] / fs
    abn = np.flatnonzero(np.isin(y, [S, V]))
    out: dict = {"abnormal_beats": len(abn)}
    if len(abn):
        hits = fl[abn]
        se = float(hits.mean())
        out["detected_first3"] = bool(hits[:first].any())
        out["first_detected_index"] = int(np.argmax(hits)) + 1 if hits.any() else None
        out["p_detect_first3_model"] = 1.0 - (1.0 - se) ** first
        k = len(hits) - first + 1
        if k > 0:
            win = np.lib.stride_tricks.sliding_window_view(hits, first).any(axis=1)
            out["triplets_detected"] = float(win.mean())
        else:
            out["triplets_detected"] = float(hits.any())
    else:
        out.update(
            detected_first3=None,
            first_detected_index=None,
            p_detect_first3_model=None,
            triplets_detected=None,
        )
    last, alarms, false_alarms = -np.inf, 0, 0
    for i in np.flatnonzero(fl):
        if t[i] - last >= refractory_s:
            alarms += 1
            false_alarms += int(y[i] == N)
            last = t[i]
    out.update(
        alarms=alarms,
        false_alarms=false_alarms,
        hours=hours,
        false_alarms_per_hour=false_alarms / hours if hours > 0 else None,
        normal_flagged_per_hour=int((fl & (y == N)).sum()) / hours if hours > 0 else None,
    )
    return out


# ----------------------------------------------------------------------------- figures
def beats_figure(
    normals: BeatSet,
    synth: BeatSet,
    test: BeatSet,
    record: str,
    per_class: int = 25,
    before: int = 90,
    after: int = 162,
    fs: float = 360.0,
) -> Figure:
    """Average normal beat, real test abnormal beats (display only) and synthetic ones."""
    avg = average_normal(normals)[0]
    t = (-before + np.linspace(0, before + after - 1, avg.shape[-1])) / fs * 1000.0
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)
    for ax, cls in zip(axes, (S, V)):
        for beats, colour, label in (
            (test, "tab:red", "real (test part)"),
            (synth, "tab:blue", "synthetic"),
        ):
            idx = np.flatnonzero(beats.y == cls)
            if len(idx) > per_class:
                idx = rng.choice(idx, per_class, replace=False)
            for j, i in enumerate(idx):
                ax.plot(
                    t,
                    beats.x[i, 0],
                    color=colour,
                    lw=0.6,
                    alpha=0.35,
                    label=f"{label} ({int((beats.y == cls).sum())})" if j == 0 else None,
                )
        ax.plot(t, avg, color="black", lw=2, label="average normal (first minutes)")
        ax.set_title(f"record {record}: {CLASSES[cls]} beats")
        ax.set_xlabel("ms from R peak")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("mV")
    fig.tight_layout()
    return fig
