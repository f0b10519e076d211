"""Who is at fault: the exception types that decide between the verdicts fail, error and not-applicable."""

from __future__ import annotations


class ConformanceFailure(AssertionError):
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


class HarnessError(Exception):
    """The suite itself, its own proxy, or the network between failed. Verdict: error, never fail."""


class IntermediaryFailed(HarnessError):
    """The suite's own intermediary raised during the case (``NetworkPath.harness_errors``): whatever the
    check concluded, the case is error, never a verdict on the target."""


class TargetUnreachable(HarnessError):
    """The target's endpoint refused or never answered the connection attempt."""


class BadInput(Exception):
    """A wrong target file, scenario string, profile name or option: a clear message and exit 2."""


class NotApplicable(Exception):
    """The target lacks an endpoint or capability that the selected profiles do not require."""
