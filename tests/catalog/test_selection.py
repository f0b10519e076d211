"""`--profile` selects exactly the checks that cover the profile's requirements; several profiles combine."""

import os
from pathlib import Path

import pytest

from conformance.catalog import load_catalog
from conformance.checks import CHECKS_DIR, index

ROOT = Path(__file__).resolve().parents[2]


class _Kept:
    """A pytest plugin object that remembers the items left after the lemonade plugin's selection."""

    def __init__(self) -> None:
        self.items: list = []

    def pytest_collection_finish(self, session) -> None:
        self.items = list(session.items)


def collected(tmp_path, *profiles: str) -> set[str]:
    """Check ids (family/name) the plugin keeps for these profiles: an in-process --collect-only, nothing runs."""
    args = [str(CHECKS_DIR), "-p", "conformance.plugin", "-p", "no:cacheprovider", "--collect-only", "-q",
            "--rootdir", str(CHECKS_DIR), "-c", os.devnull, "--lemonade-output", str(tmp_path / "out")]
    for p in profiles:
        args += ["--lemonade-profile", p]
    kept = _Kept()
    rc = pytest.main(args, plugins=[kept])
    assert rc in (0, 5), f"collection failed with exit {rc}"
    return {f"{Path(str(item.fspath)).parent.name}/{item.originalname.removeprefix('test_')}" for item in kept.items}


def expected(*profiles: str) -> set[str]:
    ids = load_catalog().ids_for(list(profiles))
    return {c.check for c in index() if set(c.requirements) & ids}


@pytest.fixture(scope="module")
def selections(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("selection")
    return {key: collected(tmp, *key) for key in [("lemonade",), ("transport-security",), ("imap-push",),
                                                  ("imap-push", "envelope-security"), ("envelope-security",), ()]}


def test_profile_selects_exactly_its_checks(selections):
    for key in [("lemonade",), ("imap-push",), ("envelope-security",)]:
        assert selections[key] == expected(*key), key
    assert "capability/idle_notification_is_prompt" in selections[("imap-push",)]
    assert "capability/store_capabilities" not in selections[("imap-push",)]


def test_transport_security_selects_no_capability_check(selections):
    assert not {c for c in selections[("transport-security",)] if c.startswith("capability/")}


def test_several_profiles_select_the_union(selections):
    both = selections[("imap-push", "envelope-security")]
    assert both == selections[("imap-push",)] | selections[("envelope-security",)]
    assert selections[("imap-push",)] < both and selections[("envelope-security",)] < both


def test_no_profile_means_every_profile(selections):
    # every server check; the client checks run only when a run judges clients (--client), the load check
    # (scale/) only under `lemonade load`
    assert selections[()] == {c.check for c in index() if not c.check.startswith(("client/", "scale/"))}


def test_run_with_a_profile_none_of_whose_checks_match_selects_nothing(lemonade):
    """`-k capability` under transport-security: no capability check covers it, so nothing runs (exit 2)."""
    run = lemonade("run", "--profile", "transport-security", "-k", "store_capabilities or keywords")
    assert run.rc == 2 and "nothing was selected" in run.err
