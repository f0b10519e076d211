"""Targets: the server under test, its endpoints and accounts; the strict TOML target-file reader."""

from __future__ import annotations

import json
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import BadInput

ENDPOINT_SCHEMES = {
    "imap": ("imap",),
    "imaps": ("imaps",),
    "submission": ("smtp", "submission"),
    "submissions": ("smtps", "submissions"),
    "jmap": ("http", "https"),
    "managesieve": ("sieve",),
    "relay": ("smtp",),  # an MTA on port 25 (relay/MX), not a submission service
}
DEFAULT_PORTS = {"imap": 143, "imaps": 993, "smtp": 587, "submission": 587, "smtps": 465, "submissions": 465,
                 "http": 80, "https": 443, "sieve": 4190}


@dataclass(frozen=True)
class Endpoint:
    name: str  # imap, imaps, submission, submissions, jmap, managesieve, relay
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def with_address(self, host: str, port: int) -> "Endpoint":
        return Endpoint(self.name, self.scheme, host, port, self.path)


@dataclass(frozen=True)
class Account:
    username: str
    password: str = field(repr=False)


@dataclass
class TlsPolicy:
    verify: bool = False
    ca_file: str | None = None

    def client_context(self) -> ssl.SSLContext:
        from .protocols.tls import client_context

        return client_context(self.verify, ca_file=self.ca_file)


@dataclass
class Target:
    name: str
    endpoints: dict[str, Endpoint]
    accounts: list[Account]
    tls: TlsPolicy = field(default_factory=TlsPolicy)
    provider: str = "external"
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # provider settings in force (no secrets)
    logs: list[Path] = field(default_factory=list)
    sink: Any = None  # SmtpSink when the provider runs the submission relay
    workdir: Path | None = None

    def endpoint(self, name: str) -> Endpoint | None:
        return self.endpoints.get(name)

    def secrets(self) -> set[str]:
        return {a.password for a in self.accounts}

    def describe(self) -> dict[str, Any]:
        """For results.json: everything but passwords."""
        return {
            "name": self.name,
            "provider": self.provider,
            "version": self.version,
            "endpoints": {k: v.url for k, v in self.endpoints.items()},
            "accounts": [a.username for a in self.accounts],
            "tls": {"verify": self.tls.verify, "ca_file": self.tls.ca_file},
            "settings": self.settings,
        }


_TOP_KEYS = {"name", "endpoints", "tls", "accounts", "version"}
NAME_MAX = 128
_NAME_REFUSED = re.compile(r"[/\\\x00-\x1f\x7f]")


def name_problem(name: str) -> str | None:
    """Why a target name cannot be used (it becomes part of file names, case ids and report anchors), or None.
    Spaces and punctuation are fine (``lemonade serve`` names targets "dovecot via nat-idle:timeout=1")."""
    if 0 < len(name) <= NAME_MAX and not _NAME_REFUSED.search(name) and not name.startswith(".") and ".." not in name:
        return None
    return ("cannot be used: a target's name becomes part of file names in the run directory (results.d/target-"
            f"NAME-worker.json) and of case ids; use 1 to {NAME_MAX} characters without '/', '\\', control "
            "characters or '..', not starting with '.'")
_TLS_KEYS = {"verify", "ca_file"}
_ACCOUNT_KEYS = {"username", "password"}


def parse_endpoint(name: str, url: str, where: str) -> Endpoint:
    if name not in ENDPOINT_SCHEMES:
        raise BadInput(f"{where}: unknown endpoint '{name}' (known: {', '.join(ENDPOINT_SCHEMES)})")
    if not isinstance(url, str):
        raise BadInput(f"{where}: endpoint '{name}' must be a URL string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ENDPOINT_SCHEMES[name]:
        raise BadInput(f"{where}: endpoint '{name}' = {url!r}: scheme must be one of "
                       f"{', '.join(s + '://' for s in ENDPOINT_SCHEMES[name])}")
    if not parts.hostname:
        raise BadInput(f"{where}: endpoint '{name}' = {url!r} has no host")
    try:
        port = parts.port or (25 if name == "relay" else DEFAULT_PORTS[parts.scheme])
    except ValueError:
        raise BadInput(f"{where}: endpoint '{name}' = {url!r} has an invalid port") from None
    return Endpoint(name, parts.scheme, parts.hostname, port, parts.path if name == "jmap" else "")


def load_target_file(path: str | Path) -> Target:
    """Read a target file. Any mistake is one BadInput naming the file and the problem."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise BadInput(f"target file {where} does not exist (a target is 'dovecot' or a TOML file path)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{where}: not valid TOML: {e}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{where}: missing 'name' (a non-empty string)")
    problem = name_problem(name)
    if problem:
        raise BadInput(f"{where}: name {name!r} {problem}")
    eps = data.get("endpoints")
    if not isinstance(eps, dict) or not eps:
        raise BadInput(f"{where}: missing [endpoints] table with at least one endpoint")
    endpoints = {k: parse_endpoint(k, v, f"{where} [endpoints]") for k, v in eps.items()}
    tls_raw = data.get("tls", {})
    if not isinstance(tls_raw, dict):
        raise BadInput(f"{where}: [tls] must be a table")
    if set(tls_raw) - _TLS_KEYS:
        raise BadInput(f"{where}: unknown key(s) in [tls]: {', '.join(sorted(set(tls_raw) - _TLS_KEYS))}")
    verify = tls_raw.get("verify", False)
    if not isinstance(verify, bool):
        raise BadInput(f"{where}: [tls] verify must be true or false")
    ca_file = tls_raw.get("ca_file")
    if ca_file is not None:
        ca_path = (p.parent / ca_file) if not Path(ca_file).is_absolute() else Path(ca_file)
        if not ca_path.is_file():
            raise BadInput(f"{where}: [tls] ca_file {ca_file!r} does not exist")
        ca_file = str(ca_path)
    accounts_raw = data.get("accounts")
    if not isinstance(accounts_raw, list) or not accounts_raw:
        raise BadInput(f"{where}: missing [[accounts]] (at least one, two for checks that need a second user)")
    accounts = []
    for i, a in enumerate(accounts_raw, 1):
        if not isinstance(a, dict):
            raise BadInput(f"{where}: [[accounts]] #{i} must be a table")
        if set(a) - _ACCOUNT_KEYS:
            raise BadInput(f"{where}: [[accounts]] #{i}: unknown key(s) {', '.join(sorted(set(a) - _ACCOUNT_KEYS))}")
        for k in _ACCOUNT_KEYS:
            if not isinstance(a.get(k), str) or not a.get(k):
                raise BadInput(f"{where}: [[accounts]] #{i}: missing '{k}'")
        accounts.append(Account(a["username"], a["password"]))
    return Target(name=name, endpoints=endpoints, accounts=accounts,
                  tls=TlsPolicy(verify=verify, ca_file=ca_file), provider="external",
                  version=str(data.get("version", "")))


def write_target_file(target: Target, path: Path) -> Path:
    """Write a target file for a running target (used by tests and `lemonade` helpers). Contains passwords."""
    lines = [f'name = "{target.name}"'] + ([f"version = {json.dumps(target.version)}"] if target.version else [])
    lines.append("[endpoints]")
    for k, ep in target.endpoints.items():
        lines.append(f'{k} = "{ep.url}"')
    lines += ["[tls]", f"verify = {'true' if target.tls.verify else 'false'}"]
    for a in target.accounts:
        lines += ["[[accounts]]", f'username = "{a.username}"', f'password = "{a.password}"']
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
