"""The whole of a load run from its shards' results: latency merged from histograms, counts summed.

``lemonade load`` runs one case per worker (``--workers``, or xdist ``--tx`` hosts); each case's result
carries its shard's figures in ``evidence.load``. ``aggregate`` joins them for results.json's ``run.load``
and the report; with one shard it is that shard's figures.
"""

from __future__ import annotations

from typing import Any

from .stats import merged_summary

LATENCY_KEYS = ("n", "p50_s", "p95_s", "p99_s", "max_s")


def shards(results: list[dict[str, Any]], protocol: str | None = None) -> list[dict[str, Any]]:
    """The load figures of every load result (of one protocol when given), in shard order."""
    found = [r["evidence"]["load"] for r in results if isinstance(r.get("evidence", {}).get("load"), dict)]
    found = [f for f in found if protocol is None or f.get("plan", {}).get("protocol", "imap") == protocol]
    return sorted(found, key=lambda f: f.get("plan", {}).get("shard", ""))


def protocols(results: list[dict[str, Any]]) -> list[str]:
    return sorted({f.get("plan", {}).get("protocol", "imap") for f in shards(results)})


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per protocol (imap, eventsource): the shards joined."""
    out = {p: aggregate_shards(shards(results, p)) for p in protocols(results)}
    return out or None


def aggregate_shards(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"shards": len(parts), "groups": {}}
    for group in ("path", "control"):
        g: dict[str, Any] = {"sessions": sum(p["groups"][group]["sessions"] for p in parts), "latency": {}}
        for phase in ("before", "storm", "after"):
            one = [p["groups"][group]["latency"][phase] for p in parts]
            merged = one[0] if len(one) == 1 else merged_summary(one)  # one shard: its exact percentiles
            g["latency"][phase] = {k: merged[k] for k in LATENCY_KEYS}
        g["keepalive_gap_max_s"] = max(p["groups"][group]["keepalive_gap"]["max_s"] for p in parts)
        out["groups"][group] = g
    p, c = out["groups"]["path"]["latency"]["before"], out["groups"]["control"]["latency"]["before"]
    if len(parts) == 1 and "added_latency" in parts[0]:
        out["added_latency"] = parts[0]["added_latency"]  # with its confidence interval
    elif p["n"] and c["n"]:
        out["added_latency"] = {k: round(p[k] - c[k], 6) for k in LATENCY_KEYS if k != "n"}
    storms = [p["storm"] for p in parts if p.get("storm")]
    if storms:
        back = [s["all_back_s"] for s in storms]
        out["storm"] = {
            "connections_cut": sum(s["connections_cut"] for s in storms),
            "sessions": sum(s["sessions"] for s in storms),
            "not_back": sum(s["not_back"] for s in storms),
            "all_back_s": max(back) if all(b is not None for b in back) else None,
            "octets": sum(s["octets"] for s in storms),
            "attempts": sum(s["attempts"] for s in storms),
            "refusals": sum(sum(s["refusals"].values()) for s in storms),
            "changes_lost": sum(s["changes_lost"] for s in storms),
        }
    out["changes"] = {"made": sum(p["changes"]["made"] for p in parts)}
    out["resources"] = {k: round(sum(p["resources"].get(k, 0) for p in parts), 2)
                        for k in ("cpu_s", "proxy_cpu_s", "load_client_cpu_s")}
    out["resources"]["max_rss_mb"] = max(p["resources"].get("max_rss_mb", 0) for p in parts)
    return out


def lines(aggregates: dict[str, Any]) -> list[str]:
    """The aggregate of each protocol as a few lines of text (the CLI prints them after the summary)."""
    out = []
    for protocol, agg in aggregates.items():
        out.append(f"load, {protocol} ({agg['shards']} shard{'s' if agg['shards'] > 1 else ''}):")
        out += protocol_lines(agg)
    return out


def protocol_lines(agg: dict[str, Any]) -> list[str]:
    out = []
    for group in ("path", "control"):
        g = agg["groups"][group]
        lat = g["latency"]["before"]
        out.append(f"{group:>8}: {g['sessions']} sessions, {lat['n']} notifications before the storm: "
                   f"p50 {lat['p50_s'] * 1e3:.0f} ms, p95 {lat['p95_s'] * 1e3:.0f} ms, p99 {lat['p99_s'] * 1e3:.0f} ms, "
                   f"max {lat['max_s'] * 1e3:.0f} ms; longest silence {g['keepalive_gap_max_s']:.1f} s")
    if "added_latency" in agg:
        a = agg["added_latency"]
        ci = a.get("ci95", {})
        out.append("   added by the path (path minus control): " + ", ".join(
            f"{k[:-2]} {a[k] * 1e3:+.1f} ms" + (f" [{ci[k][0] * 1e3:+.0f}, {ci[k][1] * 1e3:+.0f}]" if k in ci else "")
            for k in ("p50_s", "p95_s", "p99_s")) + (" (95 % intervals)" if ci else ""))
    if "storm" in agg:
        s = agg["storm"]
        out.append(f"   storm: {s['connections_cut']} connections cut, "
                   + (f"all {s['sessions']} sessions back in {s['all_back_s']:.1f} s" if s["all_back_s"] is not None
                      else f"{s['not_back']} of {s['sessions']} sessions not back")
                   + f", {s['octets'] / 1e3:.0f} kB moved, {s['attempts']} attempts, {s['refusals']} refusals, "
                     f"{s['changes_lost']} changes lost")
    r = agg["resources"]
    out.append(f"   suite: {r['cpu_s']:.1f} CPU-s (proxy {r['proxy_cpu_s']:.1f}, load client "
               f"{r['load_client_cpu_s']:.1f}), peak {r['max_rss_mb']:.0f} MB per process")
    return out
