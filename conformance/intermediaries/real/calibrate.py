"""``lemonade calibrate``: the same checks under an emulated intermediary and under its real counterpart.

For each pair (pairs.yaml beside this module) one ``lemonade run`` holds both scenarios, so every check x target
runs under each; the results are matched by (check, target) and compared: verdicts that agree, those that
differ, and the intermediary's action in each (when it happened on the case clock, what the client and the
server saw: RST, FIN/close, 504, nothing). Writes ``calibration.json`` and ``calibration.md`` (the README table)
into the output directory; the runs stay beside them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...errors import BadInput

PAIRS_FILE = Path(__file__).resolve().parent / "pairs.yaml"


@dataclass(frozen=True)
class Pair:
    name: str
    emulated: str
    real: str
    profiles: tuple[str, ...]
    targets: tuple[str, ...]


def load_pairs(path: Path = PAIRS_FILE) -> dict[str, Pair]:
    data = yaml.safe_load(path.read_text())
    return {p["name"]: Pair(p["name"], p["emulated"], p["real"], tuple(p["profiles"]), tuple(p["targets"]))
            for p in data["pairs"]}


# -- what each side saw (sans-IO over result dicts) -------------------------------------------------------
CLIENT_PATTERNS = (
    ("504", re.compile(r"\b504\b")),
    ("403", re.compile(r"\b403\b|blocked")),
    ("RST", re.compile(r"reset|\bRST\b|ECONNRESET", re.I)),
    ("FIN/close", re.compile(r"incomplete|closed|\bEOF\b|ended|\bFIN\b|connection lost", re.I)),
    ("nothing (timed out)", re.compile(r"timed out|within|no .* arrived|never reported|nobody noticed", re.I)),
)


def client_saw(result: dict[str, Any]) -> str:
    if result["verdict"] in ("pass", "not-applicable", "skipped"):
        return "-"
    message = result.get("message", "")
    return next((name for name, pattern in CLIENT_PATTERNS if pattern.search(message)), "other")


def action(result: dict[str, Any]) -> dict[str, Any] | None:
    """The intermediary's first action in a case: time on the case clock, its text, what the server saw."""
    entries = result.get("evidence", {}).get("transcript", [])
    acts = [e for e in entries if e.get("direction") == "I"]
    if not acts:
        return None
    first = acts[0]
    text = first["text"]
    server = "nothing"
    if "both sides" in text or "both connections" in text:  # what the intermediary did to both ends
        server = "RST" if "RST" in text else "FIN/close"
    m = re.match(r"nat:(\d+)$", first.get("conn", ""))
    if m:  # the kernel NAT: what later arrived at the server's end of that same connection (the exit relay)
        same = f":{m.group(1)}->"
        for e in entries:
            if e.get("leg") == "proxy-server" and same in e.get("conn", "") and e["t"] >= first["t"]:
                hit = re.search(r"(RST|FIN)[^:]* arrived at the server side", e["text"])
                if hit:
                    server = f"{hit.group(1) if hit.group(1) == 'RST' else 'FIN'} at t={e['t']:.2f}"
                    break
    return {"t": first["t"], "text": text[:200], "server_saw": server}


def compare(pair: Pair, results: list[dict[str, Any]], emulated: str, real: str) -> dict[str, Any]:
    """Match the two scenarios' results by (check, target) and tell agreement and actions."""
    by: dict[str, dict[tuple[str, str], dict[str, Any]]] = {emulated: {}, real: {}}
    for r in results:
        if r["scenario"] in by:
            by[r["scenario"]][(r["check"], r["target"])] = r
    rows, only = [], {"emulated": [], "real": []}
    for key in sorted(set(by[emulated]) | set(by[real])):
        e, q = by[emulated].get(key), by[real].get(key)
        if e is None or q is None:
            only["real" if e is None else "emulated"].append(f"{key[0]} ({key[1]})")
            continue
        judged = not {e["verdict"], q["verdict"]} & {"skipped"}
        rows.append({
            "check": key[0], "target": key[1], "emulated": e["verdict"], "real": q["verdict"],
            "agree": e["verdict"] == q["verdict"], "judged": judged,
            "emulated_message": e.get("message", "")[:240], "real_message": q.get("message", "")[:240],
            "emulated_action": action(e), "real_action": action(q),
            "emulated_client_saw": client_saw(e), "real_client_saw": client_saw(q),
        })
    judged = [r for r in rows if r["judged"]]
    agree = sum(r["agree"] for r in judged)
    return {"pair": pair.name, "emulated": emulated, "real": real, "targets": list(pair.targets),
            "profiles": list(pair.profiles), "compared": len(judged), "agree": agree,
            "agreement": round(agree / len(judged), 3) if judged else None, "rows": rows, "only": only}


def markdown(report: list[dict[str, Any]]) -> str:
    out = ["| pair | emulated | real | compared | agree | agreement |", "|---|---|---|---:|---:|---:|"]
    for p in report:
        pct = f"{100 * p['agreement']:.0f} %" if p["agreement"] is not None else "-"
        out.append(f"| {p['pair']} | `{p['emulated']}` | `{p['real']}` | {p['compared']} | {p['agree']} | {pct} |")
    out.append("")
    for p in report:
        differ = [r for r in p["rows"] if r["judged"] and not r["agree"]]
        timed = [r for r in p["rows"] if r["emulated_action"] or r["real_action"]]
        if not differ and not timed:
            continue
        out.append(f"**{p['pair']}**: {len(differ)} differ" + (":" if differ else ""))
        out.append("")
        if differ or timed:
            out.append("| check | target | emulated | real | emulated action (t, server saw; client saw) "
                       "| real action (t, server saw; client saw) |")
            out.append("|---|---|---|---|---|---|")
            for r in sorted(timed + [x for x in differ if x not in timed], key=lambda x: (x["agree"], x["check"])):
                out.append(f"| {r['check']} | {r['target']} | {r['emulated']} | {r['real']} | "
                           f"{_act(r['emulated_action'], r['emulated_client_saw'])} | "
                           f"{_act(r['real_action'], r['real_client_saw'])} |")
            out.append("")
    return "\n".join(out)


def _act(a: dict[str, Any] | None, client: str) -> str:
    if a is None:
        return f"no action; client: {client}"
    return f"t={a['t']:.2f} s, server: {a['server_saw']}; client: {client}"


# -- the command -------------------------------------------------------------------------------------------
def run_pair(pair: Pair, targets: list[str], out: Path, workers: str, depth: str) -> dict[str, Any]:
    """One ``lemonade run`` per side, each with its own embedded servers (so one side's data cannot meet the
    other's: a server that deduplicates imports would otherwise answer the second side differently)."""
    from ..scenario import parse_scenario

    emulated = str(parse_scenario(pair.emulated, depth))
    real = str(parse_scenario(pair.real, depth))
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    runs = {}
    for side, scenario in (("emulated", emulated), ("real", real)):
        run_dir = out / pair.name / side
        cmd = [sys.executable, "-m", "conformance.cli", "run", "--output", str(run_dir), "--depth", depth,
               "--scenario", scenario]
        for t in targets:
            cmd += ["--target", t]
        for p in pair.profiles:
            cmd += ["--profile", p]
        if workers and workers != "0":
            cmd += ["-n", workers]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        results_file = run_dir / "results.json"
        if not results_file.exists():
            raise BadInput(f"calibrate {pair.name} ({side}): the run wrote no results ({proc.stderr.strip()[-400:]})")
        results += json.loads(results_file.read_text())["results"]
        runs[side] = str(run_dir)
    report = compare(pair, results, emulated, real)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    report["runs"] = runs
    return report


def cmd_calibrate(args) -> int:
    from ...cli import console, make_run_dir

    pairs = load_pairs()
    chosen = args.pair or list(pairs)
    unknown = [p for p in chosen if p not in pairs]
    if unknown:
        raise BadInput(f"unknown pair(s) {', '.join(unknown)} (known: {', '.join(pairs)})")
    out = make_run_dir(args.output)
    con = console()
    report = []
    for name in chosen:
        pair = pairs[name]
        targets = [t for t in pair.targets if not args.target or t in args.target]
        if not targets:
            continue
        con.print(f"calibrate {name}: {pair.emulated} vs {pair.real} on {', '.join(targets)}", markup=False)
        r = run_pair(pair, targets, out, args.n, args.depth)
        pct = f"{100 * r['agreement']:.0f} %" if r["agreement"] is not None else "-"
        con.print(f"  {r['agree']}/{r['compared']} agree ({pct}) in {r['wall_s']} s", markup=False)
        report.append(r)
    (out / "calibration.json").write_text(json.dumps(report, indent=1))
    (out / "calibration.md").write_text(markdown(report))
    con.print(markdown(report), markup=False)
    con.print(f"calibration: {out / 'calibration.md'}", markup=False)
    return 0
