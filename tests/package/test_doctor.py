"""`lemonade doctor` on this machine (the default run can work: exit 0), and on the same machine with the
programs hidden from PATH (no dovecot, no dpkg: exit 1, the missing part named with how to install it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conformance.doctor import Finding, apt_lists, dpkg_missing, install_everything

ROOT = Path(__file__).resolve().parents[2]


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env or dict(os.environ, COLUMNS="200"))


def test_doctor_on_this_machine_reports_what_the_default_run_needs():
    p = doctor("--format", "json")
    found = json.loads(p.stdout)
    assert p.returncode == 0 and found["default_run_ready"] is True, p.stdout
    parts = {f["part"]: f for f in found["findings"]}
    dovecot = parts["embedded Dovecot (the default target)"]
    version = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.split()[0]
    assert dovecot["ok"] and f"Dovecot {version}" in dovecot["detail"] and dovecot["default_run"]
    assert any(p.startswith("Cyrus (cyrus-push)") for p in parts) and "container engine" in parts
    assert {"real intermediary: nginx", "real intermediary: squid", "client: fetchmail"} <= set(parts)
    for f in found["findings"]:  # a missing part always says how to get it
        assert f["ok"] or f["fix"], f
    text = doctor()
    assert text.returncode == 0 and "the default run (embedded Dovecot) can run here" in text.stdout


def test_doctor_without_dovecot_exits_1_and_names_the_fix():
    env = dict(os.environ, PATH=str(Path(sys.executable).parent), COLUMNS="200")  # no dovecot, no dpkg-query
    p = doctor("--format", "json", env=env)
    found = json.loads(p.stdout)
    assert p.returncode == 1 and found["default_run_ready"] is False
    dovecot = next(f for f in found["findings"] if f["part"] == "embedded Dovecot (the default target)")
    assert dovecot["status"] == "MISSING" and "dovecot-core" in dovecot["fix"], dovecot
    text = doctor(env=env)
    assert text.returncode == 1 and "the default run cannot work here" in text.stdout


def test_missing_debian_packages_and_one_command_for_everything():
    assert dpkg_missing(["dovecot-core", "lemonade-no-such-package"]) == ["lemonade-no-such-package"]
    assert set(apt_lists()) >= {"core", "containers", "jmap", "reports"}
    found = [Finding("a", "x", False, "", "sudo apt-get install -y --no-install-recommends p1", apt=["p1"]),
             Finding("b", "y", False, "", "sudo apt-get install -y --no-install-recommends p2 && sudo bash build.sh push",
                     apt=["p2"]),
             Finding("c", "z", False, "", "bash scripts/build-images dovecot-2.4"),
             Finding("d", "z", False, "", "bash scripts/build-images suite"),
             Finding("e", "w", True, "fine")]
    assert install_everything(found) == ("sudo apt-get install -y --no-install-recommends p1 p2 && sudo bash build.sh "
                                         "push && bash scripts/build-images dovecot-2.4 suite")
