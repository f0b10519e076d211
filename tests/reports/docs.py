"""Small synthetic results documents for the report unit tests (shape of a real results.json)."""

from __future__ import annotations

import copy
from typing import Any

from conformance.results import summarize
from tests.fakes.imap import FakeImapSession

HOSTILE = "<script>alert(1)</script></pre><img src=x onerror=alert(2)>"


def result(check: str, verdict: str, target: str = "dovecot", scenario: str = "direct", message: str = "",
           requirements: tuple[str, ...] = ("lemonade.store.capabilities",), measurements: dict | None = None,
           transcript: list[dict] | None = None) -> dict[str, Any]:
    return {"check": check, "requirements": list(requirements), "target": target, "scenario": scenario,
            "verdict": verdict, "message": message, "duration_s": 0.1, "level": "MUST", "profiles": ["lemonade"],
            "nodeid": f"x.py::test_{check.split('/')[-1]}", "rerun": f"lemonade run -k {check.split('/')[-1]}",
            "started": 1.0, "worker": "main",
            "evidence": {"transcript": transcript or [], "measurements": measurements or {}, "scenario_params": {}}}


def doc(results: list[dict[str, Any]], run_id: str = "run-a", targets: list[dict] | None = None) -> dict[str, Any]:
    results = copy.deepcopy(results)
    names = sorted({r["target"] for r in results})
    return {"schema_version": 1,
            "run": {"id": run_id, "started": "2026-01-01T00:00:00Z", "command": "lemonade run", "suite_version": "0.1.0",
                    "profiles": ["lemonade"], "scenarios": sorted({r["scenario"] for r in results}), "depth": "quick",
                    "targets": targets or [{"name": n, "provider": "local", "version": "2.3.19"} for n in names]},
            "results": results, "summary": summarize(results, ["lemonade"]),
            "requirements": {"lemonade.store.capabilities": {"title": "Store capabilities", "level": "MUST",
                                                             "family": "capability", "source": "RFC 5550 §3.2",
                                                             "url": "https://www.rfc-editor.org/rfc/rfc5550#section-3.2"}}}


class Hostile(FakeImapSession):
    """A server whose greeting and capabilities carry markup (NOTIFY replaced, so the capability check fails)."""

    greeting_text = f"fake {HOSTILE} ready"
    capabilities = FakeImapSession.capabilities.replace(" NOTIFY", f" {HOSTILE}")
