"""Submission client (smtplib) whose every line lands in the case transcript, credentials redacted."""

from __future__ import annotations

import smtplib
import socket
import ssl

from ..errors import ServerClosed, ServerTimeout, TargetUnreachable
from ..transcript import Transcript, printable


class CapturingSMTP(smtplib.SMTP):
    """smtplib.SMTP that records the wire in a Transcript. Deadlines come from ``timeout``."""

    def __init__(self, host: str, port: int, *, transcript: Transcript, timeout: float = 10.0,
                 label: str = "smtp", leg: str = "direct") -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()
        self.label = label
        self.leg = leg
        self.bytes_sent = 0
        self._host_port = (host, port)
        super().__init__(timeout=timeout, local_hostname="client.test")
        self._host = "localhost"  # TLS server name: test certificates name localhost
        try:
            self.greeting_code, self.greeting_msg = self.connect(host, port)
        except (ConnectionRefusedError, socket.gaierror) as e:
            raise TargetUnreachable(f"cannot connect to submission at {host}:{port}: {e}") from e
        except (socket.timeout, TimeoutError) as e:
            raise ServerTimeout(f"{label}: no SMTP greeting from {host}:{port} within {timeout} s") from e
        except smtplib.SMTPServerDisconnected as e:
            raise ServerClosed(f"{label}: server closed before the greeting: {e}") from e
        self._host = "localhost"

    def send(self, s) -> None:  # type: ignore[override]
        data = s.encode("ascii") if isinstance(s, str) else s
        self.transcript.add(self.leg, "C", self.redactor.client(printable(data)), len(data), conn=self.label)
        self.bytes_sent += len(data)
        super().send(data)

    def getreply(self):  # type: ignore[override]
        try:
            code, msg = super().getreply()
        except (socket.timeout, TimeoutError) as e:
            raise ServerTimeout(f"{self.label}: no SMTP reply within {self.timeout} s") from e
        lines = msg.decode("utf-8", "replace").splitlines() or [""]
        text = "\r\n".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines))
        self.transcript.add(self.leg, "S", self.redactor.server(text), len(text) + 2, conn=self.label)
        return code, msg

    def login(self, user, password, *, initial_response_ok=True):  # type: ignore[override]
        self.redactor.secrets.add(password)
        self.transcript.secrets.add(password)
        return super().login(user, password, initial_response_ok=initial_response_ok)

    def starttls_with(self, context: ssl.SSLContext | None = None):
        from .imap import insecure_context

        return self.starttls(context=context or insecure_context())

    def ehlo_keywords(self) -> dict[str, str]:
        """EHLO keywords, upper-cased, mapped to their arguments (from the last EHLO)."""
        return {k.upper(): v for k, v in self.esmtp_features.items()}
