"""Adapter folders: strict metadata, `lemonade clients list`, and the contract check of the QUIC interop runner:
every installed adapter exits 127 for a case it does not know."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from conformance.errors import BadInput
from conformance.subjects.adapters import CLIENTS_DIR, find_adapter, load_adapters, read_adapter
from conformance.subjects.sandbox import NOT_SUPPORTED

ADAPTERS = load_adapters()


def test_at_least_six_clients_and_one_jmap():
    assert len(ADAPTERS) >= 6
    assert any("jmap" in a.protocols for a in ADAPTERS.values())


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_is_installed_and_refuses_unknown_cases(name, tmp_path):
    a = ADAPTERS[name]
    assert a.installed(), f"{name}: {a.program} is not installed (package {a.package}: scripts/setup.sh)"
    assert a.version(), f"{name}: no version from {a.version_command}"
    (tmp_path / "pw").write_text("x")
    env = {"PATH": "/usr/bin:/bin", "LEMONADE_CASE": f"random-{uuid.uuid4().hex[:6]}",
           "LEMONADE_SERVER_URL": "imap://localhost:1", "LEMONADE_USER": "u", "LEMONADE_PASSWORD_FILE": str(tmp_path / "pw"),
           "LEMONADE_CA_FILE": "", "LEMONADE_OUTPUT": str(tmp_path), "LEMONADE_STATE": str(tmp_path)}
    p = subprocess.run([str(a.executable)], env=env, capture_output=True, timeout=30)
    assert p.returncode == NOT_SUPPORTED, p.stderr.decode()[-300:]


def test_bad_metadata_is_bad_input(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "client.toml").write_text('name = "broken"\nprotocols = ["imap"]\nsupports = ["teleport"]\n')
    (d / "run").write_text("#!/bin/sh\n")
    with pytest.raises(BadInput, match="teleport"):
        read_adapter(d)
    with pytest.raises(BadInput, match="unknown client"):
        find_adapter("no-such-client")


def test_clients_list(lemonade):
    r = lemonade("clients", "list", "--format", "json")
    assert r.rc == 0
    import json

    rows = {row["name"]: row for row in json.loads(r.out)}
    assert set(ADAPTERS) <= set(rows) and all(rows[n]["version"] for n in ADAPTERS)


def test_unknown_client_is_exit_2(lemonade):
    r = lemonade("run", "--client", "no-such-client")
    assert r.rc == 2 and "unknown client" in r.err


def test_shared_code_folder_is_not_a_client():
    assert (CLIENTS_DIR / "_lib").is_dir() and "_lib" not in ADAPTERS
    assert all(Path(a.directory).name == n for n, a in ADAPTERS.items())
