"""Test-only intermediary that rewrites IMAP responses, to prove the reconnect checks fail when a server
leaves out what RFC 7162 demands. Not part of the product: it emulates a non-conforming server.

Options: ``rewrite_drop_vanished`` removes every ``* VANISHED`` line; ``rewrite_strip_modseq`` removes the
``MODSEQ (n)`` item from FETCH responses; ``rewrite_vanished_last`` moves VANISHED lines after the FETCH lines
of the same segment; ``rewrite_pad_exists`` adds one untagged OK line per message after ``* n EXISTS`` (a
server whose SELECT costs grow with the mailbox); ``rewrite_strip_highestmodseq`` removes [HIGHESTMODSEQ n]
codes; ``rewrite_constant_modseq`` reports every FETCH MODSEQ as 1 (a server whose mod-sequences do not
grow); ``rewrite_drop_enabled`` removes ``* ENABLED`` lines; ``rewrite_close_highestmodseq`` adds [HIGHESTMODSEQ 1] to
Dovecot's tagged OK of CLOSE; ``rewrite_drop_fetch`` removes every ``* n FETCH`` line (a server whose QRESYNC
SELECT forgets the changes since the client's modseq). Only works on cleartext IMAP (a target without STARTTLS).
Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s tests/reconnect/rewriter.py
--set rewrite_drop_vanished=true``.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from mitmproxy import ctx, tcp

from conformance.intermediaries.addons.common import RawTcp

_vanished = re.compile(rb"^\* VANISHED[^\r\n]*\r\n", re.M | re.I)
_exists = re.compile(rb"^\* (\d+) EXISTS\r\n", re.M)
_highest = re.compile(rb"\[HIGHESTMODSEQ \d+\] ?")
_enabled = re.compile(rb"^\* ENABLED[^\r\n]*\r\n", re.M | re.I)
_fetch_line = re.compile(rb"^\* \d+ FETCH [^\r\n{]*\r\n", re.M | re.I)
_tagged = re.compile(rb"^[A-Za-z]\d+ ", re.M)
_modseq_value = re.compile(rb"(^\* \d+ FETCH \([^\r\n]*?)MODSEQ \(\d+\)", re.M | re.I)
_modseq = re.compile(rb"^(\* \d+ FETCH \([^\r\n]*?) ?MODSEQ \(\d+\)", re.M | re.I)
_close_ok = re.compile(rb"^([A-Za-z]\d+) OK (Close completed)", re.M)


class RewriteResponses:
    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}  # an incomplete last line per connection, sent with the next segment

    def load(self, loader) -> None:
        loader.add_option("rewrite_drop_vanished", bool, False, "Drop every '* VANISHED' response line.")
        loader.add_option("rewrite_strip_modseq", bool, False, "Remove 'MODSEQ (n)' from FETCH responses.")
        loader.add_option("rewrite_vanished_last", bool, False, "Move VANISHED lines after the FETCH lines.")
        loader.add_option("rewrite_strip_highestmodseq", bool, False, "Remove [HIGHESTMODSEQ n] response codes.")
        loader.add_option("rewrite_drop_enabled", bool, False, "Drop every '* ENABLED' response line.")
        loader.add_option("rewrite_constant_modseq", bool, False, "Report every FETCH MODSEQ as MODSEQ (1).")
        loader.add_option("rewrite_pad_exists", bool, False, "Add one untagged OK line per message after EXISTS.")
        loader.add_option("rewrite_close_highestmodseq", bool, False, "Add [HIGHESTMODSEQ 1] to the tagged OK of CLOSE.")
        loader.add_option("rewrite_drop_fetch", bool, False, "Drop every '* n FETCH' line (without literals).")

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client:
            return
        cid = flow.client_conn.id
        data = self.held.pop(cid, b"") + m.content
        cut = data.rfind(b"\r\n") + 2
        data, rest = data[:cut], data[cut:]
        if rest:
            self.held[cid] = rest
        if ctx.options.rewrite_drop_vanished:
            data = _vanished.sub(b"", data)
        if ctx.options.rewrite_strip_modseq:
            for _ in range(8):  # several MODSEQ items per line are not expected; bounded anyway
                data, n = _modseq.subn(rb"\1", data)
                if not n:
                    break
        if ctx.options.rewrite_constant_modseq:
            data = _modseq_value.sub(rb"\1MODSEQ (1)", data)
        if ctx.options.rewrite_strip_highestmodseq:
            data = _highest.sub(b"", data)
        if ctx.options.rewrite_close_highestmodseq:
            data = _close_ok.sub(rb"\1 OK [HIGHESTMODSEQ 1] \2", data)
        if ctx.options.rewrite_drop_enabled:
            data = _enabled.sub(b"", data)
        if ctx.options.rewrite_drop_fetch:
            data = _fetch_line.sub(b"", data)
        if ctx.options.rewrite_vanished_last:
            lines = _vanished.findall(data)
            if lines:
                data = _vanished.sub(b"", data)
                t = _tagged.search(data)
                at = t.start() if t else len(data)
                data = data[:at] + b"".join(lines) + data[at:]
        if ctx.options.rewrite_pad_exists:
            data = _exists.sub(lambda mm: mm.group(0) + b"* OK [X-LEMONADE-PAD] per-message chatter\r\n"
                               * min(int(mm.group(1)), 100000), data)
        m.content = data


@contextmanager
def rewriting_target(directory: Path, **rewrite: bool):
    """A cleartext embedded Dovecot behind the rewriting proxy; yields the path of a target file for it."""
    from conformance.intermediaries.host import ProxyHost
    from conformance.providers.base import free_port
    from conformance.providers.dovecot import DovecotProvider
    from conformance.targets import Endpoint, write_target_file
    from conformance.transcript import Transcript

    prov = DovecotProvider(settings={"ssl": "no", "disable_plaintext_auth": "no"}, keep_logs=directory / "logs")
    target = prov.start()
    host = ProxyHost(Transcript())
    try:
        imap = target.endpoint("imap")
        mode = f"reverse:tcp://{imap.host}:{imap.port}@127.0.0.1:{free_port()}"
        listen = host.start([mode], [RawTcp(), RewriteResponses()],
                            {f"rewrite_{k}": v for k, v in rewrite.items()})
        h, p = next(iter(listen.values()))
        target.endpoints = {"imap": Endpoint("imap", "imap", h, p)}
        target.name = "dovecot-rewritten"
        yield write_target_file(target, directory / "rewritten.toml")
    finally:
        host.stop()
        prov.stop()


addons = [RawTcp(), RewriteResponses()]
