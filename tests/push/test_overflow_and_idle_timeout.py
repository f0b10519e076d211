"""The NOTIFY overflow and IDLE timeout checks can fail, each for its own reason: stores that stop notifying in
silence or keep notifying after an overflow (tests/fakes/push.py), and servers that end IDLE early or without BYE,
the IDLE one run in this process at full depth with short test parameters."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack

import pytest

from conformance.catalog import load_catalog
from conformance.checks.push.test_idle import test_idle_timeout_announced_with_bye as idle_check
from conformance.targets import Account, Endpoint, Target
from tests.direct import assert_judged, run_check
from tests.fakes.imap import ACCOUNTS, FakeImapServer, FakeImapSession
from tests.fakes.push import (
    IdleEndsAfter,
    NotifyingMailStore,
    NotifyOverflowKeepsSending,
    NotifyOverflows,
    NotifyStopsSilently,
)

FLOOD = "push/notify_flood_reported_or_overflowed"
IDLE = "push/idle_timeout_announced_with_bye"


@pytest.mark.proves("push/notify_flood_reported_or_overflowed", "notify.overflow")
def test_notify_flood_fails_a_silent_stop_and_events_after_overflow(lemonade, tmp_path, prove):
    stores = {"reports-all": NotifyingMailStore, "overflows": NotifyOverflows, "stops-silently": NotifyStopsSilently,
              "keeps-sending": NotifyOverflowKeepsSending}
    args = ["run", "-n", "2", "-k", "notify_flood"]
    with ExitStack() as stack:
        for name, session in stores.items():
            fake = stack.enter_context(FakeImapServer(session, timeout=60))  # the watcher sends nothing for a while
            args += ["--target", str(fake.target_file(tmp_path, name=name))]
        run = lemonade(*args)
    assert_judged(run, FLOOD, "notify.overflow", "pass", target="reports-all")
    assert_judged(run, FLOOD, "notify.overflow", "pass", target="overflows")
    prove(run, FLOOD, "notify.overflow", "no NOTIFICATIONOVERFLOW came: notifications stopped in silence",
          target="stops-silently")
    prove(run, FLOOD, "notify.overflow", "must behave as NOTIFY NONE, but got '* ", target="keeps-sending")


def short_catalog(idle_for: float, grace: float):
    """The catalog with the IDLE timeout check's full-depth parameters shortened for a test."""
    catalog = load_catalog()
    params = catalog.requirements["idle.timeout-while-idle"].parameters
    params["idle_for"] = dataclasses.replace(params["idle_for"], full=idle_for)
    params["grace"] = dataclasses.replace(params["grace"], full=grace)
    return catalog


def idle_run(session):
    """The IDLE timeout check run in this process at full depth (idle 2 s, grace 1.5 s) against a fake ``session``."""
    with FakeImapServer(session) as fake:
        target = Target(name="fake-idle", endpoints={"imap": Endpoint("imap", "imap", "127.0.0.1", fake.port)},
                        accounts=[Account(u, p) for u, p in ACCOUNTS])
        return run_check(idle_check, target, depth="full", catalog=short_catalog(idle_for=2.0, grace=1.5))


@pytest.mark.proves("push/idle_timeout_announced_with_bye", "idle.timeout-while-idle")
@pytest.mark.parametrize("session,words", [
    (type("Drops", (IdleEndsAfter,), {"after": 3.0}), "closed after 3 s of IDLE without an untagged BYE"),
    (type("ByeEarly", (IdleEndsAfter,), {"after": 0.5, "bye": True}), "before 2 s"),
])
def test_idle_timeout_check_fails_at_full_depth(session, words, prove):
    prove(idle_run(session), IDLE, "idle.timeout-while-idle", words)


@pytest.mark.parametrize("session", [type("ByeLate", (IdleEndsAfter,), {"after": 2.5, "bye": True}), FakeImapSession])
def test_idle_timeout_check_passes_at_full_depth(session):
    assert_judged(idle_run(session), IDLE, "idle.timeout-while-idle", "pass")
