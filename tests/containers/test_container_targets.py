"""Container targets end to end: images from servers/<name>/ on debootstrapped bases, started by the
container provider with testcontainers, reached on 127.0.0.1, stopped without leftovers."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest

from conformance.providers.container import ContainerProvider
from conformance.providers.engine import docker_client
from conformance.providers.images import IMAGES

pytestmark = pytest.mark.container


def _containers_of(tag: str) -> list:
    return docker_client().containers.list(all=True, filters={"ancestor": tag})


@pytest.mark.parametrize("name,version", [("dovecot-2.4", "Dovecot 2.4."), ("dovecot-2.3", "Dovecot 2.3.")])
def test_provider_serves_imap_and_submission_on_loopback_and_cleans_up(dovecot_images, name, version, tmp_path):
    prov = ContainerProvider(name, keep_logs=tmp_path / "logs")
    target = prov.start()
    workdir = target.workdir
    cid = prov.container.get_wrapped_container().id
    try:
        assert target.provider == "container" and target.version.startswith(version), target.version
        assert target.settings["image"] == IMAGES[name].tag()
        assert {ep.host for ep in target.endpoints.values()} == {"127.0.0.1"}
        ep = target.endpoints["imap"]
        m = imaplib.IMAP4(ep.host, ep.port, timeout=10)
        m.starttls(ssl_context=ssl._create_unverified_context())
        user, pw = target.accounts[0].username, target.accounts[0].password
        m.login(user, pw)
        typ, boxes = m.list()
        assert typ == "OK" and any(b"\\Drafts" in b for b in boxes), boxes
        m.logout()
        sub = target.endpoints["submission"]
        with smtplib.SMTP(sub.host, sub.port, timeout=10) as s:
            code, _ = s.ehlo("lemonade.test")
            assert code == 250 and s.has_extn("starttls")
    finally:
        prov.stop()
    assert cid not in {c.id for c in _containers_of(target.settings["image"])}, "the container was not removed"
    assert not workdir.exists(), "the provider's directory was not removed"
    assert (tmp_path / "logs" / f"{name}-dovecot.log").is_file(), "server log not kept"


def test_matrix_run_shows_where_dovecot_24_and_23_differ(dovecot_images, lemonade):
    run = lemonade("run", "--target", "dovecot-2.4", "--target", "dovecot", "-k", "capabilit or ehlo or burl")
    assert run.rc in (0, 1), run.out + run.err
    doc = run.results
    targets = {t["name"]: t for t in doc["run"]["targets"]}
    assert set(targets) == {"dovecot-2.4", "dovecot"}
    assert targets["dovecot-2.4"]["provider"] == "container" and targets["dovecot-2.4"]["version"].startswith("Dovecot 2.4.")
    assert targets["dovecot"]["provider"] == "local" and targets["dovecot"]["version"].startswith("Dovecot 2.3.")
    by = {(r["check"], r["target"]): r for r in doc["results"]}
    checks = {r["check"] for r in doc["results"]}
    assert all((c, t) in by for c in checks for t in targets), "every check ran on both targets"
    caps24 = by[("capability/store_capabilities", "dovecot-2.4")]["message"]
    caps23 = by[("capability/store_capabilities", "dovecot")]["message"]
    # the observed difference: Dovecot 2.4.1 no longer advertises URLAUTH (2.3 does) and adds REPLACE/INPROGRESS
    assert "URLAUTH" in caps24.split("(CAPABILITY")[0] and "URLAUTH" not in caps23.split("(CAPABILITY")[0], (caps24, caps23)
    assert "REPLACE" in caps24 and "REPLACE" not in caps23


def test_unknown_image_name_is_refused():
    with pytest.raises(Exception, match="no container image"):
        ContainerProvider("dovecot-9.9")


def test_image_tags_hash_the_build_context():
    spec = IMAGES["dovecot-2.4"]
    assert spec.tag() == spec.tag() and spec.tag().startswith("lemonade/dovecot-2.4:")
    assert IMAGES["dovecot-2.3"].tag() != spec.tag()


def test_every_image_directory_has_a_dockerfile_and_entrypoint():
    for spec in IMAGES.values():
        assert (spec.directory / "Dockerfile").is_file(), spec.directory
        assert (spec.directory / "entrypoint.sh").is_file(), spec.directory
        assert f"lemonade/base:{spec.suite}" in (spec.directory / "Dockerfile").read_text()


def test_dockerd_up_is_idempotent_when_an_engine_answers(engine):
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        p = subprocess.run(["bash", str(root / "scripts" / "dockerd-up")], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "dockerd running" not in p.stdout, "started a second engine although one answered"


@pytest.mark.parametrize("name", ["dovecot-2.4", "dovecot-2.3"])
def test_two_instances_of_one_image_run_side_by_side(dovecot_images, name):
    """Host networking: each instance must listen only on its own free ports (xdist workers, parallel runs)."""
    first, second = ContainerProvider(name), ContainerProvider(name)
    try:
        a, b = first.start(attempts=1), second.start(attempts=1)
        for t in (a, b):
            ep = t.endpoints["imap"]
            m = imaplib.IMAP4(ep.host, ep.port, timeout=10)
            m.logout()
        assert a.endpoints["imap"].port != b.endpoints["imap"].port
    finally:
        first.stop()
        second.stop()
