"""Timeline figure: one push channel on a time axis (client bytes, server bytes, keepalives, intermediary).

A check attaches ``case.attach("timeline", data)``; this module draws ``result["evidence"]["timeline"]`` as
inline SVG. ``TimelineBuilder`` (below) makes the data; any push check (IMAP IDLE/NOTIFY, JMAP EventSource,
WebSocket) can use it, or write the dictionary by hand.

Format (version 1; JSON-serialisable; times in seconds on the case clock, i.e. the transcript's ``t``)::

    {
      "version": 1,
      "title": "IMAP IDLE through nat-idle:timeout=3,mode=rst",   # short caption (server text is escaped)
      "start": 0.0, "end": 9.4,          # the window drawn (seconds on the case clock)
      "events": [                        # points, in any order
        {"t": 1.20, "kind": "client",       "bytes": 12, "label": "L005 IDLE"},
        {"t": 1.21, "kind": "server",       "bytes": 11, "label": "+ idling"},
        {"t": 2.21, "kind": "keepalive",    "bytes": 15, "label": "* OK Still here"},
        {"t": 5.00, "kind": "change",       "label": "second connection APPENDed a message"},
        {"t": 5.03, "kind": "notification", "bytes": 12, "label": "* 1 EXISTS"},
        {"t": 4.20, "kind": "intermediary", "label": "nat-idle: 3.0 s without traffic, RST to both sides"},
        {"t": 8.00, "kind": "noticed",      "label": "client noticed the silence (no keepalive for 3.0 s)"},
        {"t": 9.00, "kind": "closed",       "label": "connection reset"}
      ],
      "spans": [                         # intervals
        {"start": 1.21, "end": 9.0, "kind": "idle",      "label": "IDLE in progress"},
        {"start": 2.21, "end": 4.20, "kind": "gap",      "label": "longest silence 2.0 s"},
        {"start": 4.20, "end": 9.40, "kind": "blackhole", "label": "black hole: nothing forwarded"}
      ],
      "thresholds": [                    # optional: durations drawn as a ruler starting at "from"
        {"name": "idle timeout", "seconds": 3.0},           # no "from": the start of the first "gap" span
        {"name": "detect within", "seconds": 5.0, "from": 4.2}
      ],
      "verdict": "fail",                 # optional: colours the caption
      "dropped": {"events": 9500}        # optional: what the builder left out past its bounds
    }

Event kinds and their rows: ``client`` (bytes client -> server, row "client"), ``server`` and ``keepalive``
and ``notification`` (row "server"), ``change`` (row "change", the harness's action on another
connection), ``intermediary`` (row "intermediary": drops, timeouts, cuts), ``noticed`` and ``closed``
(row "client"). Span kinds: ``idle``, ``gap``, ``blackhole``, ``waiting`` (change made, no notification yet).
Unknown kinds are drawn neutrally, so the format can grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import escape

VERSION = 1
ROWS = ("intermediary", "change", "client", "server")
ROW_OF = {"client": "client", "noticed": "client", "closed": "client", "server": "server", "keepalive": "server",
          "notification": "server", "change": "change", "intermediary": "intermediary"}
COLOURS = {"client": "#3465a4", "server": "#4e9a06", "keepalive": "#73d216", "notification": "#c17d11",
           "change": "#75507b", "intermediary": "#cc0000", "noticed": "#f57900", "closed": "#2e3436"}
LABELLED = ("intermediary", "change", "notification", "noticed", "closed")
SPAN_COLOURS = {"idle": "#eef5e6", "gap": "#fce94f", "blackhole": "#2e3436", "waiting": "#e9b96e"}
MAX_EVENTS, MAX_SPANS = 500, 200  # a peer that floods (lines, deliveries) must not flood the report


@dataclass
class TimelineBuilder:
    """Collects events and spans on the case clock and returns the dictionary above."""

    title: str
    events: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # events/spans past MAX_EVENTS/MAX_SPANS, counted

    def event(self, t: float, kind: str, label: str = "", nbytes: int | None = None) -> None:
        if len(self.events) >= MAX_EVENTS:
            self.dropped["events"] = self.dropped.get("events", 0) + 1
            return
        e: dict[str, Any] = {"t": round(float(t), 4), "kind": kind, "label": str(label)[:200]}
        if nbytes is not None:
            e["bytes"] = int(nbytes)
        self.events.append(e)

    def span(self, start: float, end: float, kind: str, label: str = "") -> None:
        if len(self.spans) >= MAX_SPANS:
            self.dropped["spans"] = self.dropped.get("spans", 0) + 1
            return
        self.spans.append({"start": round(float(start), 4), "end": round(float(end), 4), "kind": kind,
                           "label": str(label)[:200]})

    def threshold(self, name: str, seconds: float, start: float | None = None) -> None:
        th: dict[str, Any] = {"name": name, "seconds": float(seconds)}
        if start is not None:
            th["from"] = round(float(start), 4)
        self.thresholds.append(th)

    def as_dict(self, verdict: str | None = None) -> dict[str, Any]:
        times = [e["t"] for e in self.events] + [s["start"] for s in self.spans] + [s["end"] for s in self.spans]
        start = self.start if self.start is not None else (min(times) if times else 0.0)
        end = self.end if self.end is not None else (max(times) if times else 1.0)
        out: dict[str, Any] = {"version": VERSION, "title": self.title, "start": round(start, 4),
                               "end": round(max(end, start + 0.001), 4), "events": sorted(self.events, key=lambda e: e["t"]),
                               "spans": self.spans, "thresholds": self.thresholds}
        if verdict:
            out["verdict"] = verdict
        if self.dropped:
            out["dropped"] = dict(self.dropped)
        return out


# -- drawing ---------------------------------------------------------------------------------------
WIDTH, LEFT, RIGHT, ROW_H, TOP = 900, 96, 16, 26, 22


def _num(v: Any, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if f == f and abs(f) < 1e9 else default  # NaN and absurd values are ignored


def render(result: dict[str, Any]) -> str | None:
    data = (result.get("evidence") or {}).get("timeline")
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return None
    return render_timeline(data)


@dataclass(frozen=True)
class Frame:
    """The geometry of one picture: the time window and where rows and the axis sit."""

    start: float
    end: float

    @property
    def plot_w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def axis_y(self) -> float:
        return TOP + len(ROWS) * ROW_H + 4

    def row_y(self, name: str) -> float:
        return TOP + ROWS.index(name) * ROW_H

    def x(self, t: Any) -> float:
        clipped = min(max(_num(t, self.start), self.start), self.end)
        return LEFT + (clipped - self.start) / (self.end - self.start) * self.plot_w


def render_timeline(data: dict[str, Any]) -> str:
    start = _num(data.get("start"))
    end = _num(data.get("end"), start + 1)
    frame = Frame(start, end if end > start else start + 1)
    height = frame.axis_y + 44
    title = escape(str(data.get("title", "timeline")))
    parts = [_caption(title, str(data.get("verdict", ""))), *_rows(frame), *_spans(frame, data),
             *_thresholds(frame, data), *_events(frame, data), *_axis(frame), *_legend(frame)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{title}" font-family="sans-serif">'
            + "".join(parts) + "</svg>")


def _caption(title: str, verdict: str) -> str:
    colour = {"fail": "#cc0000", "pass": "#4e9a06"}.get(verdict, "#2e3436")
    return (f'<text x="4" y="14" font-size="12" font-weight="bold" fill="{colour}">{title}'
            f'{" — " + escape(verdict) if verdict else ""}</text>')


def _rows(frame: Frame) -> list[str]:
    return [f'<text x="4" y="{frame.row_y(name) + 16}" font-size="11" fill="#555">{name}</text>'
            f'<line x1="{LEFT}" y1="{frame.row_y(name) + ROW_H / 2}" x2="{WIDTH - RIGHT}" '
            f'y2="{frame.row_y(name) + ROW_H / 2}" stroke="#ddd" stroke-width="1"/>' for name in ROWS]


def _spans(frame: Frame, data: dict[str, Any]) -> list[str]:
    """Intervals, drawn first (background): IDLE over every row, a black hole on the intermediary row..."""
    out = []
    for s in data.get("spans") or []:
        if not isinstance(s, dict):
            continue
        kind = str(s.get("kind", ""))
        x1, x2 = frame.x(s.get("start")), frame.x(s.get("end"))
        fill = SPAN_COLOURS.get(kind, "#d3d7cf")
        label = escape(str(s.get("label", kind)))
        if kind == "idle":
            y, h, op = TOP, len(ROWS) * ROW_H, "0.6"
        elif kind == "blackhole":
            y, h, op = frame.row_y("intermediary") + 4, ROW_H - 8, "0.85"
        elif kind == "gap":
            y, h, op = frame.row_y("server") + 3, ROW_H - 6, "0.7"
        else:
            y, h, op = frame.row_y("change") + 6, ROW_H - 12, "0.7"
        out.append(f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1):.1f}" height="{h}" fill="{fill}" '
                   f'opacity="{op}"><title>{escape(kind)}: {label} ({_num(s.get("start")):.3f}–'
                   f'{_num(s.get("end")):.3f} s)</title></rect>')
    return out


def _thresholds(frame: Frame, data: dict[str, Any]) -> list[str]:
    """Rulers of durations, from their "from" or the start of the first gap (or the window start)."""
    gap = next((s for s in data.get("spans") or [] if isinstance(s, dict) and s.get("kind") == "gap"), None)
    origin = _num(gap.get("start")) if gap else frame.start
    out = []
    for i, th in enumerate(data.get("thresholds") or []):
        if not isinstance(th, dict):
            continue
        secs = _num(th.get("seconds"))
        begin = _num(th.get("from"), origin) if "from" in th else origin
        x1, x2 = frame.x(begin), frame.x(begin + secs)
        y = frame.row_y("server") + ROW_H - 2 + i * 4
        name = escape(str(th.get("name", "threshold")))
        out.append(f'<line x1="{x1:.1f}" y1="{y}" x2="{x2:.1f}" y2="{y}" stroke="#cc0000" stroke-width="2" '
                   f'stroke-dasharray="4 2"><title>{name}: {secs:g} s</title></line>'
                   f'<line x1="{x2:.1f}" y1="{y - 5}" x2="{x2:.1f}" y2="{y + 3}" stroke="#cc0000" stroke-width="2"/>'
                   f'<text x="{x2 - 3:.1f}" y="{y - 3}" font-size="9" text-anchor="end" fill="#cc0000">'
                   f'{name} {secs:g} s</text>')
    return out


def _marker(kind: str, cx: float, cy: float, nbytes: Any, tip: str) -> str:
    """One event's shape: a bar for bytes (taller for more), a cross for cuts, a diamond for changes, a dot."""
    fill = COLOURS.get(kind, "#888a85")
    if kind in ("client", "server", "keepalive"):
        h = 6 + min(12.0, 2.0 * len(str(int(_num(nbytes))))) if nbytes is not None else 8
        return (f'<rect x="{cx - 1.5:.1f}" y="{cy - h / 2:.1f}" width="3" height="{h:.1f}" fill="{fill}">'
                f'<title>{tip}</title></rect>')
    if kind in ("intermediary", "closed"):
        return (f'<path d="M{cx - 6:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy + 6:.1f} M{cx + 6:.1f},{cy - 6:.1f} '
                f'L{cx - 6:.1f},{cy + 6:.1f}" stroke="{fill}" stroke-width="3"><title>{tip}</title></path>')
    if kind == "change":
        return (f'<path d="M{cx:.1f},{cy - 7:.1f} L{cx + 7:.1f},{cy:.1f} L{cx:.1f},{cy + 7:.1f} '
                f'L{cx - 7:.1f},{cy:.1f} Z" fill="{fill}"><title>{tip}</title></path>')
    return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{fill}" stroke="#fff" stroke-width="1">'
            f'<title>{tip}</title></circle>')


def _events(frame: Frame, data: dict[str, Any]) -> list[str]:
    """Points on their rows; labels where they fit (crowded markers keep their tooltips only)."""
    out: list[str] = []
    occupied: dict[str, list[tuple[float, float]]] = {}
    for e in data.get("events") or []:
        if not isinstance(e, dict):
            continue
        kind = str(e.get("kind", ""))
        row = ROW_OF.get(kind, "change")
        cx, cy = frame.x(e.get("t")), frame.row_y(row) + ROW_H / 2
        nbytes = e.get("bytes")
        tip = f'{kind} t={_num(e.get("t")):.3f} s' + (f', {int(_num(nbytes))} octets' if nbytes is not None else "")
        tip += f': {e.get("label", "")}' if e.get("label") else ""
        out.append(_marker(kind, cx, cy, nbytes, str(escape(tip))))
        if kind in LABELLED and e.get("label"):
            label = _label(frame, kind, cx, cy, str(e.get("label")), _num(e.get("t")), occupied.setdefault(row, []))
            if label:
                out.append(label)
    return out


def _label(frame: Frame, kind: str, cx: float, cy: float, text: str, t: float,
           taken: list[tuple[float, float]]) -> str | None:
    text = (text[:57] + "...") if len(text) > 60 else text
    text = f"{text} ({t:.2f} s)"
    # text goes left of the marker near the right edge, and left of intermediary actions (a black hole span
    # is drawn to their right)
    right = cx > LEFT + frame.plot_w * (0.3 if kind == "intermediary" else 0.55)
    width = 5.5 * len(text)
    span = (cx - 10 - width, cx - 10) if right else (cx + 10, cx + 10 + width)
    if any(a < span[1] and span[0] < b for a, b in taken):
        return None  # crowded: the marker keeps its tooltip
    taken.append(span)
    return (f'<text x="{cx - 10 if right else cx + 10:.1f}" y="{cy + 4:.1f}" font-size="10" '
            f'text-anchor="{"end" if right else "start"}" fill="{COLOURS.get(kind, "#888a85")}">{escape(text)}</text>')


def _axis(frame: Frame) -> list[str]:
    axis_y = frame.axis_y
    out = [f'<line x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" y2="{axis_y}" stroke="#555"/>']
    step = _tick_step(frame.end - frame.start)
    t = (int(frame.start / step) + (0 if frame.start % step == 0 else 1)) * step
    n = 0
    while t <= frame.end + 1e-9 and n < 60:
        out.append(f'<line x1="{frame.x(t):.1f}" y1="{axis_y}" x2="{frame.x(t):.1f}" y2="{axis_y + 4}" stroke="#555"/>'
                   f'<text x="{frame.x(t):.1f}" y="{axis_y + 15}" font-size="10" text-anchor="middle" fill="#555">'
                   f'{t:g} s</text>')
        t += step
        n += 1
    return out


def _legend(frame: Frame) -> list[str]:
    y = frame.axis_y + 24
    legend = [("client", "client bytes"), ("server", "server bytes"), ("keepalive", "keepalive"),
              ("change", "change made"), ("notification", "notification"), ("intermediary", "intermediary action"),
              ("noticed", "noticed")]
    out = []
    lx = LEFT
    for kind, text in legend:
        out.append(f'<rect x="{lx}" y="{y}" width="9" height="9" fill="{COLOURS[kind]}"/>'
                   f'<text x="{lx + 12}" y="{y + 8}" font-size="10" fill="#333">{text}</text>')
        lx += 12 + 5.9 * len(text) + 10
    out.append(f'<rect x="{lx}" y="{y}" width="9" height="9" fill="{SPAN_COLOURS["gap"]}"/>'
               f'<text x="{lx + 12}" y="{y + 8}" font-size="10" fill="#333">longest silence</text>')
    return out


def _tick_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            return float(step)
    return 7200.0
