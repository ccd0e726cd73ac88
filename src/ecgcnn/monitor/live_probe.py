"""Read the live page from a real headless Chromium (tests, ``scripts/bench_live.py``).

Needs ``selenium`` (the ``dev`` extra) and Debian's ``chromium`` + ``chromium-driver``. The
page's facts are read from BokehJS's own document in the browser (``Bokeh.documents[0]``:
the data the browser holds and draws), never from canvas pixels; buttons are clicked as a
user would (a WebDriver click on the button element inside Bokeh's shadow DOM).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable

from ecgcnn.errors import EcgError

#: Without the background-networking flags Chromium keeps dialing out, which a closed network
#: refuses; a fresh profile keeps runs independent.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

_STATE_JS = """
const doc = (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0] : null;
if (!doc) return null;
const m = (name) => doc.get_model_by_name(name);
const sig = m('signal'), beats = m('beats'), alarms = m('alarms');
if (!sig || !beats || !alarms) return null;
const t = sig.data.t, bd = beats.data, ad = alarms.data;
return {
  t_shown: t.length ? t[t.length - 1] : null, n_shown: t.length,
  beat_sample: Array.from(bd.sample).map(Number), beat_cls: Array.from(bd.cls),
  alarm_rule: Array.from(ad.rule), alarm_severity: Array.from(ad.severity),
  alarm_t: Array.from(ad.t).map(Number),
  counts: m('counts').text, heart_rate: m('heart_rate').text, status: m('status').text,
  paused: m('pause').active, speed: m('speed').active,
};
"""


_SHOWN_JS = """
const doc = (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0] : null;
const sig = doc ? doc.get_model_by_name('signal') : null;
return (sig && sig.data.t.length) ? sig.data.t[sig.data.t.length - 1] : null;
"""


def shown_time(driver) -> float | None:
    """The newest sample time the page holds (cheap: one number back)."""
    return driver.execute_script(_SHOWN_JS)


def chromium(width: int = 1400, height: int = 900, binary: str | None = None):
    """A headless Chromium WebDriver (fresh profile, closed-network flags)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = binary or shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not browser or not driver_bin:
        raise EcgError(
            "chromium: chromium and chromedriver not found (Debian: apt-get install "
            "chromium chromium-driver)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ecgcnn-chromium-')}")
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def page_state(driver) -> dict | None:
    """What the page holds now: newest sample time shown (``t_shown``), the beat marks
    (``beat_sample``, ``beat_cls``), the alarm list, counts / heart-rate / status texts and the
    controls' state; None until the page's document has connected."""
    return driver.execute_script(_STATE_JS)


def wait_for(
    driver, cond: Callable[[dict], bool], timeout_s: float = 30.0, what: str = "the page"
) -> dict:
    """Poll :func:`page_state` until ``cond(state)``; raise ``TimeoutError`` naming ``what``."""
    end = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < end:
        state = page_state(driver)
        if state is not None and cond(state):
            return state
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not reached within {timeout_s} s (last state: {state})")


def click(driver, name: str, index: int | None = None) -> None:
    """Click the button of the widget named ``name`` (``index``: which button of a group)."""
    el = driver.execute_script(
        "const v = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name(arguments[0]));"
        "return arguments[1] === null ? v.button_el : v.shadow_el.querySelectorAll('button')"
        "[arguments[1]];",
        name,
        index,
    )
    el.click()
