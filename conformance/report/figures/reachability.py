"""Reachability table: which mail protocols still work behind which firewall (run-level figure).

Reads the ``reachability`` evidence of the ``jmap/reachability`` results (one per target x scenario): for each
target, a table with the protocols as rows and the firewall scenarios as columns; each cell shows the three
steps log in / read a message / get a change pushed as ok, blocked (refused by the firewall), failed, n/a
(the protocol has no such step) or not offered by the target.
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

CHECK = "jmap/reachability"
STEPS = ("login", "read", "push")
MARK = {"ok": ("✔", "#4e9a06"), "blocked": ("⛔", "#cc0000"), "failed": ("✘", "#cc0000"),
        "not reached": ("·", "#888a85"), "n/a": ("–", "#888a85"), "not offered": ("", "#babdb6")}
SCENARIO_ORDER = ("direct", "https-only", "inspecting")


def _order(name: str) -> tuple[int, str]:
    base = name.split(":")[0]
    return (SCENARIO_ORDER.index(base) if base in SCENARIO_ORDER else len(SCENARIO_ORDER), name)


def collect(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{target: {scenario: rows}} from the results."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in doc.get("results", []):
        if r.get("check") != CHECK:
            continue
        data = (r.get("evidence") or {}).get("reachability")
        if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
            continue
        out.setdefault(str(r.get("target")), {})[str(r.get("scenario"))] = data["rows"]
    return out


def _cell(row: dict[str, Any] | None) -> str:
    if not row or all(row.get(s) == "not offered" for s in STEPS):
        return '<td style="color:#babdb6;text-align:center">not offered</td>'
    parts = []
    for s in STEPS:
        v = str(row.get(s, "not offered"))
        mark, colour = MARK.get(v, ("?", "#2e3436"))
        parts.append(f'<span title="{escape(s)}: {escape(v)}" style="color:{colour};font-weight:bold">'
                     f'{escape(s[0].upper())}{escape(mark) or "○"}</span>')
    note = escape(str(row.get("note", ""))[:300])
    return f'<td title="{note}" style="text-align:center;white-space:nowrap">{" ".join(parts)}</td>'


def render_run(doc: dict[str, Any]) -> str | None:
    data = collect(doc)
    if not data:
        return None
    html = ['<section class="figure reachability"><h3>Reachability: protocols behind firewalls</h3>',
            '<p>Per cell: <b>L</b>og in, <b>R</b>ead a message, <b>P</b>ush of a change. '
            '✔ ok, ⛔ blocked by the firewall, ✘ failed, – no such step, · not reached; hover for details.</p>']
    for target in sorted(data):
        scenarios = sorted(data[target], key=_order)
        protocols: list[str] = []
        for sc in scenarios:
            for p in data[target][sc]:
                if p not in protocols:
                    protocols.append(p)
        html.append(f'<table class="reachability"><caption>{escape(target)}</caption><tr><th>protocol</th>')
        html += [f"<th>{escape(sc)}</th>" for sc in scenarios]
        html.append("</tr>")
        for p in protocols:
            html.append(f"<tr><th style='text-align:left'>{escape(p)}</th>")
            html += [_cell(data[target][sc].get(p)) for sc in scenarios]
            html.append("</tr>")
        html.append("</table>")
    html.append("</section>")
    return "".join(html)
