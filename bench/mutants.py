"""The suite's mutation score (issue 13 section 4): run the checks of a protocol through each mutation operator
(tests/mutants/) in front of a reference server and print the kill matrix. Not a test: prints numbers.

For each protocol it also runs the same server with the identity operator (the mutating proxy, changing nothing) and
without any proxy: a case that fails through the identity operator but not without the proxy is a false fail of the
machinery (must be 0). An operator is caught when at least one case that does not fail (fail or non-strict) through
the identity operator does through the operator; cases that turn into error are listed apart (an error is the suite
blaming itself, not a detection).

Usage: .venv/bin/python bench/mutants.py [--target dovecot|cyrus-push] [--protocol imap,smtp,jmap]
                                          [--operators a,b] [--jobs 3] [-n 1] [--json FILE]
``--target dovecot`` (default) runs the IMAP and SMTP operators against the embedded Dovecot; ``--target cyrus-push``
the JMAP operators against the cached push-capable Cyrus (root only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mutants.operators import OPERATORS  # noqa: E402
from tests.mutants.target import mutant_target  # noqa: E402

CHECKS = {  # -k: the checks that use each protocol (families or modules)
    "imap": "capability or push or reconnect or envelope",
    "smtp": "submission or burl or received_field or submitted",
    "jmap": "test_api or test_eventsource or test_websocket",
}
PROTOCOLS_OF = {"dovecot": ("imap", "smtp"), "cyrus-push": ("jmap",)}
FAILING = ("fail", "non-strict")


def run_suite(target_file: Path, out: Path, k: str, workers: str) -> dict[str, dict]:
    """One `lemonade run` against ``target_file``; {case key: result}."""
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--target", str(target_file), "-k", k, "--output", str(out)]
    if workers not in ("0", "1"):
        cmd += ["-n", workers]
    env = dict(os.environ, COLUMNS="200", LEMONADE_REPORTS=str(out.parent / "reports"))
    subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
    results_file = out / "results.json"
    if not results_file.is_file():
        return {}
    data = json.loads(results_file.read_text())
    return {case_key(r): r for r in data["results"]}


def case_key(r: dict) -> str:
    """The case without its target: check, its parameters (e.g. the APPEND variant) and the scenario."""
    node = r.get("nodeid", "")
    params = re.search(r"\[(.*)\]$", node)
    variant = params.group(1).split("|")[0].replace(r["target"], "").strip("-") if params else ""
    return f"{r['check']}{'[' + variant + ']' if variant else ''}|{r['scenario']}"


def one(protocol: str, operator: str, work: Path, workers: str, direct: bool = False, k: str | None = None) -> dict:
    """The results of the suite through ``operator`` (and, with ``direct``, also without the proxy)."""
    t0 = time.monotonic()
    with mutant_target(work / f"{protocol}-{operator}", protocol, operator) as mutant:
        results = run_suite(mutant.target_file, work / f"{protocol}-{operator}" / "run", k or CHECKS[protocol], workers)
        plain = run_suite(mutant.direct_file, work / f"{protocol}-{operator}" / "direct", CHECKS[protocol], workers) \
            if direct else None
        return {"protocol": protocol, "operator": operator, "results": results, "direct": plain,
                "applied": mutant.applied, "seconds": round(time.monotonic() - t0, 1)}


def judge(identity: dict, run: dict) -> dict:
    """Which cases caught the operator (fail/non-strict where identity did not fail) and which turned to error."""
    caught, errors = [], []
    for key, r in run["results"].items():
        base = identity["results"].get(key)
        if base is None:
            continue
        if r["verdict"] in FAILING and base["verdict"] not in FAILING:
            caught.append(f"{key.split('|')[0]} ({r['verdict']})")
        elif r["verdict"] == "error" and base["verdict"] != "error":
            errors.append(key.split("|")[0])
    return {"caught": sorted(set(caught)), "errors": sorted(set(errors))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(PROTOCOLS_OF), default="dovecot")
    ap.add_argument("--protocol", help="comma-separated subset of the target's protocols")
    ap.add_argument("--operators", help="comma-separated subset of operators (identity is always run)")
    ap.add_argument("--jobs", type=int, default=3, help="operator runs at the same time")
    ap.add_argument("-n", default="1", help="pytest-xdist workers inside each run")
    ap.add_argument("--json", help="write the matrix as JSON")
    args = ap.parse_args()
    protocols = [p for p in PROTOCOLS_OF[args.target] if not args.protocol or p in args.protocol.split(",")]
    chosen = set(args.operators.split(",")) if args.operators else None
    plan = [(p, name) for p in protocols for name, op in OPERATORS.items()
            if op.protocol == p and (chosen is None or name in chosen)]
    work = Path(tempfile.mkdtemp(prefix="lemonade-mutants-"))
    t0 = time.monotonic()
    print(f"mutants: {len(plan)} operators over {', '.join(protocols)} against {args.target}; {args.jobs} at a time, "
          f"-n {args.n} each; work in {work}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        identities = {p: pool.submit(one, p, "identity", work, args.n, True) for p in protocols}
        runs = [pool.submit(one, p, name, work, args.n) for p, name in plan]
        identities = {p: f.result() for p, f in identities.items()}
        done = [f.result() for f in runs]
    report: dict = {"target": args.target, "operators": [], "false_fails": {}}
    for p, ident in identities.items():
        false = [f"{key} ({r['verdict']}: {r['message'][:120]})" for key, r in ident["results"].items()
                 if r["verdict"] in FAILING and (ident["direct"] or {}).get(key, {}).get("verdict") not in FAILING]
        report["false_fails"][p] = false
        print(f"\n[{p}] identity: {len(ident['results'])} cases through the proxy, {len(ident['direct'] or {})} without "
              f"it; false fails: {len(false)}")
        for line in false:
            print(f"    FALSE FAIL {line}")
    print(f"\n{'operator':28} {'applied':>7}  caught by")
    for run in done:
        verdict = judge(identities[run["protocol"]], run)
        row = {"operator": run["operator"], "protocol": run["protocol"], "summary": OPERATORS[run["operator"]].summary,
               "applied": run["applied"], "cases": len(run["results"]), "seconds": run["seconds"], **verdict}
        report["operators"].append(row)
        shown = ", ".join(verdict["caught"]) or ("NOT CAUGHT" if run["applied"] else "not caught (never applied)")
        print(f"{run['operator']:28} {run['applied']:>7}  {shown}")
        if verdict["errors"]:
            print(f"{'':37}turned to error: {', '.join(verdict['errors'])}")
    caught = sum(1 for r in report["operators"] if r["caught"])
    total = len(report["operators"])
    false_total = sum(len(v) for v in report["false_fails"].values())
    report["score"] = {"caught": caught, "operators": total, "false_fails_identity": false_total,
                       "seconds": round(time.monotonic() - t0, 1)}
    print(f"\nscore: {caught}/{total} operators caught; false fails through the identity operator: {false_total}; "
          f"{report['score']['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if false_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
