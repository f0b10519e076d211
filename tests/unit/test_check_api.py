"""What checks may use: ``case.param()`` (the declared type, profile overrides, a borrowed requirement, the
``param.*`` measurement) as the only way to a parameter, and public APIs only (no private names of the
intermediaries, the providers or the case)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conformance.case import CaseContext
from conformance.catalog import PROFILES_DIR, load_catalog
from conformance.checks import CHECKS_DIR
from conformance.errors import HarnessError
from conformance.intermediaries.scenario import parse_scenario
from conformance.targets import Account, Endpoint, Target


def _case(catalog, requirements: list[str], profiles: list[str], depth: str = "quick") -> CaseContext:
    target = Target(name="t", endpoints={"imap": Endpoint("imap", "imap", "127.0.0.1", 1)},
                    accounts=[Account("alice", "pw")])
    return CaseContext(target=target, scenario=parse_scenario("direct"), catalog=catalog, requirements=requirements,
                       profiles=profiles, depth=depth, check="unit/param")


def test_param_returns_the_declared_type_and_records_it():
    case = _case(load_catalog(), ["mobile.reconnect.cost-follows-changes"], ["mobile-intermediary"])
    sizes, changes, bound = case.param("sizes"), case.param("changes"), case.param("bound_bytes")
    assert sizes == [50, 200] and isinstance(sizes, list)
    assert changes == 5 and type(changes) is int and type(bound) is int
    latency = _case(load_catalog(), ["mobile.push.prompt-through-intermediary"], []).param("max_latency")
    assert latency == 2.0 and type(latency) is float  # written as 2 in the YAML, declared float
    assert case.measurements["param.sizes"] == {"value": [50, 200], "unit": "",
                                                "requirement": "mobile.reconnect.cost-follows-changes"}


def test_param_from_a_borrowed_requirement_goes_through_the_profiles(tmp_path):
    root = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, root)
    prof = root / "imap-push.yaml"
    text = prof.read_text()
    assert "  - lemonade.store.idle-timely\n" in text
    prof.write_text(text.replace("  - lemonade.store.idle-timely\n", "  - lemonade.store.idle-timely\n"
                                 "  - {id: notify.between-commands, parameters: {wait: {quick: 7}}}\n"))
    catalog = load_catalog(root)
    case = _case(catalog, ["notify.flagchange-fetch"], ["imap-push"])
    wait = case.param("wait", requirement="notify.between-commands")
    assert wait == 7.0 and type(wait) is float, "the profile's override applies to a borrowed parameter too"
    assert case.measurements["param.wait"]["requirement"] == "notify.between-commands"
    assert _case(catalog, ["notify.flagchange-fetch"], []).param("wait", requirement="notify.between-commands") == 3.0


def test_param_unknown_is_a_harness_error():
    case = _case(load_catalog(), ["notify.flagchange-fetch"], [])
    with pytest.raises(HarnessError, match="defines parameter 'wait'"):
        case.param("wait")  # notify.flagchange-fetch has no parameters of its own
    with pytest.raises(HarnessError, match="no requirement"):
        case.param("wait", requirement="notify.no-such-thing")


def test_checks_read_parameters_only_through_case_param():
    """No cast around case.param() (it is typed) and no direct catalog.parameter() (it skips profile overrides and
    the param.* measurement) anywhere in the checks."""
    offenders = []
    for path in sorted(Path(CHECKS_DIR).rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(float|int|str|bool|list)\(\s*case\.param\(|catalog\.parameter\(", line):
                offenders.append(f"{path.relative_to(CHECKS_DIR)}:{n}: {line.strip()}")
            if re.search(r"for \w+ in case\.param\([^)]*\)\]", line) and "int(" in line:
                offenders.append(f"{path.relative_to(CHECKS_DIR)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _private_reaches(path: Path) -> list[str]:
    """Where a check module reaches past the public API of the intermediaries, the providers or the case."""
    import ast

    out = []
    tree = ast.parse(path.read_text())
    package = ["conformance", "checks", *path.parent.relative_to(CHECKS_DIR).parts]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if not module.startswith(("conformance.intermediaries", "conformance.providers")):
                continue
            if module == "conformance.intermediaries.addons.common":  # flows, Shared state, cut/blackhole
                out.append(f"{path.name}:{node.lineno}: imports the addons' flow machinery from {module}")
            out += [f"{path.name}:{node.lineno}: imports private {a.name} from {module}"
                    for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "path" and (
                node.attr.startswith("_") or node.attr in ("host", "addons")):
            out.append(f"{path.name}:{node.lineno}: reaches into the path's {node.attr}")
        if isinstance(node, ast.Attribute) and node.attr == "_clients":
            out.append(f"{path.name}:{node.lineno}: reaches into the case's client list")
    return out


def test_no_check_reaches_into_intermediaries_providers_or_the_case():
    offenders = [o for p in sorted(Path(CHECKS_DIR).rglob("*.py")) for o in _private_reaches(p)]
    assert not offenders, "\n".join(offenders)
