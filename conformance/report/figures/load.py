"""Load figures (`lemonade load`): the latency distribution of the path and control groups, and the storm.

From a result's ``load`` attachment (one shard, see ``conformance/checks/scale/``):
- latency: the cumulative distribution of notification latency per group (changes made before the storm),
  on a log time axis, with p50/p95/p99 marked and the path-minus-control difference written beside it;
- storm: sessions idling over the run's time (path and control), the moment the intermediary dropped every
  session, and when the last one was back; the octets the reconnects moved are written below it.
``render_run`` draws the joined distribution when a run holds several shards (histograms merged).
Everything drawn is numbers computed here; the only text from the run is escaped.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import escape

COLOURS = {"path": "#c0392b", "control": "#2a7ab9"}
W, H = 470, 210
LEFT, RIGHT, TOP, BOTTOM = 48, 14, 22, 42
TAIL = (0.0, 0.5, 0.9, 0.99, 0.999)  # the latency axis marks; the scale stretches the tail: -log10(1 - f)


def _svg_open(width: int, height: int, label: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" font-size="10" '
            f'font-family="sans-serif">']


def _cdf_points(hist: dict[str, Any]) -> list[tuple[float, float]]:
    """(seconds, cumulative fraction) at each bucket's upper edge."""
    counts = {int(b): int(c) for b, c in (hist.get("counts") or {}).items()}
    n = sum(counts.values())
    if not n:
        return []
    growth, floor = float(hist.get("growth", 1.02)), float(hist.get("floor_s", 1e-5))
    out, seen = [], 0
    for b in sorted(counts):
        seen += counts[b]
        out.append((min(floor * growth ** b, float(hist.get("max_s") or 1e9)), seen / n))
    return out


def latency_svg(groups: dict[str, Any], added: dict[str, Any] | None, title: str) -> str | None:
    curves = {g: _cdf_points(groups[g]["latency"]["before"].get("histogram") or {})
              for g in ("path", "control") if g in groups}
    curves = {g: c for g, c in curves.items() if c}
    if not curves:
        return None
    lo = min(p[0] for c in curves.values() for p in c)
    hi = max(p[0] for c in curves.values() for p in c)
    lo_e, hi_e = math.floor(math.log10(max(lo, 1e-4))), math.ceil(math.log10(max(hi, lo * 1.01, 1e-4)))
    hi_e = max(hi_e, lo_e + 1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(s: float) -> float:
        return LEFT + pw * (math.log10(max(s, 10 ** lo_e)) - lo_e) / (hi_e - lo_e)

    n_max = max(groups[g]["latency"]["before"]["n"] for g in curves)
    top_f = min(TAIL[-1], 1 - 1 / max(n_max, 10))  # nothing beyond what the sample size can show
    span = -math.log10(1 - top_f)

    def y(f: float) -> float:
        return TOP + ph * (1 - min(-math.log10(max(1 - f, 1 - top_f)), span) / span)

    parts = _svg_open(W, H, "notification latency, path and control groups")
    parts.append(f'<text x="{LEFT}" y="12" font-weight="bold">{escape(title)}</text>')
    for e in range(lo_e, hi_e + 1):
        xx = x(10 ** e)
        parts.append(f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{H - BOTTOM}" stroke="#eee"/>'
                     f'<text x="{xx:.1f}" y="{H - BOTTOM + 12}" text-anchor="middle">{_tick(10 ** e)}</text>')
    for f in (m for m in TAIL if m <= top_f + 1e-12):
        parts.append(f'<line x1="{LEFT}" y1="{y(f):.1f}" x2="{W - RIGHT}" y2="{y(f):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 4}" y="{y(f) + 3:.1f}" text-anchor="end">{f * 100:g}%</text>')
    parts.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#888"/>')
    legend_x = LEFT
    for g, pts in curves.items():
        path, prev = [(x(pts[0][0] / 1.02), y(0))], 0.0
        for sec, f in pts:  # a step: each bucket's share rises at its upper edge
            path += [(x(sec), y(prev)), (x(sec), y(f))]
            prev = f
        d = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(path))
        lat = groups[g]["latency"]["before"]
        parts.append(f'<path d="{d}" fill="none" stroke="{COLOURS[g]}" stroke-width="1.5">'
                     f'<title>{g}: {lat["n"]} notifications, p50 {_ms(lat["p50_s"])}, p95 {_ms(lat["p95_s"])}, '
                     f'p99 {_ms(lat["p99_s"])}, max {_ms(lat["max_s"])}</title></path>')
        for p, f in (("p50_s", 0.5), ("p95_s", 0.95), ("p99_s", 0.99)):
            if f <= top_f:
                parts.append(f'<circle cx="{x(lat[p]):.1f}" cy="{y(f):.1f}" r="2.5" fill="{COLOURS[g]}"/>')
        parts.append(f'<text x="{legend_x}" y="{H - 16}" fill="{COLOURS[g]}">■ {g} ({groups[g].get("sessions", "?")}): '
                     f'p99 {_ms(lat["p99_s"])}</text>')
        legend_x += 170
    if added:
        parts.append(f'<text x="{LEFT}" y="{H - 4}" fill="#555">path minus control: p50 {_ms(added["p50_s"], True)}, '
                     f'p95 {_ms(added["p95_s"], True)}, p99 {_ms(added["p99_s"], True)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def storm_svg(data: dict[str, Any]) -> str | None:
    timeline = data.get("timeline") or {}
    cols, rows = timeline.get("columns") or [], timeline.get("rows") or []
    if not rows or "path_idle" not in cols:
        return None
    ti, pi, ci = cols.index("t_s"), cols.index("path_idle"), cols.index("control_idle")
    t_end = max(r[ti] for r in rows) or 1.0
    top = max(1, max(r[pi] + r[ci] for r in rows))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + pw * t / t_end

    def y(v: float) -> float:
        return TOP + ph * (1 - v / top)

    parts = _svg_open(W, H, "sessions idling over time and the reconnect storm")
    parts.append(f'<text x="{LEFT}" y="12" font-weight="bold">sessions idling; the storm</text>')
    parts.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#888"/>'
                 f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#888"/>'
                 f'<text x="{LEFT - 4}" y="{TOP + 3}" text-anchor="end">{top}</text>'
                 f'<text x="{LEFT - 4}" y="{H - BOTTOM + 3}" text-anchor="end">0</text>')
    step = _nice_step(t_end)
    t = 0.0
    while t <= t_end + 1e-9:
        parts.append(f'<text x="{x(t):.1f}" y="{H - BOTTOM + 12}" text-anchor="middle">{t:g} s</text>')
        t += step
    for col, g in ((pi, "path"), (ci, "control")):
        d = " ".join(f"{'M' if i == 0 else 'L'}{x(r[ti]):.1f},{y(r[col]):.1f}" for i, r in enumerate(rows))
        parts.append(f'<path d="{d}" fill="none" stroke="{COLOURS[g]}" stroke-width="1.5"/>')
    storm = data.get("storm")
    if storm:
        at = float(storm.get("at_s", 0))
        parts.append(f'<line x1="{x(at):.1f}" y1="{TOP}" x2="{x(at):.1f}" y2="{H - BOTTOM}" stroke="#000" '
                     f'stroke-dasharray="3 2"><title>the intermediary cut {storm.get("connections_cut")} '
                     f'connections</title></line><text x="{x(at) + 3:.1f}" y="{TOP + 8}">cut</text>')
        back = storm.get("all_back_s")
        if back is not None:
            xb = x(at + float(back))
            anchor, dx = ("end", -3) if xb > W - RIGHT - 90 else ("start", 3)
            parts.append(f'<line x1="{xb:.1f}" y1="{TOP}" x2="{xb:.1f}" y2="{H - BOTTOM}" stroke="#27ae60" '
                         f'stroke-dasharray="3 2"/><text x="{xb + dx:.1f}" y="{TOP + 18}" fill="#27ae60" '
                         f'text-anchor="{anchor}">all back +{float(back):.1f} s</text>')
        refusals = sum((storm.get("refusals") or {}).values())
        parts.append(f'<text x="{LEFT}" y="{H - 4}" fill="#555">reconnects: {_kb(storm.get("octets", 0))} '
                     f'({float(storm.get("octets_per_session", 0)):.0f} B each), {storm.get("attempts")} attempts, '
                     f'{refusals} refused, {storm.get("changes_lost")} lost</text>')
    parts.append(f'<text x="{LEFT}" y="{H - 16}"><tspan fill="{COLOURS["path"]}">■ path</tspan> '
                 f'<tspan fill="{COLOURS["control"]}">■ control</tspan> (sessions idling)</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(result: dict[str, Any]) -> str | None:
    data = (result.get("evidence") or {}).get("load")
    if not isinstance(data, dict) or "groups" not in data:
        return None
    plan = data.get("plan") or {}
    title = (f"{plan.get('protocol', 'imap')} notification latency, shard {plan.get('shard', '1/1')} "
             "(changes before the storm)")
    figures = [f for f in (latency_svg(data["groups"], data.get("added_latency"), title), storm_svg(data)) if f]
    return "".join(f'<div class="figure" style="display:inline-block">{f}</div>' for f in figures) or None


def render_run(doc: dict[str, Any]) -> str | None:
    """Several shards: their joined latency distribution (histograms merged)."""
    from ...load.stats import merged_summary
    from ...load.summary import protocols, shards

    figures = []
    for protocol in protocols(doc.get("results") or []):
        parts = shards(doc.get("results") or [], protocol)
        if len(parts) < 2:
            continue
        groups: dict[str, Any] = {}
        for g in ("path", "control"):
            merged = merged_summary([p["groups"][g]["latency"]["before"] for p in parts])
            groups[g] = {"sessions": sum(p["groups"][g]["sessions"] for p in parts), "latency": {"before": merged}}
        p, c = groups["path"]["latency"]["before"], groups["control"]["latency"]["before"]
        added = ({k: p[k] - c[k] for k in ("p50_s", "p95_s", "p99_s")} if p["n"] and c["n"] else None)
        svg = latency_svg(groups, added, f"{protocol} notification latency, {len(parts)} shards joined")
        if svg:
            figures.append(f'<div class="figure" style="display:inline-block">{svg}</div>')
    return "<h2>Load</h2>" + "".join(figures) if figures else None


def _ms(seconds: float, signed: bool = False) -> str:
    ms = float(seconds) * 1000
    text = f"{ms:+.1f}" if signed else (f"{ms:.0f}" if abs(ms) >= 10 else f"{ms:.2g}")
    return f"{text} ms"


def _tick(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1000:g} ms"


def _kb(octets: float) -> str:
    return f"{float(octets) / 1e3:.0f} kB" if octets >= 1000 else f"{int(octets)} B"


def _nice_step(span: float) -> float:
    raw = span / 6
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
