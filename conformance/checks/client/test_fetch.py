"""Fetch: a client asked to fetch a mailbox delivers every message in it, once (client.fetch.complete)."""

from __future__ import annotations

import pytest

from .support import client_timeline, delivered_once, play_failure


@pytest.mark.requirement("client.fetch.complete")
def test_fetch_complete(case, session, mailbox):
    """What the server holds (by Message-ID) is what the client delivers: nothing missing, nothing twice."""
    mids = mailbox.append_many("fetch", 5)
    play = session.play("fetch-once")
    missing, dups = delivered_once(session, mids)
    extra = [d.message_id for d in session.output.deliveries if d.message_id not in mids]
    case.measure("delivered", len(session.output.deliveries), "messages", expected=len(mids))
    ok = not missing and not dups and not extra
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: fetch-once",
                                            changes=dict(mailbox.appended)).as_dict("pass" if ok else "fail"))
    assert not missing, (f"client.fetch.complete: {len(missing)} of {len(mids)} messages in {mailbox.name} were never "
                         f"delivered ({', '.join(missing[:3])}); {play_failure(session, play)}")
    assert not dups, f"client.fetch.complete: delivered more than once: {dups}"
    assert not extra, f"client.fetch.complete: delivered messages the mailbox does not hold: {extra[:3]}"
    case.passed(f"{len(mids)} messages delivered once each in {play.ended_at - play.started_at:.2f} s "
                f"(exit {play.exit_code})")
