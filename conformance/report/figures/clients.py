"""Clients under test (run-level figure): a client x scenario matrix, and client x server when several partner
servers ran; per cell the verdicts of the checks that ran there, each linked to its result (which carries the
client's own log, the path transcript and the timeline); tallies per client, no ranking. Below it, the
reachability of mail per client behind the HTTP-only firewalls (``client/reachability`` evidence).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from markupsafe import escape

VERDICT_COLOUR = {"pass": "#4e9a06", "fail": "#cc0000", "non-strict": "#c4a000", "informational": "#3465a4",
                  "not-applicable": "#888a85", "error": "#75507b", "skipped": "#babdb6", "xfail": "#729fcf",
                  "xpass": "#a40000"}
WORST = ("error", "fail", "xpass", "non-strict", "xfail", "informational", "pass", "not-applicable", "skipped")


def client_results(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc.get("results", []) if r.get("role") == "client"]


def _worst(verdicts: list[str]) -> str:
    return min(verdicts, key=lambda v: WORST.index(v) if v in WORST else len(WORST))


def _cell(results: list[dict[str, Any]]) -> str:
    from ..html import anchor

    if not results:
        return '<td class="cm-empty">·</td>'
    worst = _worst([r["verdict"] for r in results])
    links = " ".join(
        f'<a href="#{anchor(r)}" title="{escape(r["check"])}: {escape(r["verdict"])} — '
        f'{escape((r.get("message") or "")[:200])}"'
        f' style="color:{VERDICT_COLOUR.get(r["verdict"], "#2e3436")}">{escape(r["check"].split("/", 1)[-1])}</a>'
        for r in sorted(results, key=lambda r: r["check"]))
    return (f'<td class="cm-cell" style="border-left:4px solid {VERDICT_COLOUR.get(worst, "#2e3436")}">'
            f'<b>{escape(worst)}</b><br><small>{links}</small></td>')


def _tally(results: list[dict[str, Any]]) -> str:
    c = Counter(r["verdict"] for r in results)
    return ", ".join(f"{escape(v)} {c[v]}" for v in WORST if c.get(v))


def _table(rows: list[str], cols: list[str], cells: dict[tuple[str, str], list], title: str, by: dict) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for row in rows:
        tds = "".join(_cell(cells.get((row, c), [])) for c in cols)
        body.append(f"<tr><th>{escape(row)}</th>{tds}<td class=\"cm-tally\">{_tally(by.get(row, []))}</td></tr>")
    col_tally = "".join(f"<td class=\"cm-tally\">{_tally([r for k, v in cells.items() if k[1] == c for r in v])}</td>"
                        for c in cols)
    return (f"<table class=\"client-matrix\"><caption>{escape(title)}</caption><thead><tr><th>client</th>{head}"
            f"<th>tally</th></tr></thead><tbody>{''.join(body)}<tr><th>tally</th>{col_tally}<td></td></tr>"
            "</tbody></table>")


def reachability(results: list[dict[str, Any]]) -> str:
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        data = (r.get("evidence") or {}).get("reachability_client")
        if r.get("check") != "client/reachability":
            continue
        outcome = data.get("outcome") if isinstance(data, dict) else None
        if outcome is None:  # not-applicable (no HTTP proxy support) or an error: the verdict says which
            message = r.get("message") or ""
            outcome = r["verdict"] if r["verdict"] != "not-applicable" else (
                "no proxy support" if "proxy" in message else "n/a (" + message[:60] + ")")
        rows.setdefault(str(r.get("subject")), {})[f"{r['scenario']} ({r.get('target')})"] = outcome
    if not rows:
        return ""
    cols = sorted({c for v in rows.values() for c in v})
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(f"<tr><th>{escape(n)}</th>" + "".join(
        f"<td style=\"color:{'#4e9a06' if v.get(c) == 'reached' else '#2e3436'}\">{escape(v.get(c, '·'))}</td>"
        for c in cols) + "</tr>" for n, v in sorted(rows.items()))
    return (f"<table class=\"client-matrix\"><caption>Reachability of mail per client behind HTTP-only firewalls"
            f"</caption><thead><tr><th>client</th>{head}</tr></thead><tbody>{body}</tbody></table>")


def render_run(doc: dict[str, Any]) -> str | None:
    results = client_results(doc)
    if not results:
        return None
    clients = sorted({str(r.get("subject")) for r in results})
    by_client: dict[str, list] = {c: [r for r in results if r.get("subject") == c] for c in clients}
    scenarios = sorted({str(r["scenario"]) for r in results}, key=lambda s: (s != "direct", s))
    targets = sorted({str(r["target"]) for r in results})
    parts = ['<section class="clients"><h3>Clients under test</h3>',
             "<p>Each cell: the worst verdict of the checks that ran for that client there, and every check "
             "linked to its result (client log, path transcript, timeline). Tallies count verdicts; no ranking.</p>"]
    for t in targets:
        cells: dict[tuple[str, str], list] = {}
        for r in results:
            if r["target"] == t:
                cells.setdefault((str(r["subject"]), str(r["scenario"])), []).append(r)
        parts.append(_table(clients, [s for s in scenarios if any(k[1] == s for k in cells)], cells,
                            f"client x scenario (partner server {t})",
                            {c: [r for r in by_client[c] if r["target"] == t] for c in clients}))
    if len(targets) > 1:
        cells = {}
        for r in results:
            cells.setdefault((str(r["subject"]), str(r["target"])), []).append(r)
        parts.append(_table(clients, targets, cells, "client x partner server", by_client))
    parts.append(reachability(results))
    parts.append("<style>.client-matrix{border-collapse:collapse;margin:.5em 0 1em}.client-matrix td,.client-matrix th"
                 "{border:1px solid #d3d7cf;padding:3px 6px;vertical-align:top;text-align:left}.client-matrix caption"
                 "{text-align:left;font-weight:bold}.cm-tally{font-size:85%;color:#555753}.cm-empty{color:#babdb6}"
                 "</style></section>")
    return "".join(parts)
