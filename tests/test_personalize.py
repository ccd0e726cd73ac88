"""Reference kit and ecgcnn-personalize on tiny synthetic records: round trip (build, load,
personalize both ways), annotation positions at the record's own rate, damaged / other-format
kits, every bad input as one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import wfdb
from conftest import synth_ecg, write_record
from omegaconf import OmegaConf

from ecgcnn.config import KitConfig, PersonalizeConfig
from ecgcnn.errors import EcgError
from ecgcnn.models.shipped import default_checkpoint
from ecgcnn.personalize.kit import MANIFEST, build_kit, load_kit
from ecgcnn.personalize.run import personalize_record

REFS = ["r1", "r2", "r3"]
MIN = 0.5  # training minutes of these 96-second records


def tiny_kit_config(db, out, cache):
    """A kit of three synthetic 360 Hz records (N + every 5th/6th/7th beat V), 2 epochs."""
    recs = "[" + ",".join(REFS) + "]"
    common = [
        f"data.root={db}",
        f"data.cache_dir={cache}",
        "data.records=[]",
        f"split.records={recs}",
        f"split.common_records={recs}",
        "split.common_counts={N: 20, S: 0, V: 6, F: 0, Q: 0}",
        f"split.minutes={MIN}",
        "trainer.max_epochs=2",
    ]
    zs = [
        f"data.root={db}",
        f"data.cache_dir={cache}",
        "data.records=[]",
        f"library_records={recs}",
        "abs.classes=[V]",
        "ensemble=1",
        "template=[none]",
        "trainer.max_epochs=2",
        "synth.n_per_class=20",
        "figures=false",
    ]
    return OmegaConf.merge(
        OmegaConf.structured(KitConfig),
        {
            "out": str(out),
            "common_epochs": 2,
            "workers": 1,
            "patient_specific": common,
            "zero_shot": zs,
        },
    )


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    base = tmp_path_factory.mktemp("kit")
    db = base / "db"
    for i, name in enumerate(REFS):
        sig, r, syms = synth_ecg(120, rr_s=0.8, seed=i, v_every=5 + i)
        write_record(db, name, sig, r, syms)
    return build_kit(tiny_kit_config(db, base / "kit", base / "cache"), log=lambda *_: None)


def person_cfg(kit, record, **kw):
    return OmegaConf.merge(
        OmegaConf.structured(PersonalizeConfig),
        {"kit": str(kit), "record": str(record), "minutes": MIN, "threads": 1, **kw},
    )


@pytest.fixture(scope="module")
def patient128(tmp_path_factory):
    """A new patient at 128 Hz with SVDB's lead names (ECG1, ECG2)."""
    d = tmp_path_factory.mktemp("p128")
    sig, r, syms = synth_ecg(110, fs=128, rr_s=0.85, seed=7, v_every=6)
    write_record(d, "p128", sig, r, syms, fs=128, leads=("ECG1", "ECG2"))
    return d / "p128", r, syms


def test_kit_manifest_and_load(kit):
    man = json.loads((kit / MANIFEST).read_text())
    assert man["kit_format"] == 1 and man["fs"] == 360.0 and man["views"] == ["none", "add"]
    assert set(man["sha256"]) == {
        "common_beats.npz",
        "abs_library.npz",
        "common_none.pt",
        "common_add.pt",
        "generic.pt",
    }
    assert man["records"]["library"] == REFS and man["generic"] == "generic.pt"
    assert man["generic_source"] == "shipped"
    k = load_kit(kit)
    assert k.generic.read_bytes() == default_checkpoint().read_bytes()
    assert k.common.counts() == {"N": 20, "S": 0, "V": 6, "F": 0, "Q": 0}  # as drawn
    assert set(k.library.record.tolist()) <= set(REFS) and len(k.library) > 0
    assert k.patient_specific.trainer.max_epochs == 2  # settings kept, not the defaults


def test_personalize_128hz_both_modes(kit, patient128, tmp_path):
    path, r, _ = patient128
    for mode in ("patient_specific", "zero_shot"):
        out = tmp_path / mode
        m = personalize_record(person_cfg(kit, path, mode=mode, lead="ECG1"), out)
        ann = wfdb.rdann(str(out / "p128"), "ecgcnn")
        assert ann.fs == 128
        # every written position is a reference beat position at 128 Hz (edge beats dropped)
        assert set(ann.sample.tolist()) <= set(np.asarray(r).tolist())
        assert len(ann.sample) == m["beats"] >= len(r) - 4
        assert set(ann.symbol) <= set("NSVFQ")
        saved = json.loads((out / "metrics.json").read_text())
        if mode == "patient_specific":
            # scored on the beats after the first minutes: their reference count
            after = int((np.asarray(r) >= MIN * 60 * 128).sum())
            assert saved["n_beats"] in (after, after - 1, after - 2)
            assert (out / "model.pt").is_file() and (out / "model_add.pt").is_file()
        else:
            b = saved["binary"]
            assert b["TP"] + b["FN"] + b["FP"] + b["TN"] == sum(saved["test_counts"].values())
            import torch

            ck = torch.load(out / "best.pt", weights_only=True)
            assert ck["zeroshot"]["beat_scale"] == "running" and ck["data"]["fs"] == 360.0


def test_personalize_review_in_the_loop(kit, patient128, tmp_path):
    """review.budget=3, one question per 20 s: three beats asked after the training minutes, at
    the record's own rate, answered with the reference label, listed in the report, not scored."""
    path, r, syms = patient128
    review = {"budget": 3, "interval_s": 20.0, "retrain_s": 20.0, "replay": 16}
    m = personalize_record(person_cfg(kit, path, lead="ECG1", review=review), tmp_path / "rv")
    asked = m["review"]["beats"]
    assert m["review"]["asked"] == 3 and m["review"]["rounds"] >= 2
    samples = [b["sample"] for b in asked]
    assert set(samples) <= set(np.asarray(r).tolist()) and samples == sorted(samples)
    # one per 20-s interval after the first MIN minutes
    assert sorted({int((s / 128 - MIN * 60) // 20) for s in samples}) == [0, 1, 2]
    label = dict(zip(np.asarray(r).tolist(), syms))
    assert [b["label"] for b in asked] == ["N" if label[s] == "N" else "V" for s in samples]
    after = int((np.asarray(r) >= MIN * 60 * 128).sum())
    assert m["n_beats"] in (after - 3, after - 4, after - 5)  # edge beats dropped as above
    ann = wfdb.rdann(str(tmp_path / "rv" / "p128"), "ecgcnn")
    written = dict(zip(ann.sample.tolist(), ann.symbol))
    assert [written[s] for s in samples] == [b["label"] for b in asked]
    report = (tmp_path / "rv" / "report.md").read_text()
    assert all(f"Asked: sample {s} " in report for s in samples)
    with pytest.raises(EcgError, match="review.budget"):
        personalize_record(
            person_cfg(kit, path, lead="ECG1", mode="zero_shot", review=review), tmp_path / "z"
        )


def test_reference_patient_is_leave_one_out(kit, tmp_path):
    k = load_kit(kit)
    m = personalize_record(
        person_cfg(kit, k.patient_specific.data.root + "/r2", mode="zero_shot"), tmp_path
    )
    # the kit's library holds r2's filters; r2's own model is built without them
    assert "r2" in set(k.library.record.tolist())
    assert m["record"] == "r2" and m["train"]["library_records"] == ["r1", "r3"]


def test_damaged_and_foreign_kits(kit, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(kit, bad)
    (bad / "common_add.pt").write_bytes(b"garbage")
    with pytest.raises(EcgError, match=r"common_add\.pt: kit file damaged"):
        load_kit(bad)
    (bad / "common_add.pt").unlink()
    with pytest.raises(EcgError, match=r"common_add\.pt: kit file missing"):
        load_kit(bad)
    shutil.rmtree(bad)
    shutil.copytree(kit, bad)
    man = json.loads((bad / MANIFEST).read_text())
    man["kit_format"] = 99
    (bad / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(EcgError, match=r"kit\.json: kit format 99"):
        load_kit(bad)
    with pytest.raises(EcgError, match="not a kit"):
        load_kit(tmp_path)


def test_bad_inputs_one_line(kit, patient128, tmp_path):
    import edfio

    path, *_ = patient128
    # no kit lead (MLII) and no lead=
    with pytest.raises(EcgError, match="MLII") as e:
        personalize_record(person_cfg(kit, path), tmp_path / "a")
    assert "\n" not in str(e.value) and "p128" in str(e.value)
    # an EDF without labels in patient_specific mode
    sig, *_ = synth_ecg(110, fs=128, seed=3)
    sig = sig[: len(sig) // 128 * 128]  # whole EDF data records of 1 s
    edf = tmp_path / "nolabels.edf"
    edfio.Edf([edfio.EdfSignal(sig[:, 0], 128, label="ECG1", physical_dimension="mV")]).write(edf)
    with pytest.raises(EcgError, match="no beat labels"):
        personalize_record(person_cfg(kit, edf, lead="ECG1"), tmp_path / "b")
    # labels outside the record
    lab = tmp_path / "labels.csv"
    lab.write_text("sample,symbol\n100,N\n99999999,N\n")
    with pytest.raises(EcgError, match="outside the record"):
        personalize_record(person_cfg(kit, path, lead="ECG1", labels=str(lab)), tmp_path / "c")
    # a CSV with NaN
    csv = tmp_path / "nan.csv"
    x = sig[:, 0].copy()
    x[50] = np.nan
    csv.write_text("\n".join(f"{v}" for v in x))
    with pytest.raises(EcgError, match="nan.csv"):
        personalize_record(person_cfg(kit, csv, fs=128.0, mode="zero_shot"), tmp_path / "d")
    # a rate below 100 Hz
    slow = tmp_path / "slow"
    s2, r3, y3 = synth_ecg(60, fs=90, seed=4)
    write_record(slow, "s90", s2, r3, y3, fs=90)
    with pytest.raises(EcgError, match="below the 100 Hz"):
        personalize_record(person_cfg(kit, slow / "s90"), tmp_path / "e")
    for d in "abcde":
        assert not (tmp_path / d).exists()  # nothing written


def test_cli_exit_2_and_nothing_overwritten(kit, patient128, tmp_path):
    path, *_ = patient128
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("x")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgcnn.apps.personalize",
            f"kit={kit}",
            f"record={path}",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MLII" in lines[0] and "p128" in lines[0]
    written = {x.name for x in run.iterdir() if not x.name.startswith(".")}
    assert written <= {"keep.txt", "personalize.log"} and (run / "keep.txt").read_text() == "x"
    k2 = tmp_path / "k2"
    k2.mkdir()
    (k2 / "x").write_text("x")
    p = subprocess.run(
        [sys.executable, "-m", "ecgcnn.apps.kit", f"out={k2}", f"hydra.run.dir={tmp_path / 'kr'}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2 and "not empty" in p.stderr and (k2 / "x").read_text() == "x"


@pytest.fixture(scope="module")
def db128(tmp_path_factory):
    """Three new patients at 128 Hz with SVDB lead names and a RECORDS file."""
    d = tmp_path_factory.mktemp("db128")
    names = ["q1", "q2", "q3"]
    for i, n in enumerate(names):
        sig, r, syms = synth_ecg(110, fs=128, rr_s=0.8 + 0.05 * i, seed=10 + i, v_every=4 + i)
        write_record(d, n, sig, r, syms, fs=128, leads=("ECG1", "ECG2"))
    (d / "RECORDS").write_text("\n".join(names) + "\n")
    return d


def test_crossdb_quick_and_bxb_agree(kit, db128, tmp_path):
    """The cross-database benchmark's small mode ends with its JSON line, and WFDB's bxb, run on
    the .ecgcnn files it wrote, counts the same beats as the project's EC57 scorer."""
    from conftest import REPO

    from ecgcnn.evaluation import bxb

    out = tmp_path / "bench"
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/benchmark_crossdb.py"),
            "--kit",
            str(kit),
            "--db",
            str(db128),
            "--quick",
            "--workers",
            "2",
            "--minutes",
            str(MIN),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(last) == {"wall_s", "peak_rss_mb", "patient_specific", "zero_shot"}
    assert set(last["patient_specific"]["VEB"]) == {"Se", "PPV", "Spe", "Acc"}
    assert set(last["zero_shot"]) == {"Se", "PPV", "F1", "p_detect_first3"}
    try:
        bindir = bxb.build_bxb(tmp_path / "bxb")
    except EcgError as exc:
        pytest.skip(f"bxb cannot be built here: {exc}")
    for name in ("q1", "q2", "q3"):
        run = out / db128.name / "patient_specific" / name
        ours = json.loads((run / "metrics.json").read_text())
        r = bxb.run_bxb(db128, name, "ecgcnn", start_s=MIN * 60, test_dir=run, bindir=bindir)
        # same beats judged (every written beat sits on a reference beat), same V decisions
        assert r["qrs"]["tp"] == ours["n_beats"]
        for ec57, key in (("VEB", "veb"), ("SVEB", "sveb")):
            assert (r[key]["tp"], r[key]["fn"], r[key]["fp"]) == (
                ours[ec57]["TP"],
                ours[ec57]["FN"],
                ours[ec57]["FP"],
            ), (name, ec57)
