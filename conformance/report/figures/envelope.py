"""Tables for the envelope and transport checks: octet comparisons, TLS versions per endpoint, capabilities.

``roundtrip`` rows show each fixture and step with the first differing octet and OpenSSL's verdict; when a
row is broken, the intermediary actions of the case are listed under it, so the reader sees which leg changed
which bytes. ``tls_versions`` is the endpoint x version matrix of the TLS version check.
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

STYLE = "border-collapse:collapse;font-size:85%;margin:4px 0"
CELL = "border:1px solid #ccc;padding:2px 6px;vertical-align:top"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f'<th style="{CELL}">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{CELL}">{escape(str(c))}</td>' for c in row) + "</tr>"
                   for row in rows)
    return f'<table style="{STYLE}"><tr>{head}</tr>{body}</table>'


def render(result: dict[str, Any]) -> str | None:
    ev = result.get("evidence") or {}
    parts: list[str] = []
    rows = ev.get("roundtrip")
    if isinstance(rows, list) and rows:
        keys = [k for k in ("fixture", "step", "identical", "identical_after_trace_fields", "openssl", "difference",
                            "binary_part", "fields_added", "source_flags", "keywords_after_store")
                if any(k in r for r in rows)]
        parts.append(_table(keys, [[r.get(k, "") for k in keys] for r in rows]))
        broken = [r for r in rows if r.get("identical") is False or str(r.get("openssl", "")).startswith("FAILS")]
        actions = [e for e in ev.get("transcript", []) if e.get("direction") == "I"]
        if broken and actions:
            parts.append("<div><b>what the intermediaries did on the path</b> (the proxy-server leg in the transcript "
                         "shows the octets the server sent or received)</div>")
            parts.append(_table(["t", "connection", "action"],
                                [[f"{e.get('t', 0):.3f}", e.get("conn", ""), e.get("text", "")] for e in actions]))
    versions = ev.get("tls_versions")
    if isinstance(versions, list) and versions:
        endpoints = list(dict.fromkeys(r["endpoint"] for r in versions))
        offered = list(dict.fromkeys(r["offered"] for r in versions))
        cell = {(r["endpoint"], r["offered"]): r["result"] for r in versions}
        parts.append(_table(["endpoint"] + offered, [[ep] + [cell.get((ep, v), "") for v in offered]
                                                     for ep in endpoints]))
    caps = ev.get("capabilities")
    if isinstance(caps, dict) and caps:
        parts.append(_table(["when", "capabilities"], [[k, " ".join(v)] for k, v in caps.items()]))
    for key in ("certificate", "received"):
        info = ev.get(key)
        if isinstance(info, dict) and info:
            parts.append(_table([key, "value"], [[k, v] for k, v in info.items()]))
    return "".join(parts) or None
