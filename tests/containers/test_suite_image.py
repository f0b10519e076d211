"""The suite's own image (lemonade/suite, scripts/build-images suite) run the way the README says:
`docker run --rm --network host -v $PWD/out:/out lemonade/suite run ...`, against the embedded Dovecot inside
the image and against a Dovecot on the host described by a target file in /out."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conformance import __version__
from conformance.providers.dovecot import DovecotProvider
from conformance.schema import validate_results
from conformance.targets import write_target_file

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def suite_image(engine):
    """Build (or reuse by tag) the image of this checkout."""
    from conformance.suite_image import build

    return build()


def docker_run(image: str, out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "host", "-v", f"{out}:/out", image, *args],
                          capture_output=True, text=True, timeout=600)


def outputs(run_dir) -> dict:
    for name in ("results.json", "junit.xml", "index.html"):
        assert (run_dir / name).is_file(), name
    doc = json.loads((run_dir / "results.json").read_text())
    assert validate_results(doc) == [] and doc["run"]["suite_version"] == __version__
    return doc


def test_suite_image_runs_the_embedded_dovecot_and_hands_files_to_the_owner_of_out(suite_image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 4321, 4321)  # a user's folder: what the run writes there must become theirs
    v = docker_run(suite_image, out, "--version")
    assert v.returncode == 0 and v.stdout.strip() == f"lemonade-conformance {__version__}", v.stdout + v.stderr
    p = docker_run(suite_image, out, "run", "-k", "capability_code or store_capabilities", "--output", "/out/run")
    assert p.returncode == 1, p.stdout + p.stderr  # Dovecot 2.3 lacks CONVERT: exit 1, as outside the image
    doc = outputs(out / "run")
    target = doc["run"]["targets"][0]
    assert target["name"] == "dovecot" and target["version"].startswith("Dovecot 2.3"), target
    assert {r["check"]: r["verdict"] for r in doc["results"]}["capability/capability_code_greeting_and_login"] == "pass"
    assert {(f.stat().st_uid, f.stat().st_gid) for f in (out / "run").rglob("*")} == {(4321, 4321)}


def test_suite_image_runs_against_a_target_on_the_host(suite_image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with DovecotProvider(name="host-dovecot") as target:
        write_target_file(target, out / "my.toml")
        p = docker_run(suite_image, out, "run", "--target", "/out/my.toml", "-k", "capability_code",
                       "--output", "/out/run")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = outputs(out / "run")
    assert {r["target"] for r in doc["results"]} == {"host-dovecot"} and doc["run"]["targets"][0]["provider"] == "external"
    assert "alice-Lemonade-pw1" not in (out / "run" / "results.json").read_text()  # the target file's password
