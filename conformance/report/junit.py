"""JUnit XML: one testcase per check x target x scenario, with the verdict of each requirement as properties.

One testcase per result (not per requirement) keeps JUnit's counts equal to the report's and the rerun
command per testcase; a testcase fails when its result does, i.e. when one of its requirements does, and
its properties ``verdict:<id>`` (and ``message:<id>`` when there is one) say which.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any

from ..verdicts import FAILING, requirement_verdicts, where_of

FAIL = FAILING


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters; what a server sent must not break the file
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else f"\\x{ord(ch):02x}" for ch in text)


def render_junit(doc: dict[str, Any]) -> str:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in doc["results"]:
        groups[f"{where_of(r)}|{r['scenario']}"].append(r)
    root = ET.Element("testsuites", name="lemonade", tests=str(len(doc["results"])))
    for name, results in sorted(groups.items()):
        suite = ET.SubElement(root, "testsuite", name=_clean(name), tests=str(len(results)),
                              failures=str(sum(r["verdict"] in FAIL for r in results)),
                              errors=str(sum(r["verdict"] == "error" for r in results)),
                              skipped=str(sum(r["verdict"] in ("skipped", "not-applicable", "xfail") for r in results)),
                              time=f"{sum(r['duration_s'] for r in results):.3f}")
        suite_props = ET.SubElement(suite, "properties")  # which suite judged: the version of every report
        ET.SubElement(suite_props, "property", name="suite_version",
                      value=_clean(str(doc.get("run", {}).get("suite_version", ""))))
        for r in results:
            tc = ET.SubElement(suite, "testcase", classname=_clean(f"{where_of(r)}.{r['scenario']}"),
                               name=_clean(r["check"]), time=f"{r['duration_s']:.3f}")
            props = ET.SubElement(tc, "properties")
            reqinfo = doc.get("requirements", {})
            for rid in r["requirements"]:
                ET.SubElement(props, "property", name="requirement", value=rid)
                if reqinfo.get(rid, {}).get("source"):
                    ET.SubElement(props, "property", name=f"source:{rid}", value=_clean(reqinfo[rid]["source"]))
            for rid, v in requirement_verdicts(r).items():
                ET.SubElement(props, "property", name=f"verdict:{rid}", value=v["verdict"])
                if v.get("message") and v["verdict"] != "pass":
                    ET.SubElement(props, "property", name=f"message:{rid}", value=_clean(v["message"])[:500])
            ET.SubElement(props, "property", name="verdict", value=r["verdict"])
            ET.SubElement(props, "property", name="target", value=_clean(r["target"]))
            ET.SubElement(props, "property", name="subject", value=_clean(r.get("subject") or r["target"]))
            ET.SubElement(props, "property", name="role", value=r.get("role", "server"))
            ET.SubElement(props, "property", name="scenario", value=_clean(r["scenario"]))
            if r.get("baseline"):
                b = r["baseline"]
                ET.SubElement(props, "property", name="baseline",
                              value=_clean(f"was {b.get('original_verdict')}: {b.get('reason', '')}"))
            ET.SubElement(props, "property", name="level", value=r.get("level", ""))
            ET.SubElement(props, "property", name="rerun", value=_clean(r.get("rerun", "")))
            msg = _clean(r.get("message", ""))
            if r["verdict"] in FAIL:
                el = ET.SubElement(tc, "failure", message=msg[:500], type=r["verdict"])
                el.text = _clean(evidence_summary(r))
            elif r["verdict"] == "error":
                el = ET.SubElement(tc, "error", message=msg[:500], type="harness-error")
                el.text = _clean(evidence_summary(r))
            elif r["verdict"] == "xfail":
                reason = (r.get("baseline") or {}).get("reason", "")
                ET.SubElement(tc, "skipped", message=_clean(f"xfail (expected by baseline: {reason}): {msg}")[:500])
            elif r["verdict"] in ("skipped", "not-applicable"):
                ET.SubElement(tc, "skipped", message=_clean(f"{r['verdict']}: {msg}")[:500])
            elif r["verdict"] in ("non-strict", "informational"):
                out = ET.SubElement(tc, "system-out")
                out.text = _clean(f"{r['verdict']}: {msg}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def evidence_summary(r: dict[str, Any], lines: int = 40) -> str:
    ev = r.get("evidence", {})
    verdicts = ", ".join(f"{rid} {v['verdict']}" for rid, v in requirement_verdicts(r).items())
    out = [r.get("message", ""), "", f"requirements: {verdicts}",
           f"target: {r['target']}  scenario: {r['scenario']}", f"rerun: {r.get('rerun', '')}"]
    if r.get("baseline"):
        out.append(f"baseline: was {r['baseline'].get('original_verdict')}; {r['baseline'].get('reason', '')}")
    meas = ev.get("measurements") or {}
    if meas:
        out.append("measurements: " + ", ".join(f"{k}={v.get('value')}{v.get('unit', '')}" for k, v in meas.items()))
    tr = ev.get("transcript") or []
    if tr:
        out.append("transcript (last lines):")
        for e in tr[-lines:]:
            text = e["text"].replace("\r\n", "\n").rstrip("\n").replace("\n", "\n" + " " * 24)
            out.append(f"t={e['t']:8.3f} {e.get('conn') or e['leg']:>10} {e['direction']}: {text}")
    return "\n".join(out)

