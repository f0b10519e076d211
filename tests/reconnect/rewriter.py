"""Test-only intermediary that rewrites IMAP responses, to prove the reconnect checks fail when a server
leaves out what RFC 7162 demands. Not part of the product: it emulates a non-conforming server.

Options: ``rewrite_drop_vanished`` removes every ``* VANISHED`` line; ``rewrite_strip_modseq`` removes the
``MODSEQ (n)`` item from FETCH responses. Only works on cleartext IMAP (a target without STARTTLS).
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
_modseq = re.compile(rb"^(\* \d+ FETCH \([^\r\n]*?) ?MODSEQ \(\d+\)", re.M | re.I)


class RewriteResponses:
    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}  # an incomplete last line per connection, sent with the next segment

    def load(self, loader) -> None:
        loader.add_option("rewrite_drop_vanished", bool, False, "Drop every '* VANISHED' response line.")
        loader.add_option("rewrite_strip_modseq", bool, False, "Remove 'MODSEQ (n)' from FETCH responses.")

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
        m.content = data


@contextmanager
def rewriting_target(directory: Path, *, drop_vanished: bool = False, strip_modseq: bool = False):
    """A cleartext embedded Dovecot behind the rewriting proxy; yields the path of a target file for it."""
    from conformance.intermediaries.host import ProxyHost, free_port
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
                            {"rewrite_drop_vanished": drop_vanished, "rewrite_strip_modseq": strip_modseq})
        h, p = next(iter(listen.values()))
        target.endpoints = {"imap": Endpoint("imap", "imap", h, p)}
        target.name = "dovecot-rewritten"
        yield write_target_file(target, directory / "rewritten.toml")
    finally:
        host.stop()
        prov.stop()


addons = [RawTcp(), RewriteResponses()]
