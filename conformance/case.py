"""CaseContext: what a check holds while it runs: target, scenario path, evidence, clients, parameters.

A check asks the case for clients (``case.imap()``, ``case.submission()``), which connect through the
scenario's path and record into the case transcript; records measurements (``case.measure``); judges each
requirement it names (``case.require``, ``case.requirement_not_applicable``, ``case.requirement_error``);
marks softer outcomes (``case.informational``, ``case.non_strict``); and declares applicability
(``case.require_capability``). What a case creates on the target (scratch mailboxes, messages put in the user's own
mailboxes, JMAP objects) is removed at teardown; what could not be removed becomes a ``Leftover`` of the result.
Teardown removes, closes every client and stops the path.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .catalog import PARAM_TYPES, Catalog
from .errors import ConformanceFailure, HarnessError, IntermediaryFailed, NotApplicable
from .intermediaries.path import NetworkPath
from .intermediaries.scenario import Scenario
from .protocols.imap import ImapConnection
from .protocols.imapwire import parse_capabilities, quote
from .protocols.smtp import CapturingSMTP
from .protocols.tls import insecure_context
from .targets import Target
from .transcript import Transcript
from .verdicts import Judgement


@dataclass
class Leftover:
    """Something the case created on the target and could not remove at its end (listed in the run's output)."""

    kind: str  # mailbox, message, jmap (an object made with a /set or /import call), upload
    what: str  # e.g. "alice: mailbox lemonade-1f3a..." or "alice: Email M12 (account u1)"
    reason: str  # why it is still there

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Outcome:
    informational: list[str] = field(default_factory=list)
    non_strict: list[str] = field(default_factory=list)
    summary: str = ""


class CaseContext:
    def __init__(self, *, target: Target, scenario: Scenario, catalog: Catalog, requirements: list[str],
                 profiles: list[str], depth: str, check: str, deadline: float = 10.0) -> None:
        self.target = target
        self.scenario = scenario
        self.catalog = catalog
        self.requirements = requirements
        self.profiles = profiles
        self.depth = depth
        self.check = check
        self.deadline = deadline  # seconds a client waits for one answer unless a check says otherwise
        self.judgement = Judgement(tuple(requirements))
        self.transcript = Transcript(secrets=target.secrets())
        self.measurements: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, Any] = {}
        self.outcome = Outcome()
        self._clients: list[Any] = []
        self._cleanups: list[Any] = []
        self.leftovers: list[Leftover] = []
        self.nonce = uuid.uuid4().hex[:12]  # unique per case: Message-IDs and bodies a server might deduplicate
        self.path = NetworkPath.for_scenario(scenario, target, self.transcript)
        self.started = time.time()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "CaseContext":
        try:
            self.path.start()
        finally:  # what the path found out (a real program's version, a preset's scaling) is evidence
            for name, fact in self.path.facts.items():
                self.measure(name, fact.get("value"), fact.get("unit", ""),
                             **{k: v for k, v in fact.items() if k not in ("value", "unit")})
        return self

    def close(self) -> None:
        errors = []
        for fn in reversed(self._cleanups):
            try:
                fn()
            except _Removal as r:  # a removal that could not complete: a leftover, not a harness error
                self.leftovers.append(r.leftover)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                errors.append(e)
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self.path.stop()
        if self.path.harness_errors:
            faults = self.path.harness_errors
            raise IntermediaryFailed(f"intermediary failed: {faults[0]}"
                                     + (f" (and {len(faults) - 1} more)" if len(faults) > 1 else "")
                                     + "; the transcript shows where")
        if errors:
            raise HarnessError(f"cleanup failed: {errors[0]}")

    def on_cleanup(self, fn) -> None:
        self._cleanups.append(fn)

    def remove_at_end(self, kind: str, what: str, remove: Callable[[], None]) -> None:
        """At teardown (last registered, first run), ``remove`` removes something this case created (``kind``, ``what``:
        see ``Leftover``). If it raises, or reports a rest with ``case.leftover``, the result lists it as a leftover
        instead of the case ending in error: the verdicts stand, the user learns what to delete by hand."""

        def run() -> None:
            try:
                remove()
            except Exception as e:  # noqa: BLE001 - whatever went wrong, the thing is still there
                raise _Removal(Leftover(kind, what, f"{type(e).__name__}: {e}")) from e

        self._cleanups.append(run)

    def leftover(self, kind: str, what: str, reason: str) -> None:
        """Record that something this case created stays on the target (and why)."""
        self.leftovers.append(Leftover(kind, what, reason))

    def unique(self, label: str = "m") -> str:
        """A token no earlier run made: for Message-IDs and bodies a server may deduplicate (``<label>.<nonce>.<n>``)."""
        self._unique = getattr(self, "_unique", 0) + 1
        return f"{label}.{self.nonce}.{self._unique}"

    # -- evidence -----------------------------------------------------------------------------
    def measure(self, name: str, value: Any, unit: str = "", **extra: Any) -> None:
        self.measurements[name] = {"value": value, "unit": unit, **extra}

    def attach(self, name: str, data: Any) -> None:
        """Structured evidence for the report: e.g. 'timeline' for push pictures, 'chart' for resync cost."""
        self.attachments[name] = data

    def note(self, text: str) -> None:
        self.transcript.note(text)

    def informational(self, message: str, requirement: str | None = None) -> None:
        """Measured or observed, with no rule to judge it: verdict informational unless something fails.

        With ``requirement``, for that requirement only; without, for every requirement not judged otherwise.
        """
        if requirement is not None:
            self.judgement.record(requirement, "informational", message)
        else:
            self.outcome.informational.append(message)

    def non_strict(self, message: str, requirement: str | None = None) -> None:
        """A SHOULD-level violation: verdict non-strict unless a MUST fails (``requirement`` as above)."""
        if requirement is not None:
            self.judgement.record(requirement, "non-strict", message)
        else:
            self.outcome.non_strict.append(message)

    # -- verdicts per requirement ------------------------------------------------------------------
    def require(self, requirement: str, condition: object, message: str) -> bool:
        """Judge one requirement the check names: pass if ``condition`` holds, else fail with ``message`` (what
        was expected and what was seen). Does not raise: the check goes on to judge the others. A failed
        SHOULD/MAY requirement becomes non-strict. Judged twice, the worse verdict stands. Returns the
        condition as a bool, so a check can skip what depends on it.
        """
        ok = bool(condition)
        self.judgement.record(requirement, "pass" if ok else "fail", "" if ok else message)
        return ok

    def requirement_not_applicable(self, requirement: str, reason: str) -> None:
        """This requirement cannot be judged on this target: a prerequisite is missing (say which)."""
        self.judgement.record(requirement, "not-applicable", reason)

    def requirement_error(self, requirement: str, reason: str) -> None:
        """This requirement cannot be judged because the suite's own side failed (say how): error, not fail."""
        self.judgement.record(requirement, "error", reason)

    def passed(self, summary: str) -> None:
        """One line saying what was verified, shown for passing results."""
        self.outcome.summary = summary

    # -- parameters ---------------------------------------------------------------------------
    def param(self, name: str, requirement: str | None = None) -> Any:
        """The value of parameter ``name`` at this run's depth, as its declared type (float, int, str, bool, list).

        The only way a check reads a parameter: the selected profiles' overrides apply and the value used is
        recorded as the measurement ``param.<name>``. It comes from the first of the check's requirements that
        defines it, or from ``requirement`` when the check borrows a threshold another requirement defines
        (e.g. a NOTIFY check waiting as long as notify.between-commands allows).
        """
        for rid in ([requirement] if requirement is not None else self.requirements):
            req = self.catalog.requirements.get(rid)
            if req is None:
                raise HarnessError(f"parameter '{name}': the catalog has no requirement {rid!r}")
            spec = req.parameters.get(name)
            if spec is None:
                continue
            value = PARAM_TYPES[spec.type](self.catalog.parameter(rid, name, self.depth, self.profiles))
            self.measurements.setdefault(f"param.{name}", {"value": value, "unit": spec.unit, "requirement": rid})
            return value
        raise HarnessError(f"none of {[requirement] if requirement else self.requirements} defines parameter '{name}'")

    # -- applicability -------------------------------------------------------------------------
    def required_capabilities(self) -> set[str]:
        """Capabilities a selected profile demands of this check's requirements (Lemonade's list)."""
        req_caps: set[str] = set()
        for prof in self.profiles:
            p = self.catalog.profiles.get(prof)
            if not p or not set(self.requirements) & set(p.ids):
                continue
            if "lemonade.store.capabilities" in p.entries:
                req_caps |= {c.upper() for c in self.catalog.parameter(
                    "lemonade.store.capabilities", "required", self.depth, [prof])}
        return req_caps

    def require_capability(self, capabilities: list[str], *names: str) -> None:
        """Not applicable if a capability is absent, unless a selected profile requires it (then fail)."""
        have = {c.upper() for c in capabilities}
        for name in names:
            if name.upper() in have:
                continue
            if name.upper() in self.required_capabilities():
                raise ConformanceFailure(f"capability {name} is required by the selected profile but not advertised "
                                         f"(CAPABILITY: {' '.join(capabilities)})")
            raise NotApplicable(f"target does not advertise {name}")

    def require_endpoint(self, name: str) -> None:
        if self.target.endpoint(name) is None:
            raise NotApplicable(f"target {self.target.name} has no {name} endpoint")

    # -- clients ------------------------------------------------------------------------------
    def account(self, index: int):
        if index >= len(self.target.accounts):
            raise NotApplicable(f"check needs {index + 1} accounts, target has {len(self.target.accounts)}")
        return self.target.accounts[index]

    def imap(self, account: int | None = 0, *, endpoint: str = "imap", tls: str = "auto", label: str | None = None,
             timeout: float | None = None, via_path: bool = True) -> ImapConnection:
        """An IMAP connection through the scenario path, greeted, TLS-protected and logged in.

        ``tls``: auto (STARTTLS on imap when advertised; implicit on imaps), starttls (required), none.
        ``account=None`` stops after the greeting/TLS (not authenticated). ``via_path=False`` connects
        directly (a second, undisturbed connection that changes the mailbox, for example). ``timeout``: the
        per-command deadline (default: the run's ``--deadline``).
        """
        ep = self.path.endpoint(endpoint) if via_path else self.target.endpoint(endpoint)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {endpoint} endpoint")
        leg = self.path.leg if via_path else "direct"
        conn = ImapConnection(ep.host, ep.port, transcript=self.transcript,
                              tls="implicit" if ep.scheme == "imaps" else "none",
                              ssl_context=self.target.tls.client_context(),
                              timeout=self.deadline if timeout is None else timeout,
                              label=label, leg=leg, via=self.intermediary_name(via_path))
        self._clients.append(conn)
        conn.read_greeting()
        if ep.scheme == "imap" and tls != "none":
            caps = parse_capabilities(conn.greeting.text) or conn.capability()
            if "STARTTLS" in caps:
                res = conn.starttls(self.target.tls.client_context())
                if not res.ok:
                    raise ConformanceFailure(f"STARTTLS advertised but refused: {res.tagged.first_line}")
            elif tls == "starttls":
                raise ConformanceFailure(f"STARTTLS not advertised on the cleartext port (CAPABILITY: {' '.join(caps)})")
        if account is not None:
            acct = self.account(account)
            res = conn.login(acct.username, acct.password)
            if not res.ok:
                raise HarnessError(f"login as {acct.username} failed ({res.tagged.first_line}): check the target's accounts")
        return conn

    def intermediary_name(self, via_path: bool = True) -> str | None:
        """The name of the suite's own listener a client connects to (None when it connects to the target)."""
        if not via_path or self.scenario.is_direct:
            return None
        return f"intermediary listener (scenario {self.scenario})"

    def submission(self, account: int | None = 0, *, endpoint: str = "submission", tls: str = "starttls",
                   timeout: float | None = None, via_path: bool = True) -> CapturingSMTP:
        ep = self.path.endpoint(endpoint) if via_path else self.target.endpoint(endpoint)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {endpoint} endpoint")
        smtp = CapturingSMTP(ep.host, ep.port, transcript=self.transcript,
                             timeout=self.deadline if timeout is None else timeout,
                             label=f"smtp#{len(self._clients) + 1}", leg=self.path.leg if via_path else "direct",
                             via=self.intermediary_name(via_path))
        self._clients.append(smtp)
        smtp.ehlo("client.test")
        if tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise ConformanceFailure("submission does not advertise STARTTLS")
            code, msg = smtp.starttls(context=self.target.tls.client_context())
            if code != 220:
                raise ConformanceFailure(f"submission advertises STARTTLS but refused it: {code} "
                                         f"{msg.decode(errors='replace')}")
            smtp.ehlo("client.test")
        if account is not None:
            acct = self.account(account)
            smtp.login(acct.username, acct.password)
            smtp.ehlo("client.test")
        return smtp

    @property
    def clients(self) -> tuple[Any, ...]:
        """The clients the case closes at teardown, oldest first."""
        return tuple(self._clients)

    def adopt(self, client: Any) -> Any:
        """Close ``client`` (anything with ``close()``) at teardown, like the clients the case made itself."""
        self._clients.append(client)
        return client

    def scratch_mailbox(self, conn: ImapConnection, prefix: str = "lemonade") -> str:
        """A fresh mailbox only this case uses; deleted at teardown through a direct connection."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        res = conn.command(f"CREATE {quote(name)}")
        if not res.ok:
            raise HarnessError(f"cannot create scratch mailbox {name}: {res.tagged.first_line}")
        # the account the connection logged in as (not a password its redactor knows: a case's later connections
        # start with every password the case used, so a second user's mailbox was deleted in the first user's account)
        account_index = next((i for i, a in enumerate(self.target.accounts) if a.username == conn.username), 0)
        self.delete_at_end(name, account=account_index)
        return name

    def delete_at_end(self, *mailboxes: str, account: int = 0) -> None:
        """Delete these mailboxes at teardown through a direct connection (those a check makes other than with
        ``scratch_mailbox``, e.g. by CREATE or RENAME on a connection it judges); a mailbox already gone is fine, one
        still listed after DELETE is a leftover."""
        user = self.target.accounts[account].username if account < len(self.target.accounts) else f"#{account}"

        def delete() -> None:
            c = self.imap(account, via_path=False, label="cleanup", timeout=5)
            try:
                for name in mailboxes:
                    res = c.command(f"DELETE {quote(name)}")
                    if not res.ok and _listed(c, name):
                        self.leftover("mailbox", f"{user}: mailbox {name}", f"DELETE answered {res.tagged.first_line}")
            finally:
                c.close()

        self.remove_at_end("mailbox", f"{user}: mailbox{'es' if len(mailboxes) > 1 else ''} {', '.join(mailboxes)}",
                           delete)

    def expunge_at_end(self, mailbox: str, message_id: str, account: int = 0) -> None:
        """At teardown, expunge the messages of ``mailbox`` whose Message-ID is ``message_id``, and only those (for
        what a check puts in a mailbox it did not create, such as INBOX): UID EXPUNGE needs UIDPLUS; without it they
        stay, listed as leftovers, since a plain EXPUNGE would also remove what the user marked \\Deleted."""
        user = self.target.accounts[account].username if account < len(self.target.accounts) else f"#{account}"
        what = f"{user}: {mailbox} message {message_id}"

        def expunge() -> None:
            c = self.imap(account, via_path=False, label="cleanup", timeout=5)
            try:
                if not c.command(f"SELECT {quote(mailbox)}").ok:
                    return
                found = _search(c, message_id)
                if not found:
                    return
                if "UIDPLUS" not in {x.upper() for x in c.capability()}:
                    self.leftover("message", what, "the server lacks UIDPLUS: only a plain EXPUNGE could remove it, "
                                                   "which would also remove messages the user marked \\Deleted")
                    return
                uid_set = ",".join(map(str, found))
                c.command(f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)")
                res = c.command(f"UID EXPUNGE {uid_set}")
                if _search(c, message_id):
                    self.leftover("message", what, f"UID EXPUNGE answered {res.tagged.first_line}")
            finally:
                c.close()

        self.remove_at_end("message", what, expunge)


class _Removal(Exception):
    """A removal at teardown failed: carries the leftover to record."""

    def __init__(self, leftover: Leftover) -> None:
        super().__init__(leftover.what)
        self.leftover = leftover


def _listed(conn: ImapConnection, mailbox: str) -> bool:
    """Does LIST still show ``mailbox``? (True when LIST itself fails: then nobody knows it is gone.)"""
    res = conn.command(f'LIST "" {quote(mailbox)}')
    return not res.ok or any(r.first_line.upper().startswith("* LIST") for r in res.untagged)


def _search(conn: ImapConnection, message_id: str) -> list[int]:
    """UIDs of the selected mailbox's messages whose Message-ID header contains ``message_id``."""
    from .protocols.imapwire import parse_search

    res = conn.command(f"UID SEARCH HEADER Message-ID {quote(message_id)}")
    return sorted(uid for r in res.untagged for uid in (parse_search(r) or [])) if res.ok else []


_ = insecure_context  # re-exported for checks that pin TLS versions
