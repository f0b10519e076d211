#!/usr/bin/env python3
"""Do the dependency floors in pyproject.toml really work? Installs the built wheel into a fresh virtualenv
with every dependency pinned to its lower bound (`name>=X` becomes `name==X`), then runs the catalog and
results unit tests and a small real run against the embedded Dovecot from a directory outside the checkout,
whose verdicts must equal those of the same run with this checkout's environment.

    .venv/bin/python bench/lowest_deps.py [--keep]

Prints what was installed (the resolver may raise a floor a dependency's own requirements force up) and
the outcome. Needs network access to PyPI (or pip's cache). Takes a few minutes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELECTION = "capability or push or jmap"


def verdict_differences(a: Path, b: Path) -> list[str]:
    def verdicts(run: Path) -> dict[str, str]:
        import json

        doc = json.loads((run / "results.json").read_text())
        return {f"{r['check']}|{r['target']}|{r['scenario']}": r["verdict"] for r in doc["results"]}

    va, vb = verdicts(a), verdicts(b)
    return [f"{k}: {va.get(k)} -> {vb.get(k)}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]


def floors() -> list[str]:
    out = []
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", spec)
        if m:
            out.append(f"{m.group(1)}=={m.group(2)}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the virtualenv (path printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lemonade-lowest-"))
    try:
        t0 = time.monotonic()
        dist = work / "dist"
        subprocess.run([sys.executable, "-m", "build", "--wheel", "-o", str(dist), str(ROOT)], check=True,
                       capture_output=True)
        wheel = next(dist.glob("*.whl"))
        (work / "constraints.txt").write_text("\n".join(floors()) + "\n")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        r = subprocess.run([str(py), "-m", "pip", "install", "-c", str(work / "constraints.txt"), str(wheel),
                            "pytest-timeout"], capture_output=True, text=True)
        if r.returncode:
            lines = (r.stdout + r.stderr).splitlines()
            start = next((i for i, ln in enumerate(lines) if "conflict is caused" in ln), max(0, len(lines) - 12))
            print("\n".join(ln for ln in lines[start:start + 12] if "is ignored" not in ln))
            print("lowest_deps: the floors cannot be installed together (see above)")
            return 1
        frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        wanted = {f.split("==")[0].lower().replace("_", "-") for f in floors()}
        print("installed at the floors:")
        for line in frozen.splitlines():
            if line.split("==")[0].lower().replace("_", "-") in wanted:
                print("  " + line)
        # the unit tests of the catalog and results contract, from a copy of tests/ (imports `tests.*`)
        shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
        r1 = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                             "tests/catalog", "-x"], cwd=work, capture_output=True, text=True)
        print("unit and catalog tests:", r1.stdout.strip().splitlines()[-1] if r1.stdout.strip() else r1.stderr[-500:])
        r2 = subprocess.run([str(venv / "bin" / "lemonade"), "run", "-n", "2", "-k", SELECTION,
                             "--output", str(work / "run")], cwd=work, capture_output=True, text=True)
        print(f"lemonade run -k '{SELECTION}' (embedded Dovecot):",
              r2.stdout.strip().splitlines()[-2:] if r2.stdout.strip() else r2.stderr[-800:], "exit", r2.returncode)
        # the same selection with this checkout's environment (the newest versions): verdicts must agree
        subprocess.run([str(ROOT / ".venv" / "bin" / "lemonade"), "run", "-n", "2", "-k", SELECTION, "--output",
                        str(work / "run-current")], cwd=work, capture_output=True, text=True)
        differ = verdict_differences(work / "run", work / "run-current")
        print("verdicts at the floors vs the current environment:",
              "identical" if not differ else "\n  " + "\n  ".join(differ))
        print(f"lowest_deps: {time.monotonic() - t0:.0f} s")
        return 0 if r1.returncode == 0 and r2.returncode in (0, 1) and not differ else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
