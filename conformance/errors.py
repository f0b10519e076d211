"""Who is at fault: the exception types that decide between the verdicts fail, error and not-applicable."""

from __future__ import annotations

from collections.abc import Iterable


class AboutRequirements:
    """Mixin: an exception may name the requirement id(s) it is about (``requirement="uidplus.appenduid"``).

    Such an exception gives its verdict only to the requirements it names; one that names none gives it to
    every requirement of the check not judged yet (conformance/verdicts.py).
    """

    requirements: tuple[str, ...] = ()

    def __init__(self, *args: object, requirement: str | Iterable[str] | None = None) -> None:
        super().__init__(*args)
        if requirement is not None:
            self.requirements = (requirement,) if isinstance(requirement, str) else tuple(requirement)


class ConformanceFailure(AboutRequirements, AssertionError):
    """The server did something a requirement forbids (or failed to do what it must). Verdict: fail.

    Raised by clients when the server stalls past a deadline, closes early or sends garbage, and by
    checks through plain ``assert``. Always carries evidence through the case's transcript.
    """


class ServerTimeout(ConformanceFailure):
    """The server did not answer within the deadline."""


class ServerClosed(ConformanceFailure):
    """The server closed the connection while the client still expected data."""


class ProtocolViolation(ConformanceFailure):
    """The server sent bytes that do not parse as the protocol."""


class HarnessError(AboutRequirements, Exception):
    """The suite itself, its own proxy, or the network between failed. Verdict: error, never fail."""


class IntermediaryFailed(HarnessError):
    """One of the suite's own intermediaries raised while the case ran. Raised at teardown by the case, it
    outranks a call-phase ``fail``: what the server was seen doing went through a broken path."""


class TargetUnreachable(HarnessError):
    """The target's endpoint refused or never answered the connection attempt."""


class BadInput(Exception):
    """A wrong target file, scenario string, profile name or option: a clear message and exit 2."""


class NotApplicable(AboutRequirements, Exception):
    """The target lacks an endpoint or capability that the selected profiles do not require."""
