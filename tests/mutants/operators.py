"""Mutation operators: small, deliberate faults in what a server says, to measure what the suite catches (tests only).

Each operator changes one thing a rule depends on, in one protocol, on the server->client leg. The functions are
sans-IO: IMAP operators take one complete response (``imapwire.Response``, literals included) and the verb of the
command it answers, and return the responses to send instead (none to drop it, two to duplicate it); SMTP operators
take one reply and the client's last command; HTTP operators take a JMAP response body (JSON, a download, or a chunk
of an event stream). ``tests/mutants/addon.py`` applies them on a live path; ``bench/mutants.py`` runs the suite
through each and prints the kill matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conformance.protocols.imapwire import Response


@dataclass(frozen=True)
class Operator:
    name: str
    protocol: str  # imap | smtp | jmap | any
    summary: str  # the fault, as the kill matrix shows it


OPERATORS = {op.name: op for op in (
    Operator("identity", "any", "nothing changed (the control: every verdict must equal the unmutated run's)"),
    # IMAP
    Operator("imap-drop-exists", "imap", "drop every '* n EXISTS' (new mail never announced)"),
    Operator("imap-duplicate-exists", "imap", "send every '* n EXISTS' twice"),
    Operator("imap-drop-vanished", "imap", "drop every '* VANISHED' (expunges lost on resync)"),
    Operator("imap-strip-modseq", "imap", "remove MODSEQ (n) from FETCH responses"),
    Operator("imap-strip-highestmodseq", "imap", "remove [HIGHESTMODSEQ n] response codes"),
    Operator("imap-strip-capability", "imap", "remove ESEARCH and CONTEXT=SEARCH from every capability list"),
    Operator("imap-rename-code", "imap", "rename [APPENDUID ...] to [APPENDID ...] (an unknown code)"),
    Operator("imap-drop-enabled", "imap", "drop '* ENABLED'"),
    Operator("imap-alter-literal-byte", "imap", "change one octet in the middle of every literal of 64 octets or more"),
    Operator("imap-truncate-literal", "imap", "shorten every literal of 64 octets or more by its last octet"),
    Operator("imap-reorder", "imap", "reverse the untagged responses that come before a tagged one in a segment"),
    Operator("imap-delay-push", "imap", "hold unsolicited untagged data (a push) for 3 s, past every promptness rule"),
    Operator("imap-status-change", "imap", "answer STORE and UID STORE with NO instead of OK"),
    # SMTP
    Operator("smtp-strip-starttls", "smtp", "remove STARTTLS from the EHLO reply"),
    Operator("smtp-refuse-starttls", "smtp", "answer STARTTLS with 454 instead of 220"),
    Operator("smtp-advertise-auth", "smtp", "offer AUTH PLAIN in the EHLO reply before TLS"),
    # JMAP
    Operator("jmap-drop-state-events", "jmap", "remove every 'state' event from EventSource streams"),
    Operator("jmap-alter-download", "jmap", "change one octet in the middle of every download"),
    Operator("jmap-rename-error", "jmap", "rename the method error unknownMethod to serverFail"),
    Operator("jmap-drop-session-member", "jmap", "remove eventSourceUrl from the Session"),
    Operator("jmap-status-change", "jmap", "answer request-level problems (4xx) with 500"),
)}

LITERAL_MIN = 64
_literal = re.compile(rb"(~?)\{(\d+)\}\r\n")
_modseq = re.compile(rb" ?MODSEQ \(\d+\)", re.I)
_highest = re.compile(rb"\[HIGHESTMODSEQ \d+\] ?", re.I)
_caps = re.compile(rb"(\* CAPABILITY [^\r\n]*|\[CAPABILITY [^\]\r\n]*\])", re.I)
_stripped_caps = re.compile(rb" (ESEARCH|CONTEXT=SEARCH)(?=[ \]\r\n]|$)", re.I)
UNSOLICITED = re.compile(rb"^\* (?:\d+ (?:EXISTS|EXPUNGE|FETCH)|VANISHED|STATUS|LIST|ESEARCH)\b", re.I)


def literal_parts(raw: bytes) -> list[tuple[int, int, int]]:
    """(position of the '{', start, end) of every literal in a response's raw octets."""
    out, pos = [], 0
    while (m := _literal.search(raw, pos)) is not None:
        start = m.end()
        end = start + int(m.group(2))
        out.append((m.start(1), start, end))
        pos = end
    return out


def _alter_literals(raw: bytes, *, truncate: bool) -> bytes:
    parts = literal_parts(raw)
    if not any(end - start >= LITERAL_MIN for _, start, end in parts):
        return raw
    out, pos = bytearray(), 0
    for brace, start, end in parts:
        lit = raw[start:end]
        if len(lit) >= LITERAL_MIN:
            if truncate:
                m = _literal.match(raw, brace)
                head = m.group(1) + b"{%d}\r\n" % (len(lit) - 1)
                out += raw[pos:brace] + head + lit[:-1]
            else:
                mid = len(lit) // 2
                flipped = b"X" if lit[mid:mid + 1] != b"X" else b"Y"
                out += raw[pos:start] + lit[:mid] + flipped + lit[mid + 1:]
            pos = end
    out += raw[pos:]
    return bytes(out)


def mutate_imap(name: str, resp: Response, verb: str) -> list[bytes]:
    """What to send instead of ``resp`` (the answer to a command ``verb`` when tagged) under operator ``name``."""
    raw, first = resp.raw, resp.first_line.upper()
    if name == "imap-drop-exists" and re.match(r"^\* \d+ EXISTS$", first):
        return []
    if name == "imap-duplicate-exists" and re.match(r"^\* \d+ EXISTS$", first):
        return [raw, raw]
    if name == "imap-drop-vanished" and first.startswith("* VANISHED"):
        return []
    if name == "imap-drop-enabled" and first.startswith("* ENABLED"):
        return []
    if name == "imap-strip-modseq" and re.match(r"^\* \d+ FETCH ", first):
        head, sep, rest = raw.partition(b"\r\n")
        return [_modseq.sub(b"", head) + sep + rest]
    if name == "imap-strip-highestmodseq":
        return [_highest.sub(b"", raw)]
    if name == "imap-strip-capability":
        return [_caps.sub(lambda m: _stripped_caps.sub(b"", m.group(0)), raw)]
    if name == "imap-rename-code":
        return [raw.replace(b"[APPENDUID ", b"[APPENDID ")]
    if name in ("imap-alter-literal-byte", "imap-truncate-literal") and resp.literals:
        return [_alter_literals(raw, truncate=name == "imap-truncate-literal")]
    if name == "imap-status-change" and not resp.is_untagged and not resp.is_continuation and resp.status == "OK" \
            and verb in ("STORE", "UID STORE"):
        tag, _, rest = raw.partition(b" OK")
        return [tag + b" NO" + rest]
    return [raw]


def reorder(batch: list[bytes]) -> list[bytes]:
    """imap-reorder: in a batch of responses, reverse each run of untagged responses that a tagged one ends."""
    out, run = [], []
    for raw in batch:
        if raw.startswith(b"* "):
            run.append(raw)
            continue
        out += run[::-1] if not raw.startswith(b"+") else run
        run = []
        out.append(raw)
    return out + run


def is_push(batch: list[bytes]) -> bool:
    """imap-delay-push: a batch of unsolicited change data with no tagged response in it (a push while idling)."""
    return bool(batch) and all(r.startswith(b"* ") for r in batch) and any(UNSOLICITED.match(r) for r in batch)


def mutate_smtp(name: str, reply: bytes, last_command: str, tls_seen: bool) -> bytes:
    """One SMTP reply (all its lines) under operator ``name``; ``last_command`` is the verb it answers."""
    if tls_seen:
        return reply
    if name == "smtp-strip-starttls" and last_command in ("EHLO", "LHLO"):
        lines = [ln for ln in reply.split(b"\r\n")[:-1] if ln[4:].upper() != b"STARTTLS"]
        return b"\r\n".join(ln[:3] + (b" " if i == len(lines) - 1 else b"-") + ln[4:]
                            for i, ln in enumerate(lines)) + b"\r\n"
    if name == "smtp-refuse-starttls" and last_command == "STARTTLS" and reply.startswith(b"220"):
        return b"454 4.7.0 TLS not available (mutated)\r\n"
    if name == "smtp-advertise-auth" and last_command in ("EHLO", "LHLO") and b"AUTH" not in reply.upper():
        first, _, rest = reply.partition(b"\r\n")
        return first[:3] + b"-" + first[4:] + b"\r\n250-AUTH PLAIN LOGIN\r\n" + rest if rest else \
            first[:3] + b"-" + first[4:] + b"\r\n250 AUTH PLAIN LOGIN\r\n"
    return reply


def mutate_json(name: str, path: str, status: int, body: bytes) -> tuple[int, bytes]:
    """A buffered JMAP response (status, body) under operator ``name``; ``path`` is the request's path."""
    if name == "jmap-alter-download" and "/download/" in path and len(body) > 1:
        mid = len(body) // 2
        return status, body[:mid] + (b"X" if body[mid:mid + 1] != b"X" else b"Y") + body[mid + 1:]
    if name == "jmap-rename-error":
        return status, body.replace(b'"unknownMethod"', b'"serverFail"')
    if name == "jmap-drop-session-member" and b'"eventSourceUrl"' in body and b'"apiUrl"' in body:
        return status, re.sub(rb'"eventSourceUrl"\s*:\s*"[^"]*"\s*,?', b"", body)
    if name == "jmap-status-change" and 400 <= status < 500 and b"urn:ietf:params:jmap:error:" in body:
        return 500, body
    return status, body


def drop_state_events(buffer: bytes) -> tuple[bytes, bytes]:
    """jmap-drop-state-events on an event stream: (what to forward, what to keep until more arrives). Whole events
    (blank-line terminated) named 'state' are removed; others pass."""
    out = bytearray()
    while True:
        m = re.search(rb"\r\n\r\n|\n\n|\r\r", buffer)
        if m is None:
            return bytes(out), buffer
        event, buffer = buffer[:m.end()], buffer[m.end():]
        if not re.search(rb"(?m)^event:\s*state\s*$", event):
            out += event
