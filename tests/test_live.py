"""ecgcnn-live: the feed's pacing and buffers, the open-ended driver against ``replay``, a CSV
followed as it grows, bad input; then the page itself in a real headless Chromium on record
119 (slow: needs $ECGCNN_DATA_DIR and chromium + chromedriver, which ``.ci/run`` installs)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose, synth_ecg
from omegaconf import OmegaConf

from ecgcnn.config import AlarmConfig, DataConfig
from ecgcnn.data.beats import CLASSES, RR_FEATURES
from ecgcnn.errors import EcgError
from ecgcnn.monitor import live_adapter
from ecgcnn.monitor.alarms import AlarmEngine
from ecgcnn.monitor.live import LiveFeed, serve
from ecgcnn.monitor.live_adapter import follow_csv, parse_csv_lines
from ecgcnn.monitor.stream import BeatStream, replay

HAVE_CHROMIUM = bool(shutil.which("chromium") and shutil.which("chromedriver"))


def wide_is_v(x: np.ndarray, rr: np.ndarray) -> np.ndarray:
    """Stub classifier: wide complexes are V, premature narrow ones S, others N."""
    v = x[:, 0] - np.median(x[:, 0], axis=1, keepdims=True)
    width = (v > 0.5 * v.max(axis=1, keepdims=True)).sum(axis=1)
    k = np.where(width > 9, 2, np.where(rr[:, 0] < 0.7, 1, 0))
    p = np.full((len(x), len(CLASSES)), 0.05, np.float32)
    p[np.arange(len(x)), k] = 0.8
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- adapter
def test_open_ended_driver_gives_replays_events():
    sig, _, _ = synth_ecg(70, v_every=4)
    cfg, fs = OmegaConf.structured(DataConfig), 360.0
    alarms = OmegaConf.structured(AlarmConfig)
    ref: list[dict] = []
    replay(
        sig[:, :1],
        fs,
        BeatStream(cfg, fs, 1),
        wide_is_v,
        0.5,
        False,
        AlarmEngine(alarms, fs, CLASSES),
        ref.append,
    )
    got: list[dict] = []
    step = 180
    chunks = (sig[s : s + step, :1] for s in range(0, len(sig), step))
    seen = []
    live_adapter.run_chunks(
        chunks,
        fs,
        1,
        cfg,
        wide_is_v,
        CLASSES,
        alarms,
        4.0,
        lambda c, s: seen.append((s, len(c))),
        got.append,
    )
    assert got == ref  # beats, classes, alarms and when they were raised
    assert (
        sum(e["type"] == "alarm" for e in ref) >= 1
        and sum(e["k"] == 2 for e in ref if e["type"] == "beat") >= 10
    )
    assert seen[0] == (0, step) and sum(n for _, n in seen) == len(sig)  # every sample, in order
    # irregular chunks: the same beats and classes (the stream is chunk-invariant)
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(1, 700, size=len(sig) // 100))
    odd: list[dict] = []
    live_adapter.run_chunks(
        np.split(sig[:, :1], cuts[cuts < len(sig)]),
        fs,
        1,
        cfg,
        wide_is_v,
        CLASSES,
        alarms,
        4.0,
        lambda c, s: None,
        odd.append,
    )
    beats = lambda evs: [(e["sample"], e["k"]) for e in evs if e["type"] == "beat"]
    assert beats(odd) == beats(ref)


def test_record_replay_is_held_by_the_hook_and_events_match_the_monitor():
    sig, _, _ = synth_ecg(40, v_every=4)
    cfg, fs = OmegaConf.structured(DataConfig), 360.0
    feed = LiveFeed(fs, CLASSES, speed=0)
    events: list[dict] = []

    def on_event(ev):
        ev = live_adapter.beat_event(ev, fs, CLASSES) if ev["type"] == "beat" else ev
        events.append(ev)
        feed.push_event(ev)

    def hook(chunk, start):
        feed.wait(start, len(chunk))
        feed.push_samples(chunk, start)

    live_adapter.run_record(
        sig[:, :1],
        fs,
        cfg,
        wide_is_v,
        CLASSES,
        OmegaConf.structured(AlarmConfig),
        0.1,
        4.0,
        hook,
        on_event,
    )
    assert feed.n == len(sig)
    beats = [e for e in events if e["type"] == "beat"]
    assert {"type", "t", "sample", "class", "p"} == set(beats[0])
    assert beats[0]["t"] == round(beats[0]["sample"] / fs, 3)
    assert feed.n_beats == len(beats) and sum(feed.counts.values()) == len(beats)
    # each mark sits on the signal at its R peak (the y the page draws)
    for s, _, _, y in list(feed.beats)[-5:]:
        assert y == np.float32(sig[s, 0])


def test_records_in_any_format_reach_the_page(tmp_path, synth_dir):
    import edfio

    sig, _, _ = synth_ecg(20)
    sig = sig[: len(sig) // 360 * 360]  # whole EDF data records of 1 s
    name, x, fs = live_adapter.read_signal(synth_dir, "s1", ["MLII"])  # a name under root
    assert name == "s1" and fs == 360.0 and x.shape[1] == 1
    same = live_adapter.read_signal("/nowhere", str(synth_dir / "s1"), ["MLII"])  # a path
    assert np.array_equal(same[1], x)
    edfio.Edf([edfio.EdfSignal(sig[:, 0], 360, label="ECG1", physical_dimension="mV")]).write(
        tmp_path / "r.edf"
    )
    name, x, fs = live_adapter.read_signal(None, str(tmp_path / "r.edf"), ["MLII"], lead="ECG1")
    assert name == "r.edf" and fs == 360.0 and np.allclose(x[:, 0], sig[:, 0], atol=1e-3)
    with pytest.raises(EcgError, match="fs"):
        live_adapter.read_signal(None, str(tmp_path / "r.edf"), ["MLII"], lead="ECG1", fs=250)


# ----------------------------------------------------------------------------- the feed
def test_feed_ring_keeps_the_newest_samples():
    feed = LiveFeed(100.0, CLASSES, keep_s=0.5)  # 50 samples
    x = np.arange(120, dtype=np.float32)
    feed.push_samples(x[:70], 0)
    feed.push_samples(x[70:], 70)
    t, y, cur = feed.samples_since(0)
    assert cur == 120 and np.array_equal(y, x[70:]) and np.allclose(t, np.arange(70, 120) / 100)
    t, y, cur = feed.samples_since(110)
    assert np.array_equal(y, x[110:]) and cur == 120
    feed.push_event({"type": "beat", "sample": 100, "class": "V", "p": 0.9})
    feed.push_event({"type": "beat", "sample": 10, "class": "N", "p": 0.9})  # no longer kept
    new, c = feed.beats_since(0)
    assert c == 2 and new[0] == (100, "V", 0.9, 100.0) and np.isnan(new[1][3])
    assert feed.beats_since(1)[0] == [new[1]] and feed.counts["V"] == 1


def test_pause_holds_the_replay_and_next_alarm_stops_at_the_next_alarm():
    feed = LiveFeed(100.0, CLASSES, speed=0)
    feed.wait(0, 10_000)  # as fast as possible: never held
    feed.set_paused(True)
    done = threading.Event()

    def producer():
        feed.wait(0, 10)
        done.set()

    th = threading.Thread(target=producer, daemon=True)
    th.start()
    assert not done.wait(0.5)  # paused: held
    feed.set_paused(False)
    assert done.wait(5)
    feed.set_speed(10)
    assert feed.speed == 10 and not feed.paused
    feed.next_alarm()
    assert feed.seeking and np.isinf(feed._allowed())
    feed.push_event({"type": "alarm", "rule": "vt", "severity": "high", "t": 1.0})
    assert feed.paused and not feed.seeking and feed.alarms[-1]["rule"] == "vt"
    live = LiveFeed(100.0, CLASSES, paced=False)
    live.set_paused(True)
    live.wait(0, 10**6)  # a live source is never held: pausing freezes the page only
    with pytest.raises(EcgError, match="speed: must be >= 0"):
        LiveFeed(100.0, CLASSES, speed=-1)


# ----------------------------------------------------------------------------- sources
def test_csv_lines_and_a_growing_file(tmp_path):
    assert parse_csv_lines(["a,b", "1,2", "", "3;4"], [1], "x").tolist() == [[2.0], [4.0]]
    with pytest.raises(EcgError, match=r"columns: \[3\] not in x \(2 columns\)"):
        parse_csv_lines(["1,2"], [3], "x")
    with pytest.raises(EcgError, match="x: NaN or inf"):
        parse_csv_lines(["nan,1"], [0], "x")
    path = tmp_path / "grow.csv"
    values = np.round(np.sin(np.arange(900) / 7), 4)
    text = "ecg,other\n" + "".join(f"{v},{-v}\n" for v in values)
    path.write_text("")

    def writer():  # bursts cut anywhere, even inside a line
        cuts = [0, 17, 400, 401, 2000, 5111, len(text)]
        with open(path, "a") as fh:
            for a, b in itertools.pairwise(cuts):
                fh.write(text[a:b])
                fh.flush()
                time.sleep(0.15)

    th = threading.Thread(target=writer)
    th.start()
    with open(path) as fh:
        got = list(follow_csv(fh, [0], str(path), poll_s=0.02, idle_timeout_s=1.0))
    th.join()
    assert len(got) >= 3  # it read while the file grew
    assert np.array_equal(np.concatenate(got)[:, 0], values.astype(np.float32))


def _write_csv(path: Path, sig: np.ndarray) -> str:
    text = "mlii,v1\n" + "".join(f"{a:.5f},{b:.5f}\n" for a, b in sig)
    path.write_text(text)
    return text


def test_a_followed_csv_runs_through_the_page(tmp_path):
    from ecgcnn.monitor.live import run_live

    sig, _, _ = synth_ecg(60, v_every=4)
    text = _write_csv(tmp_path / "full.csv", sig)
    path = tmp_path / "grow.csv"
    path.write_text("")

    def writer():
        with open(path, "a") as fh:
            for a in range(0, len(text), 20_000):
                fh.write(text[a : a + 20_000])
                fh.flush()
                time.sleep(0.1)

    cfg = compose(
        "live",
        [
            f"record={path}",
            "follow=true",
            "fs=360",
            "idle_timeout_s=1",
            "linger_s=0",
            f"port={free_port()}",
        ],
    )
    th = threading.Thread(target=writer)
    th.start()
    urls = []
    feed = run_live(
        cfg,
        tmp_path / "run",
        wide_is_v,
        OmegaConf.structured(DataConfig),
        CLASSES,
        on_ready=lambda url, feed: urls.append(url),
    )
    th.join()
    assert urls == [f"http://127.0.0.1:{cfg.port}/"] and not feed.paced and feed.done
    got = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    ref: list[dict] = []
    x = parse_csv_lines(text.splitlines(), [0], "x")
    replay(
        x,
        360.0,
        BeatStream(OmegaConf.structured(DataConfig), 360.0, 1),
        wide_is_v,
        1.0,
        False,
        AlarmEngine(OmegaConf.structured(AlarmConfig), 360.0, CLASSES),
        ref.append,
    )
    beats = [(e["sample"], CLASSES[e["k"]]) for e in ref if e["type"] == "beat"]
    assert [(e["sample"], e["class"]) for e in got if e["type"] == "beat"] == beats
    assert [e["rule"] for e in got if e["type"] == "alarm"] == [
        e["rule"] for e in ref if e["type"] == "alarm"
    ]
    assert feed.n == len(sig) and feed.n_beats == len(beats)


# ----------------------------------------------------------------------------- bad input
def _ckpt(path: Path) -> Path:
    """A random-weight checkpoint with the default data settings (enough to run the page)."""
    from ecgcnn.models import build_model
    from ecgcnn.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    m = build_model(compose("train").model, 2, 128, len(RR_FEATURES), len(CLASSES))
    save_checkpoint(
        {
            "model": m.state_dict(),
            "model_args": m.model_args,
            "classes": list(CLASSES),
            "data": OmegaConf.to_container(OmegaConf.structured(DataConfig)),
        },
        path,
    )
    return path


def _cli(args, tmp_path, **kw):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "ecgcnn.apps.live", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
        **kw,
    )


def test_bad_input_is_one_line_exit_2(tmp_path, synth_dir):
    ck = _ckpt(tmp_path / "m.pt")
    r = _cli([f"checkpoint={ck}", "record=nope", f"data.root={synth_dir}"], tmp_path)
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and re.match(r"error: .*nope\.hea: record not found", err[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli(
            [f"checkpoint={ck}", "record=s1", f"data.root={synth_dir}", f"port={port}"], tmp_path
        )
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith(f"error: port: {port} on 127.0.0.1 cannot be used")
    cfg = compose("live", [f"checkpoint={ck}", "record=x.csv", f"port={free_port()}"])
    from ecgcnn.apps.live import live

    with pytest.raises(EcgError, match="fs: required with record=x.csv"):
        live(cfg, tmp_path / "o")
    with pytest.raises(EcgError, match="follow: needs a CSV file"):
        live(OmegaConf.merge(cfg, {"record": "s1", "follow": True}), tmp_path / "o")
    with pytest.raises(EcgError, match="fs: s1 is at 360 Hz but the model expects 250 Hz"):
        from ecgcnn.monitor.live import run_live

        dcfg = OmegaConf.merge(OmegaConf.structured(DataConfig), {"fs": 250.0})
        run_live(
            OmegaConf.merge(
                cfg, {"record": "s1", "data": {"root": str(synth_dir)}, "port": free_port()}
            ),
            tmp_path / "o",
            wide_is_v,
            dcfg,
            CLASSES,
        )


def test_stdin_gives_the_monitors_events(tmp_path):
    """``record=-``: CSV lines on standard input, the same beats and alarms as ecgcnn-monitor
    writes for the same file."""
    ck = _ckpt(tmp_path / "m.pt")
    sig, _, _ = synth_ecg(50, v_every=3)
    _write_csv(tmp_path / "ecg.csv", sig)
    with open(tmp_path / "ecg.csv") as fh:
        r = _cli(
            [f"checkpoint={ck}", "record=-", "fs=360", "linger_s=0", f"port={free_port()}"],
            tmp_path,
            stdin=fh,
        )
    assert r.returncode == 0, r.stderr
    mon = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgcnn.apps.monitor",
            f"checkpoint={ck}",
            f"input={tmp_path / 'ecg.csv'}",
            "fs=360",
            "plot.enabled=false",
            f"hydra.run.dir={tmp_path / 'mon'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert mon.returncode == 0, mon.stderr

    def events(d):
        ev = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        return (
            [(e["sample"], e["class"], e["p"]) for e in ev if e["type"] == "beat"],
            [(e["rule"], e["t"]) for e in ev if e["type"] == "alarm"],
        )

    live_beats, live_alarms = events(tmp_path / "run")
    mon_beats, mon_alarms = events(tmp_path / "mon")
    assert len(live_beats) >= 45 and live_beats == mon_beats and live_alarms == mon_alarms


def test_other_hosts_are_warned_about(caplog):
    stop = threading.Event()
    stop.set()
    feed = LiveFeed(360.0, CLASSES)
    with caplog.at_level(logging.WARNING, logger="ecgcnn.monitor.live"):
        serve(feed, lambda: None, "0.0.0.0", free_port(), 10.0, 50, stop=stop)
    assert any("open to other hosts" in r.getMessage() for r in caplog.records)


def test_live_config_lists_only_changes():
    cfg = compose("live", ["record=208", "speed=10"])
    assert cfg.host == "127.0.0.1" and cfg.port == 8765 and cfg.checkpoint is None
    assert cfg.speed == 10 and cfg.window_s == 10 and cfg.alarms.vt.severity == "high"
    raw = OmegaConf.load(REPO / "src" / "ecgcnn" / "configs" / "live.yaml")
    assert set(raw) == {"defaults", "hydra"}
    with pytest.raises(Exception, match="port"):
        compose("live", ["port=many"])


# ----------------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def model_119(tmp_path_factory):
    mitdb = os.environ.get("ECGCNN_DATA_DIR")
    if not mitdb or not Path(mitdb, "119.hea").is_file():
        pytest.skip("ECGCNN_DATA_DIR does not point at the MIT-BIH records")
    from ecgcnn.apps.finetune import finetune_patient

    tmp = tmp_path_factory.mktemp("live119")
    torch.set_num_threads(1)
    finetune_patient(
        compose(
            "finetune",
            [
                "record=119",
                "trainer.max_epochs=3",
                "report=false",
                "views=[none]",
                f"data.root={mitdb}",
                f"data.cache_dir={tmp / 'cache'}",
            ],
        ),
        tmp / "m",
    )
    return tmp / "m" / "model.pt", mitdb


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.mark.slow
@pytest.mark.skipif(
    not HAVE_CHROMIUM and not os.environ.get("CI"),
    reason="chromium / chromedriver not installed (CI installs them)",
)
def test_page_in_chromium_shows_the_monitors_beats_and_alarms(model_119, tmp_path):
    from ecgcnn.monitor.live_probe import chromium, click, page_state, wait_for

    ck, mitdb = model_119
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ecgcnn.apps.live",
            f"checkpoint={ck}",
            "record=119",
            f"data.root={mitdb}",
            "speed=10",
            f"port={port}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    drv = None
    try:
        line = ""
        while "live page:" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "ecgcnn-live ended before serving"
        url = line.split("live page:")[1].strip()
        assert url == f"http://127.0.0.1:{port}/"
        drv = chromium()
        drv.get(url)
        s = wait_for(
            drv,
            lambda s: len(s["alarm_rule"]) >= 2 and len(s["beat_sample"]) >= 30,
            90,
            "two alarms and 30 beats on the page",
        )
        ev = _events(tmp_path / "run" / "events.jsonl")
        # every beat mark on the page is the monitor's beat with its class, none is missing
        page = list(zip(s["beat_sample"], s["beat_cls"]))
        lo, hi = min(s["beat_sample"]), max(s["beat_sample"])
        logged = [
            (e["sample"], e["class"]) for e in ev if e["type"] == "beat" and lo <= e["sample"] <= hi
        ]
        assert page == logged and {"N", "V"} <= set(s["beat_cls"])
        logged_alarms = [(e["rule"], e["severity"], e["t"]) for e in ev if e["type"] == "alarm"]
        shown = list(zip(s["alarm_rule"], s["alarm_severity"], s["alarm_t"]))
        assert set(shown) <= set(logged_alarms) and logged_alarms[0] in shown
        # pause (a click on the button): the strip stops, and so does the replay
        click(drv, "pause")
        wait_for(drv, lambda s: s["paused"] and "paused" in s["status"], 10, "paused")
        time.sleep(1.0)
        a = page_state(drv)
        n_lines = len(_events(tmp_path / "run" / "events.jsonl"))
        time.sleep(2.0)
        b = page_state(drv)
        assert a["t_shown"] == b["t_shown"] and b["beat_sample"] == a["beat_sample"]
        ev = _events(tmp_path / "run" / "events.jsonl")
        assert len(ev) == n_lines
        counts = {c: sum(e.get("class") == c for e in ev) for c in CLASSES}
        shown_counts = dict(re.findall(r">([NSVFQ])</td><td[^>]*>(\d+)<", b["counts"]))
        assert {c: int(v) for c, v in shown_counts.items()} == counts
        assert re.search(r">\d+<span", b["heart_rate"])
        out = REPO / "outputs" / "test_artifacts"
        out.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(out / "live_page.png"))
        # next alarm: runs ahead, stops with the new alarm on the strip
        n_alarms = len(b["alarm_rule"])
        click(drv, "next_alarm")
        c = wait_for(
            drv, lambda s: s["paused"] and len(s["alarm_rule"]) > n_alarms, 60, "the next alarm"
        )
        assert c["t_shown"] > b["t_shown"] and c["t_shown"] - 10 <= c["alarm_t"][0] <= c["t_shown"]
        drv.save_screenshot(str(out / "live_page_next_alarm.png"))
        # speed buttons: 1x, then go on (the status names the speed the replay runs at)
        click(drv, "speed", 0)
        click(drv, "pause")
        d = wait_for(
            drv,
            lambda s: not s["paused"] and s["speed"] == 0 and "1x" in s["status"],
            10,
            "1x, running",
        )
        wait_for(drv, lambda s: s["t_shown"] > d["t_shown"], 10, "the strip moving again")
    finally:
        if drv is not None:
            drv.quit()
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
@pytest.mark.skipif(
    not HAVE_CHROMIUM and not os.environ.get("CI"),
    reason="chromium / chromedriver not installed (CI installs them)",
)
def test_bench_live_quick(model_119):
    ck, _ = model_119
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_live.py"),
            "--quick",
            "--checkpoint",
            str(ck),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["speed"] == 10 and {"lag_s_p95", "cpu_percent"} <= set(res)
    assert res["shown_rate"] > 0 and np.isfinite(res["lag_s_p95"])
