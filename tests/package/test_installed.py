"""The suite as users get it: `python -m build` (sdist, then the wheel built from that sdist), the wheel
installed into a new virtualenv outside the checkout, `lemonade` run from a directory that is not the
checkout; and the CI recipes of examples/ci/ executed step by step with that installation.

The virtualenv gets the wheel itself (pip install --no-deps); its dependencies come from the test
environment through a path entry (a .pth line naming the test environment's site-packages, which adds the
folder but not the editable checkout that folder points at). So `conformance` is imported from the wheel,
never from the checkout: every test asserts it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conformance import __version__
from conformance.data import DATA_FOLDERS
from conformance.providers.dovecot import DovecotProvider
from conformance.schema import validate_results
from conformance.targets import write_target_file

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "examples" / "ci"
SELECT = "-k capability"  # the recipes' LEMONADE_SELECT, narrowed to one family so the test stays quick


@dataclass
class Installed:
    venv: Path
    bin: Path
    wheel: Path
    sdist: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LEMONADE_REPORTS")}
        env.update(PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200", LEMONADE_PROGRESS="lines")
        env.update(extra)
        return env

    def lemonade(self, *args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "lemonade"), *args], capture_output=True, text=True, cwd=cwd,
                              timeout=timeout, env=self.env(**env))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    p = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wheel, sdist = next(dist.glob("lemonade_conformance-*.whl")), next(dist.glob("lemonade_conformance-*.tar.gz"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                        "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(venv, venv / "bin", wheel, sdist)


@pytest.fixture(scope="module")
def mailserver(tmp_path_factory):
    """A real Dovecot the way a server project's CI starts its own server: named as the recipes' target."""
    with DovecotProvider(name="mailserver", keep_logs=tmp_path_factory.mktemp("mailserver-logs")) as target:
        yield target


def test_sdist_and_wheel_carry_the_data_templates_and_schema(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    with tarfile.open(installed.sdist) as t:
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for name, rel in DATA_FOLDERS.items():
        files = [f for f in (ROOT / rel).rglob("*") if f.is_file() and "__pycache__" not in f.parts] \
            if (ROOT / rel).is_dir() else []
        for f in files:
            inner = f.relative_to(ROOT / rel).as_posix()
            assert f"{rel}/{inner}" in in_sdist, f"sdist lacks {rel}/{inner}"
            assert f"conformance/_data/{name}/{inner}" in names, f"wheel lacks {name}/{inner}"
    assert any(n.startswith("conformance/_data/profiles/requirements/") for n in names)
    for needed in ("conformance/report/templates/report.html.j2", "conformance/report/templates/_style.css",
                   "conformance/schema/results.schema.json", "conformance/site/templates/index.html.j2",
                   "conformance/_data/servers/dovecot/dovecot.conf.j2", "conformance/_data/apt.d/core.txt",
                   "conformance/_data/profiles/presets/field.yaml", "conformance/intermediaries/real/pairs.yaml",
                   "conformance/intermediaries/real/templates/nginx.conf.j2"):
        assert needed in names, needed
    info = zipfile.ZipFile(installed.wheel).getinfo("conformance/_data/servers/cyrus/private-log.sh")
    assert info.external_attr >> 16 & 0o111, "the executable bit of a server script is lost"
    entry_points = zipfile.ZipFile(installed.wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "lemonade = conformance.cli:main" in entry_points
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert all(f"graft {rel}" in manifest for rel in DATA_FOLDERS.values()), "MANIFEST.in misses a data folder"


def test_installed_lemonade_works_from_any_directory(installed, mailserver, tmp_path):
    where = subprocess.run([str(installed.bin / "python"), "-c", "import conformance, conformance.data as d; "
                            "print(conformance.__file__); print(d.data_dir('profiles')); print(d.installed_from_wheel())"],
                           capture_output=True, text=True, cwd=tmp_path, env=installed.env())
    module, profiles, from_wheel = where.stdout.split()
    assert module.startswith(str(installed.venv)) and profiles.startswith(str(installed.venv)) and from_wheel == "True"

    v = installed.lemonade("--version", cwd=tmp_path)
    assert v.returncode == 0 and v.stdout.strip() == f"lemonade-conformance {__version__}"
    p = installed.lemonade("profiles", "list", "--format", "json", cwd=tmp_path)
    assert p.returncode == 0 and {"lemonade", "jmap", "imap-push"} <= {r["name"] for r in json.loads(p.stdout)["profiles"]}
    s = installed.lemonade("scenarios", "list", "--format", "json", cwd=tmp_path)
    assert s.returncode == 0 and {"nat-idle", "https-only", "kill"} <= {r["name"] for r in json.loads(s.stdout)}
    d = installed.lemonade("doctor", "--format", "json", cwd=tmp_path)
    doctor = json.loads(d.stdout)
    assert d.returncode == 0 and doctor["default_run_ready"] is True, d.stdout + d.stderr
    package = next(f for f in doctor["findings"] if f["part"].startswith("lemonade-conformance"))
    assert package["detail"] == "data from the wheel"

    # the embedded Dovecot, reports under the current directory
    embedded = installed.lemonade("run", "-k", "capability_code or store_capabilities", cwd=tmp_path)
    assert embedded.returncode == 1, embedded.stdout + embedded.stderr  # Dovecot 2.3 lacks CONVERT
    run_dir = (tmp_path / "reports" / "latest").resolve()
    # a target file naming a server this test started
    target = write_target_file(mailserver, tmp_path / "my.toml")
    external = installed.lemonade("run", "--target", str(target), "-k", "capability_code", "--output",
                                  str(tmp_path / "ext"), cwd=tmp_path)
    assert external.returncode == 0, external.stdout + external.stderr
    for out in (run_dir, tmp_path / "ext"):
        doc = json.loads((out / "results.json").read_text())
        assert validate_results(doc) == [] and doc["run"]["suite_version"] == __version__
        assert f"suite {__version__}" in (out / "index.html").read_text()
        assert f'<property name="suite_version" value="{__version__}" />' in (out / "junit.xml").read_text()
    assert {r["target"] for r in json.loads((tmp_path / "ext" / "results.json").read_text())["results"]} == {"mailserver"}
    assert not (ROOT / "reports" / run_dir.name).exists()  # nothing written into the checkout


# -- the CI recipes --------------------------------------------------------------------------------------
def github_steps() -> tuple[dict[str, str], list[str], list[str]]:
    """(workflow env, shard values, [shard step script, merge step script]) of the GitHub workflow."""
    wf = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    scripts = [st["run"] for job in wf["jobs"].values() for st in job["steps"]
               if "lemonade run" in st.get("run", "") or "lemonade merge" in st.get("run", "")]
    shards = wf["jobs"]["conformance"]["strategy"]["matrix"]["shard"]
    return {k: str(v) for k, v in wf["env"].items()}, shards, scripts


def gitlab_steps() -> tuple[dict[str, str], int, list[str]]:
    """(variables, parallel, [the script entries that run lemonade]) of the GitLab file."""
    ci = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())
    scripts = [line for job in ("conformance", "merge") for line in ci[job]["script"]
               if re.search(r"\blemonade (run|merge)\b", line)]
    variables = {k: str(v) for k, v in ci["variables"].items() if k.startswith("LEMONADE_")}
    return variables, ci["conformance"]["parallel"], scripts


def project(tmp_path: Path, mailserver, name: str, target=None) -> Path:
    """A server project's checkout as the recipes expect it: ci/lemonade-target.toml and the baseline."""
    d = tmp_path / name
    (d / "ci").mkdir(parents=True)
    shutil.copy(RECIPES / "lemonade-baseline.toml", d / "ci" / "lemonade-baseline.toml")
    write_target_file(target or mailserver, d / "ci" / "lemonade-target.toml")
    return d


def step(installed: Installed, script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A CI step as the runners execute it: bash with errexit and pipefail, the job's variables set."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=installed.env(**env))


def parallel_jobs(installed: Installed, script: str, cwd: Path, jobs: list[dict[str, str]],
                  **env: str) -> list[subprocess.CompletedProcess]:
    """The shard jobs of a job matrix, at the same time (as CI runs them), each with its own variables."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: step(installed, script, cwd, **env, **job), jobs))


def test_github_recipe_shards_merge_and_apply_the_baseline(installed, mailserver, tmp_path):
    env, shards, (shard_step, merge_step) = github_steps()
    env["LEMONADE_SELECT"] = SELECT
    env["SHARDS"] = str(len(shards))
    work = project(tmp_path, mailserver, "server")
    for shard, p in zip(shards, parallel_jobs(installed, shard_step, work, [{"SHARD": s} for s in shards], **env)):
        assert p.returncode == 0, p.stdout + p.stderr
        assert (work / "out" / f"shard-{shard.split('/')[0]}.exit").read_text().strip() in ("0", "1")
    counts = [len(json.loads((work / "out" / f"shard-{i}" / "results.json").read_text())["results"])
              for i in range(1, len(shards) + 1)]
    assert all(counts) and max(counts) - min(counts) <= 1  # a deterministic share each
    m = step(installed, merge_step, work, **env)
    # Dovecot lacks CONVERT: store_capabilities fails, the baseline makes it xfail: conformant
    assert m.returncode == 0 and "conformant" in m.stdout, m.stdout + m.stderr
    merged = json.loads((work / "report" / "results.json").read_text())
    assert len(merged["results"]) == sum(counts) and validate_results(merged) == []
    xfail = [r for r in merged["results"] if r["verdict"] == "xfail"]
    assert [r["check"] for r in xfail] == ["capability/store_capabilities"]
    assert (work / "report" / "index.html").is_file() and "<testsuite" in (work / "report" / "junit.xml").read_text()


def test_gitlab_recipe_fails_on_conformance_failures_and_treats_exit_2_as_broken_infrastructure(
        installed, mailserver, tmp_path):
    variables, parallel, (shard_script, merge_script) = gitlab_steps()
    variables["LEMONADE_SELECT"] = SELECT
    # without the baseline entry, Dovecot's missing CONVERT fails the job (exit 1)
    strict = project(tmp_path, mailserver, "strict")
    (strict / "ci" / "lemonade-baseline.toml").write_text("# no known failures\n")
    jobs = [{"CI_NODE_INDEX": str(i), "CI_NODE_TOTAL": str(parallel)} for i in range(1, parallel + 1)]
    for p in parallel_jobs(installed, shard_script, strict, jobs, **variables):
        assert p.returncode == 0, p.stdout + p.stderr
    m = step(installed, merge_script, strict, **variables)
    assert m.returncode == 1 and "conformance failures" in m.stdout, m.stdout + m.stderr
    merged = json.loads((strict / "report" / "results.json").read_text())
    assert [r["check"] for r in merged["results"] if r["verdict"] == "fail"] == ["capability/store_capabilities"]

    # the server is down (nothing listens on the target's ports): the shard says broken infrastructure
    with DovecotProvider(name="mailserver") as gone:
        down = project(tmp_path, mailserver, "down", target=gone)
    p = step(installed, shard_script, down, CI_NODE_INDEX="1", CI_NODE_TOTAL=str(parallel), **variables)
    assert p.returncode == 2 and "broken infrastructure" in p.stdout and "unreachable" in p.stderr, p.stdout + p.stderr
    assert (down / "out" / "shard-1.exit").read_text().strip() == "2"
    m = step(installed, merge_script, down, **variables)  # the merge refuses to judge incomplete shards
    assert m.returncode == 2 and "broken infrastructure" in m.stdout and not (down / "report").exists(), m.stdout
