"""The Bokeh document of the live page: strip, beat marks, heart rate, alarms, counts, controls.

One document per browser session. A periodic callback (``refresh_ms``) pulls what is new from
the :class:`~ecgcnn.monitor.live.LiveFeed` and sends it with ``ColumnDataSource.stream`` in
batches (a 100 ms tick at 10x carries 360 samples of a 360 Hz record), with ``rollover`` so
the browser holds one strip (``window_s``) of signal; a page that fell more than a strip behind
(as fast as possible, or after a pause of a live source) replaces the strip instead.

Named models, for tests and scripts reading the page through ``Bokeh.documents[0]``:
``signal`` (t, mv: the strip), ``beats`` (t, y, sample, cls, p), ``alarms`` (the alarm list,
newest first), ``counts``/``heart_rate``/``status`` (Divs), ``pause`` (Toggle), ``speed``
(RadioButtonGroup), ``next_alarm`` (Button).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

#: Same colours as ``monitor.png`` (matplotlib's tab10 names there).
COLOURS = {"N": "#2ca02c", "S": "#ff7f0e", "V": "#d62728", "F": "#9467bd", "Q": "#7f7f7f"}
SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#1f77b4"}
SPEEDS = (1.0, 10.0, 0.0)  # the speed buttons: 1x, 10x, as fast as possible
MAX_BEATS, MAX_ALARMS = 64, 500


def _clock(t: float) -> str:
    m, s = divmod(max(t, 0.0), 60)
    return f"{int(m) // 60:02d}:{int(m) % 60:02d}:{s:04.1f}"


def _alarm_columns(alarms: list[dict]) -> tuple[dict, dict]:
    """Table (newest first) and strip spans of the alarms."""
    rows = alarms[::-1][:MAX_ALARMS]
    table = {
        "time": [_clock(a["t"]) for a in rows],
        "t": [a["t"] for a in rows],
        "rule": [a["rule"] for a in rows],
        "severity": [a["severity"] for a in rows],
        "raised": [_clock(a.get("t_raised", a["t"])) for a in rows],
    }
    spans = alarms[-50:]
    strip = {
        "left": [a.get("t_start", a["t"]) for a in spans],
        "right": [max(a["t"], a.get("t_start", a["t"]) + 0.05) for a in spans],
        "t": [a["t"] for a in spans],
        "rule": [a["rule"] for a in spans],
        "colour": [SEVERITY_COLOURS.get(a["severity"], "gold") for a in spans],
    }
    return table, strip


def _counts_html(counts: dict, hr: float | None) -> tuple[str, str]:
    cells = "".join(
        f'<td style="padding:2px 10px;color:{COLOURS.get(c, "#000")};'
        f'font-weight:bold">{c}</td><td style="padding:2px 10px">{n}</td>'
        for c, n in counts.items()
    )
    rate = "--" if hr is None else f"{hr:.0f}"
    table = (
        "<table><tr><th colspan=10 style='text-align:left'>beats by class</th></tr>"
        f"<tr>{cells}</tr></table>"
    )
    rate = (
        f"<div style='font-size:30px;font-weight:bold'>{rate}"
        "<span style='font-size:14px'> bpm</span></div>"
    )
    return table, rate


def make_document(doc, feed, window_s: float, refresh_ms: int) -> None:
    """Build one session's page on ``doc`` and start its periodic callback."""
    from bokeh.layouts import column, row
    from bokeh.models import (
        Button,
        CDSView,
        ColumnDataSource,
        DataRange1d,
        DataTable,
        Div,
        GroupFilter,
        HTMLTemplateFormatter,
        LabelSet,
        RadioButtonGroup,
        TableColumn,
        Toggle,
    )
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    classes = list(feed.classes)
    window_n = max(1, round(window_s * feed.fs))
    sig = ColumnDataSource({"t": np.zeros(0), "mv": np.zeros(0, np.float32)}, name="signal")
    beats = ColumnDataSource({"t": [], "y": [], "sample": [], "cls": [], "p": []}, name="beats")
    table_src = ColumnDataSource(_alarm_columns([])[0], name="alarms")
    spans = ColumnDataSource(_alarm_columns([])[1], name="alarm_spans")

    p = figure(
        height=340,
        sizing_mode="stretch_width",
        x_axis_label="time (s)",
        y_axis_label="mV (raw)",
        tools="xpan,xwheel_zoom,reset",
        title="ECG strip: each beat marked with its class once classified (its windows and "
        "filter margin need about 5 s of signal after the R peak)",
    )
    line = p.line("t", "mv", source=sig, color="black", line_width=1)
    # The strip follows the newest sample; marks and alarm spans never widen it.
    p.x_range = DataRange1d(
        renderers=[line], follow="end", follow_interval=window_s, range_padding=0
    )
    p.y_range = DataRange1d(renderers=[line], range_padding=0.3)  # room for the labels
    p.quad(
        left="left",
        right="right",
        bottom=-1e3,
        top=1e3,
        source=spans,
        fill_color="colour",
        fill_alpha=0.15,
        line_alpha=0,
    )
    # at the span's end (where the alarm was decided), which is on the strip longest
    p.add_layout(
        LabelSet(
            x="right",
            y=4,
            y_units="screen",
            x_offset=-3,
            text="rule",
            source=spans,
            text_font_size="11px",
            text_color="colour",
            text_align="right",
        )
    )
    for c in classes:
        p.scatter(
            "t",
            "y",
            source=beats,
            view=CDSView(filter=GroupFilter(column_name="cls", group=c)),
            size=9,
            color=COLOURS.get(c, "black"),
            legend_label=c,
        )
    p.text(
        "t",
        "y",
        text="cls",
        source=beats,
        y_offset=-9,
        text_align="center",
        text_baseline="bottom",
        text_font_size="11px",
        text_font_style="bold",
        text_color=factor_cmap("cls", [COLOURS.get(c, "black") for c in classes], classes),
    )
    p.legend.orientation, p.legend.click_policy = "horizontal", "hide"
    p.add_layout(p.legend[0], "above")  # outside the strip: never over a beat's mark
    p.toolbar.logo = None

    sev = HTMLTemplateFormatter(
        template="<b style=\"color:<%= severity == 'high' ? '#d62728' "
        ": (severity == 'medium' ? '#ff7f0e' : '#1f77b4') %>\">"
        "<%= value %></b>"
    )
    table = DataTable(
        source=table_src,
        name="alarm_table",
        width=420,
        height=230,
        index_position=None,
        sortable=False,
        columns=[
            TableColumn(field="time", title="time", width=90),
            TableColumn(field="rule", title="alarm", width=110, formatter=sev),
            TableColumn(field="severity", title="priority", width=70, formatter=sev),
            TableColumn(field="raised", title="raised at", width=90),
        ],
    )
    counts_html, hr_html = _counts_html(dict.fromkeys(classes, 0), None)
    # Fixed sizes: a Div sized by its text makes every text change lay the whole page out again
    counts = Div(text=counts_html, name="counts", width=420, height=50)
    hr = Div(text=hr_html, name="heart_rate", width=160, height=44)
    status = Div(text="waiting for the stream", name="status", width=300, height=30)
    pause = Toggle(label="Pause", name="pause", button_type="warning", width=90)
    active = SPEEDS.index(feed.speed) if feed.speed in SPEEDS else None
    speed = RadioButtonGroup(
        labels=["1x", "10x", "max"], active=active, name="speed", visible=feed.paced, width=160
    )
    nxt = Button(label="Next alarm", name="next_alarm", visible=feed.paced, width=110)

    pause.on_change("active", lambda a, old, new: new != feed.paused and feed.set_paused(new))
    speed.on_change(
        "active",
        lambda a, old, new: (
            new is not None and SPEEDS[new] != feed.speed and feed.set_speed(SPEEDS[new])
        ),
    )
    nxt.on_click(lambda: feed.next_alarm())

    st = SimpleNamespace(cursor=0, beat_cursor=0, n_alarms=0, counts=None, shown=0.0, n=0)
    texts_every = max(1, round(250 / refresh_ms))  # texts change 4 times a second at most

    def tick() -> None:
        st.n += 1
        snap = feed.snapshot()
        if pause.active != snap["paused"]:
            pause.active = snap["paused"]
        want = SPEEDS.index(snap["speed"]) if snap["speed"] in SPEEDS else None
        if speed.active != want:
            speed.active = want
        if snap["paused"] and not feed.paced:
            pass  # a live source goes on; the strip stays where it was
        else:
            pull()
        state = (
            ("error: " + snap["error"])
            if snap["error"]
            else "end of stream"
            if snap["done"]
            else "paused"
            if snap["paused"]
            else "to next alarm"
            if snap["seeking"]
            else (f"{snap['speed']:g}x" if snap["speed"] else "max")
            if feed.paced
            else "live"
        )
        text = f"<b>t {_clock(st.shown)}</b> &nbsp; {state}"
        if status.text != text and (
            st.n % texts_every == 0 or "t " not in status.text or not state[0].isdigit()
        ):
            status.text = text

    def pull() -> None:
        t, y, cur = feed.samples_since(st.cursor)
        if len(t):
            if round(t[0] * feed.fs) > st.cursor or len(t) >= window_n:  # skipped ahead
                sig.data = {"t": t[-window_n:], "mv": y[-window_n:]}
            else:
                sig.stream({"t": t, "mv": y}, rollover=window_n)
            st.shown = float(t[-1])
        st.cursor = cur
        new, st.beat_cursor = feed.beats_since(st.beat_cursor)
        if new:
            new = new[-MAX_BEATS:]
            s = np.asarray([b[0] for b in new], np.int64)
            beats.stream(
                {
                    "t": s / feed.fs,
                    "y": [b[3] for b in new],
                    "sample": s,
                    "cls": [b[1] for b in new],
                    "p": [b[2] for b in new],
                },
                rollover=MAX_BEATS,
            )
        with feed.lock:
            alarms = list(feed.alarms) if len(feed.alarms) != st.n_alarms else None
            snap_counts = dict(feed.counts)
        if alarms is not None:
            table_src.data, spans.data = _alarm_columns(alarms)
            st.n_alarms = len(alarms)
        if snap_counts != st.counts and st.n % texts_every == 0:
            st.counts = snap_counts
            counts.text, hr.text = _counts_html(snap_counts, feed.heart_rate())

    title = Div(text=f"<h3 style='margin:4px 0'>ecgcnn live: {feed.title}</h3>", name="title")
    controls = row(pause, speed, nxt, status)
    side = column(hr, counts, Div(text="<b>alarms</b> (newest first)"), table)
    doc.add_root(
        column(
            title, controls, row(p, side, sizing_mode="stretch_width"), sizing_mode="stretch_width"
        )
    )
    doc.title = "ecgcnn live"
    doc.add_periodic_callback(tick, int(refresh_ms))
