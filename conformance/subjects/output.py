"""What a client delivered: the output folder read as messages by Message-ID (sans-IO parsing of bytes).

A message file is ``*.eml`` anywhere under the folder, or any file in a Maildir ``cur``/``new`` folder
(mbsync, offlineimap and interimap keep a Maildir). Hidden files and ``tmp`` folders are not messages.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


@dataclass(frozen=True)
class Delivery:
    t: float  # case clock: when the file was written (its mtime mapped onto the case clock)
    path: str
    message_id: str  # "" when the file has no Message-ID header
    size: int


def message_id(head: bytes) -> str:
    """The Message-ID of a message's header block (angle brackets kept), or ''."""
    value = _PARSER.parsebytes(head, headersonly=True).get("Message-ID", "")
    return " ".join(str(value).split())


def is_message_file(rel: Path) -> bool:
    if any(part.startswith(".") for part in rel.parts) or "tmp" in rel.parts[:-1]:
        return False
    return rel.suffix == ".eml" or (len(rel.parts) >= 2 and rel.parts[-2] in ("cur", "new"))


@dataclass
class OutputFolder:
    """Scans a client's output folder; each message file is seen once, at the time its mtime says."""

    root: Path
    clock_offset: float  # case clock = wall clock - clock_offset
    deliveries: list[Delivery] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def scan(self) -> list[Delivery]:
        new = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = Path(dirpath) / name
                rel = p.relative_to(self.root)
                # Maildir clients rename files when flags change (cur/1234,U=1:2,S): key by the unique part
                key = str(rel.parent / name.split(":", 1)[0])
                if key in self._seen or not is_message_file(rel):
                    continue
                try:
                    st = p.stat()
                    with open(p, "rb") as f:
                        head = f.read(65536).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
                except OSError:
                    continue
                self._seen.add(key)
                d = Delivery(round(st.st_mtime - self.clock_offset, 4), str(rel), message_id(head), st.st_size)
                new.append(d)
        new.sort(key=lambda d: d.t)
        self.deliveries += new
        return new

    def counts(self) -> Counter:
        return Counter(d.message_id for d in self.deliveries)

    def first(self, mid: str) -> Delivery | None:
        return next((d for d in sorted(self.deliveries, key=lambda d: d.t) if d.message_id == mid), None)
