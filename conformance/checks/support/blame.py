"""Who is at fault when a helper's step goes wrong: the harness, a missing prerequisite, or the server.

Every helper of this layer takes ``blame``. A set-up step (selecting a scratch mailbox, a change made on a second
connection, reading the ground truth) is the harness's when it fails: verdict ``error``. A step the target cannot
take because it lacks something the check needs is a prerequisite: ``not-applicable``, with the reason. The step
the check judges is the server's: ``fail``. ``blame=None`` means no judgement at all: the helper returns what the
server answered and the caller reads it.
"""

from __future__ import annotations

from enum import Enum

from conformance.errors import ConformanceFailure, HarnessError, NotApplicable


class Blame(Enum):
    """Who is at fault, named by the verdict it gives."""

    HARNESS = "error"
    PREREQUISITE = "not-applicable"
    SERVER = "fail"

    def exception(self, message: str) -> Exception:
        """The exception that gives this verdict, carrying ``message`` (the reason, with the server's words)."""
        kind = {Blame.HARNESS: HarnessError, Blame.PREREQUISITE: NotApplicable, Blame.SERVER: ConformanceFailure}
        return kind[self](message)


def refuse(blame: Blame | None, message: str) -> None:
    """Raise the exception ``blame`` stands for (nothing when blame is None: the caller judges)."""
    if blame is not None:
        raise blame.exception(message)
