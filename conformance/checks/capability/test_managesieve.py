"""ManageSieve (RFC 5804) as a window on the delivery agent (RFC 5550 3.3, 6): the SIEVE capability of the greeting."""

from __future__ import annotations

import re
import time

import pytest

from conformance.errors import ConformanceFailure, ServerTimeout
from conformance.transcript import printable

_item = re.compile(r'^"([^"]+)"(?: "([^"]*)")?\s*$')


def managesieve_capabilities(lines: list[str]) -> dict[str, str]:
    """'"SIEVE" "fileinto vacation"' lines -> {'SIEVE': 'fileinto vacation'} (names upper-cased), up to the OK line."""
    out: dict[str, str] = {}
    for line in lines:
        m = _item.match(line)
        if m:
            out[m.group(1).upper()] = m.group(2) or ""
    return out


def read_greeting(case, sock, label: str) -> list[str]:
    """The capability lines of a ManageSieve greeting up to its OK (a NO/BYE or silence is the server's fault)."""
    buf, lines = b"", []
    deadline = time.monotonic() + case.deadline
    while True:
        while b"\r\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerTimeout(f"no complete ManageSieve greeting within {case.deadline:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(4096)
            except (TimeoutError, OSError) as e:
                raise ServerTimeout(f"ManageSieve greeting not received: {e}") from e
            if not data:
                raise ConformanceFailure("the ManageSieve server closed the connection during its greeting")
            buf += data
            if len(buf) > 65536:
                raise ConformanceFailure("ManageSieve greeting longer than 64 KiB")
        raw, buf = buf.split(b"\r\n", 1)
        line = raw.decode("utf-8", "replace")
        case.transcript.add(case.path.leg, "S", printable(raw + b"\r\n"), len(raw) + 2, conn=label)
        if re.match(r"^(OK|NO|BYE)\b", line, re.I):
            if not line.upper().startswith("OK"):
                raise ConformanceFailure(f"ManageSieve greeting ended with {line!r}")
            return lines
        lines.append(line)


@pytest.mark.requirement("lemonade.mda.managesieve-extensions")
@pytest.mark.uses("managesieve")
def test_managesieve_lists_lemonade_extensions(case):
    """The SIEVE capability in the ManageSieve greeting lists every Sieve extension the Lemonade delivery agent must
    support (RFC 5550 3.3, 6): enotify, imap4flags, relational, vacation, variables and the i;unicode-casemap
    comparator."""
    case.require_endpoint("managesieve")
    sock = case.path.open("managesieve")
    case.on_cleanup(sock.close)
    caps = managesieve_capabilities(read_greeting(case, sock, "managesieve"))
    sieve = caps.get("SIEVE")
    if sieve is None:
        raise ConformanceFailure(f"the ManageSieve greeting has no SIEVE capability (RFC 5804 1.7): {sorted(caps)}")
    have = {e.lower() for e in sieve.split()}
    required = case.param("required")
    missing = [e for e in required if e.lower() not in have]
    case.measure("sieve_extensions", len(have), "")
    case.require("lemonade.mda.managesieve-extensions", not missing,
                 f"SIEVE capability lacks {', '.join(missing)} (RFC 5550 3.3 requires {', '.join(required)}; "
                 f"offered: {sieve})")
    case.passed(f"all {len(required)} required Sieve extensions offered ({len(have)} in all)")
