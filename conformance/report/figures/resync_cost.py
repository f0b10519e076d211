"""Resync cost chart: quick vs full resynchronisation octets per mailbox size, from the 'resync_cost' attachment.

Draws a small grouped bar chart (log scale, so 100 and 10,000 messages fit together) with the bound of the
requirement as a dashed line. Data: ``{"sizes": [...], "quick": [...], "full": [...], "bound": int}``.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import escape

W, H = 360, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 16, 34


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f >= 0 and math.isfinite(f) else None


def render(result: dict[str, Any]) -> str | None:
    data = (result.get("evidence") or {}).get("resync_cost")
    if not isinstance(data, dict):
        return None
    sizes, quick, full = data.get("sizes") or [], data.get("quick") or [], data.get("full") or []
    rows = [(s, _num(q), _num(f)) for s, q, f in zip(sizes, quick, full)]
    rows = [(s, q, f) for s, q, f in rows if q is not None and f is not None]
    if not rows:
        return None
    bound = _num(data.get("bound"))
    top = max([*(max(q, f) for _, q, f in rows), bound or 0, 10])
    lmax = math.log10(top) * 1.05

    def y(v: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - math.log10(max(v, 1)) / lmax)

    plot_w = W - LEFT - RIGHT
    group = plot_w / len(rows)
    bar = min(28.0, group / 3)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'role="img" aria-label="quick vs full resync bytes per mailbox size" font-size="10" font-family="sans-serif">',
             f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#888"/>']
    for p in range(0, int(lmax) + 1):
        yy = y(10 ** p)
        parts.append(f'<line x1="{LEFT - 3}" y1="{yy:.1f}" x2="{W - RIGHT}" y2="{yy:.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 5}" y="{yy + 3:.1f}" text-anchor="end">{escape(_short(10 ** p))}</text>')
    for i, (size, q, f) in enumerate(rows):
        x0 = LEFT + i * group + (group - 2 * bar) / 2
        for j, (v, colour, label) in enumerate(((q, "#2a7ab9", "quick"), (f, "#c96a28", "full"))):
            yy = y(v)
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{yy:.1f}" width="{bar - 2:.1f}" '
                         f'height="{H - BOTTOM - yy:.1f}" fill="{colour}"><title>{label} resync, N={escape(str(size))}: '
                         f'{int(v)} B</title></rect>')
            parts.append(f'<text x="{x0 + j * bar + bar / 2 - 1:.1f}" y="{yy - 2:.1f}" text-anchor="middle" '
                         f'font-size="8">{escape(_short(v))}</text>')
        parts.append(f'<text x="{x0 + bar:.1f}" y="{H - BOTTOM + 12}" text-anchor="middle">N={escape(str(size))}</text>')
    if bound:
        yy = y(bound)
        parts.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{W - RIGHT}" y2="{yy:.1f}" stroke="#2a7ab9" '
                     f'stroke-dasharray="4 3"><title>bound for quick resync: {int(bound)} B</title></line>')
    parts.append(f'<text x="{LEFT}" y="{H - 6}" fill="#2a7ab9">■ quick resync</text>'
                 f'<text x="{LEFT + 90}" y="{H - 6}" fill="#c96a28">■ full resync</text>'
                 f'<text x="{LEFT + 175}" y="{H - 6}" fill="#555">bytes, log scale; dashed: bound</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{int(v)}"
