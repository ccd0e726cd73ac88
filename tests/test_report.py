"""Report files: metrics.json, report.md, self-contained report.html, PNG figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from ecgcnn.errors import EcgError
from ecgcnn.evaluation.aami import score
from ecgcnn.evaluation.report import load_published, write_report


@pytest.fixture
def metrics():
    # Record "100": 50 N (2 called V), 10 V (all found), 0 S. Record "201": 20 N, 5 S (4 found).
    y_true = np.array([0] * 50 + [2] * 10 + [0] * 20 + [1] * 5)
    y_pred = np.array([0] * 48 + [2] * 2 + [2] * 10 + [0] * 20 + [1] * 4 + [0])
    rec = np.array(["100"] * 60 + ["201"] * 25)
    return score(y_true, y_pred, rec)


def test_load_published_values():
    pub = load_published()
    k = pub["kiranyaz2016"]
    assert k["protocol"] == "patient_specific" and k["records"] == 44
    assert k["VEB"] == {"Acc": 0.986, "Se": 0.950, "Spe": 0.981, "PPV": 0.895}
    assert k["SVEB"] == {"Acc": 0.964, "Se": 0.646, "Spe": 0.986, "PPV": 0.621}
    d = pub["dechazal2004"]
    assert d["protocol"] == "inter_patient"
    assert d["VEB"]["Se"] == 0.777 and d["VEB"]["PPV"] == 0.819
    assert d["SVEB"]["Se"] == 0.759 and d["SVEB"]["PPV"] == 0.385
    assert {"jiangkong2007", "ince2009"} <= set(pub)


def test_load_published_rejects_bad_file(tmp_path):
    with pytest.raises(EcgError, match="not found"):
        load_published(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "x:\n  citation: c\n  protocol: patient_specific\n  records: 1\n"
        "  VEB: {Acc: 98.6, Se: null, Spe: null, PPV: null}\n"
        "  SVEB: {Acc: null, Se: null, Spe: null, PPV: null}\n"
    )
    with pytest.raises(EcgError, match="not a fraction"):
        load_published(bad)


def test_write_report(tmp_path, metrics):
    extra = Figure()
    extra.add_subplot().plot([0, 1], [1, 0])
    paths = write_report(
        metrics,
        tmp_path / "out",
        "Test run",
        published=load_published(),
        extra_figures={"loss_curve": extra},
        notes=["protocol: patient-specific"],
    )
    for key in ("metrics", "markdown", "html", "confusion", "per_record", "loss_curve"):
        assert paths[key].is_file(), key
    assert paths["confusion"].name == "confusion.png"
    assert paths["per_record"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["metrics"].read_text()) == metrics
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temp file left behind

    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="http' not in page and "<link" not in page  # self-contained
    for name in ("Kiranyaz", "de Chazal", "Jiang", "Ince"):
        assert name in page

    md = paths["markdown"].read_text()
    # Gross VEB: TP=10, FN=0, FP=2, TN=73 -> Acc 83/85 = 97.6, Se 100.0, Spe 73/75 = 97.3,
    # +P 10/12 = 83.3. Gross SVEB: TP=4, FN=1, FP=0, TN=80 -> Acc 98.8, Se 80.0, Spe 100.0,
    # +P 100.0.
    assert "| gross | 97.6 | 100.0 | 97.3 | 83.3 | 98.8 | 80.0 | 100.0 | 100.0 |" in md
    # Record 100 has no S beats and none predicted: SVEB Se and +P undefined, shown as a dash.
    assert "| 100 | 60 | 96.7 | 100.0 | 96.0 | 83.3 | 100.0 | – | 100.0 | – |" in md
    assert "| average |" in md and "confusion.png)" in md
    assert "protocol: patient-specific" in md
    assert "- dechazal2004: " in md and "Acc and Spe left null" in md
    assert "project brief" not in md and "project issue" not in md
    # captions say what a figure shows, not its file name
    assert "*Confusion matrix of all test beats" in md and "<figcaption>confusion<" not in page
    assert "<figcaption>loss_curve</figcaption>" in page  # a figure without a caption: its name
    # the average table says why it is below the gross one
    assert "pull the average below the gross figure" in md
    # "this work": its record count; no protocol when the studies shown mix both protocols
    assert "| this work (gross) |  | 2 |" in md


def test_this_work_row_and_zero_percent_bars(tmp_path, metrics):
    ps = {k: v for k, v in load_published().items() if v["protocol"] == "patient_specific"}
    md = write_report(metrics, tmp_path, "t", published=ps)["markdown"].read_text()
    assert "| this work (gross) | patient_specific | 2 | 97.6 |" in md
    from ecgcnn.evaluation.figures import per_record_figure

    # record 201: V Se undefined (no V beat) -> "n/a"; a record with V beats all missed -> "0"
    per = dict(metrics["per_record"])
    per["x"] = {"VEB": {"Se": 0.0, "PPV": None}, "SVEB": {"Se": None, "PPV": None}}
    texts = [t.get_text() for ax in per_record_figure(per).axes for t in ax.texts]
    assert texts.count("0") == 1 and "n/a" in texts


def test_write_report_without_records(tmp_path):
    m = score([0, 2, 2], [0, 2, 0])
    paths = write_report(m, tmp_path, "gross only")
    assert "per_record" not in paths and paths["confusion"].is_file()
    assert "average" not in paths["markdown"].read_text()


def test_write_report_rejects_bad_input(tmp_path, metrics):
    with pytest.raises(EcgError, match="missing"):
        write_report({"VEB": {}}, tmp_path, "x")
    with pytest.raises(EcgError, match="figure name"):
        write_report(metrics, tmp_path, "x", extra_figures={"../evil": Figure()})
