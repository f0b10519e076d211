"""What every adapter shares (standard library only: adapters run with the system's python3 as an
unprivileged user): the environment contract, delivery into the output folder, exit codes.

The contract (clients/README.md): the suite runs ``clients/<name>/run`` with environment variables only.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
from dataclasses import dataclass

NOT_SUPPORTED = 127  # the QUIC interop runner's code: the suite records not-applicable, never fail
CASES = ("fetch-once", "push", "sync")


@dataclass(frozen=True)
class Env:
    case: str
    url: str  # imap://host:port, imaps://host:port or https://host:port/.well-known/jmap (through the path)
    scheme: str
    host: str
    port: int
    user: str
    password_file: str
    ca_file: str
    mailbox: str
    output: str
    state: str
    proxy: str  # http://host:port of an explicit HTTP proxy on the path, or ""

    @property
    def password(self) -> str:
        with open(self.password_file, encoding="utf-8") as f:
            return f.read().strip("\r\n")

    def path(self, name: str) -> str:
        return os.path.join(self.state, name)


def env() -> Env:
    e = os.environ
    url = e["LEMONADE_SERVER_URL"]
    u = urllib.parse.urlsplit(url)
    return Env(case=e.get("LEMONADE_CASE", ""), url=url, scheme=u.scheme, host=u.hostname or "localhost",
               port=u.port or {"imap": 143, "imaps": 993, "https": 443, "http": 80}.get(u.scheme, 0),
               user=e["LEMONADE_USER"], password_file=e["LEMONADE_PASSWORD_FILE"], ca_file=e.get("LEMONADE_CA_FILE", ""),
               mailbox=e.get("LEMONADE_MAILBOX", "INBOX"), output=e["LEMONADE_OUTPUT"], state=e["LEMONADE_STATE"],
               proxy=e.get("LEMONADE_PROXY", ""))


def not_supported(why: str) -> None:
    print(f"adapter: not supported: {why}", file=sys.stderr, flush=True)
    sys.exit(NOT_SUPPORTED)


def deliver(output: str, message: bytes) -> str:
    """One message into the output folder, atomically (written beside, then renamed to *.eml)."""
    name = f"{time.time():.6f}.{os.getpid()}.{os.urandom(3).hex()}"
    tmp = os.path.join(output, f".{name}.tmp")
    with open(tmp, "wb") as f:
        f.write(message)
    final = os.path.join(output, f"{name}.eml")
    os.rename(tmp, final)
    return final


def write_private(path: str, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def log(text: str) -> None:
    print(f"adapter: {text}", file=sys.stderr, flush=True)


def run_client(args: list[str], env: dict | None = None) -> None:
    """Run the client program and exit with its code, except that its own 127 (e.g. a command it could not
    find) becomes 1: to the suite, 127 means only 'this adapter does not support the case'. SIGTERM reaches the
    client directly (the suite signals the whole process group)."""
    import subprocess

    log("running " + " ".join(args))
    rc = subprocess.call(args, env=env)
    if rc == NOT_SUPPORTED:
        log(f"{args[0]} itself exited with {NOT_SUPPORTED}: reported as 1 (a failure, not 'not supported')")
        rc = 1
    sys.exit(rc if rc >= 0 else 128 - rc)
