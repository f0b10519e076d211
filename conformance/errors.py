"""Who is at fault: the exception types that decide between the verdicts fail, error and not-applicable.

The rule the suite's own protocol clients apply (``protocols/connection.py``): when the peer under test stalls
past a deadline, resets, closes early, fails or stalls a TLS handshake, floods, or sends bytes that do not
parse, they raise a ``ConformanceFailure`` subclass (verdict fail); when the suite's own side fails (its
intermediary refuses or breaks, a local port clash, an OpenSSL or fixture problem, a bug), a ``HarnessError``
(verdict error). A target that is not there at all is ``TargetUnreachable`` (error, exit 2).
"""

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
    """The server closed or reset the connection while the client still expected data.

    ``how`` says which: ``eof`` (an orderly close), ``reset``, ``tls-unclean`` (TLS ended without
    close_notify), ``send`` (the connection was gone when the client wrote).
    """

    def __init__(self, message: str = "", how: str = "eof", *,
                 requirement: str | Iterable[str] | None = None) -> None:
        super().__init__(message, requirement=requirement)
        self.how = how


class ProtocolViolation(ConformanceFailure):
    """The server sent bytes that do not parse as the protocol."""


class Flood(ProtocolViolation):
    """The server sent more than a declared bound (responses while waiting for one answer, octets of one
    response, lines of one reply, fragments of one message): a protocol failure of its own, ended early."""


class TlsHandshakeFailed(ConformanceFailure):
    """The server failed, refused or stalled the TLS handshake (an alert, a reset, silence, non-TLS bytes)."""


class HarnessError(AboutRequirements, Exception):
    """The suite itself, its own proxy, or the network between failed. Verdict: error, never fail."""


class IntermediaryFailed(HarnessError):
    """One of the suite's own intermediaries raised while the case ran. Raised at teardown by the case, it
    outranks a call-phase ``fail``: what the server was seen doing went through a broken path."""


class TargetUnreachable(HarnessError):
    """The target's endpoint refused or never answered the connection attempt: the target is not there."""


class Blocked(HarnessError):
    """The suite's intermediary refused to carry a connection (e.g. https-only answered CONNECT with 403).

    A firewall decision, not a fault of the target: reachability checks catch it and record it as data.
    """

    def __init__(self, endpoint: str, status: int, reason: str, via: str) -> None:
        self.endpoint, self.status, self.reason, self.via = endpoint, status, reason, via
        super().__init__(f"{endpoint}: blocked by the intermediary ({via} answered {status} {reason})")


class BadInput(Exception):
    """A wrong target file, scenario string, profile name or option: a clear message and exit 2."""


class NotApplicable(AboutRequirements, Exception):
    """The target lacks an endpoint or capability that the selected profiles do not require."""
