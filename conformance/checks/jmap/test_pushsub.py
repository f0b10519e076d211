"""JMAP push to a URL (RFC 8620 7.2): PushSubscription, its verification, the POSTs, encryption, expiry, abuse limits.

The suite plays the push service: a receiver on loopback (``pushreceiver.py``) whose URLs the checks register.
A server that does not implement PushSubscription answers ``unknownMethod``: the verification check fails (RFC 8621
1.5 requires the push mechanisms of RFC 8620 7 of a JMAP Mail server), the others are not-applicable. RFC 8620 8.7
wants push URLs that resolve externally: a server set up for this test allows the receiver's own address
(127.0.0.1) and nothing else internal (the abuse-limits check probes 127.0.0.2); a server that refuses 127.0.0.1 as
well keeps the rule, and the checks that need pushes are then not-applicable with that reason. Every subscription a
check creates is destroyed at the end of the case; the device ids and URLs carry a per-case token.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import pytest

from conformance.checks.jmap.pushreceiver import Answer, Delivery, PushReceiver
from conformance.checks.support import Blame, refuse
from conformance.checks.support.jmap import client, destroy_at_end, imported, writer
from conformance.errors import ConformanceFailure, HarnessError, NotApplicable
from conformance.protocols.jmap import CORE, MAIL, JmapClient, sample_message
from conformance.protocols.webpush import Subscriber, WebPushError, b64url

pytestmark = pytest.mark.uses("jmap")

USING = [CORE]
# SetError types that mean "not this URL" (RFC 8620 7.2 / 8.7): the server keeps its push away from our loopback
URL_REFUSALS = ("forbidden", "invalidProperties", "invalidUrl")


def receiver(case) -> PushReceiver:
    """The case's push receiver (stopped at teardown)."""
    return case.adopt(PushReceiver(case.transcript))


@dataclass
class Subscription:
    id: str
    name: str
    created: dict  # what the server answered in `created` (server-set properties)


def _set(c: JmapClient, args: dict) -> tuple[str, dict]:
    return c.one("PushSubscription/set", args, USING)


def _absent(c: JmapClient, name: str, args: dict, blame: Blame) -> None:
    """PushSubscription not implemented at all: the verdict ``blame`` stands for, naming the rule."""
    if name == "error" and args.get("type") in ("unknownMethod", "unknownCapability"):
        mail = MAIL in c.capabilities()
        refuse(blame, f"PushSubscription/set answered {args.get('type')}: the server does not implement "
                      "PushSubscription (RFC 8620 7.2)" + (", which RFC 8621 1.5 requires of a server offering "
                                                           f"{MAIL}" if mail else ""))


def subscribe(case, c: JmapClient, rx: PushReceiver, name: str, *, absent: Blame = Blame.PREREQUISITE,
              url: str | None = None, keys: dict | None = None, types: list[str] | None = None,
              expires: str | None = None) -> tuple[Subscription | None, dict | None]:
    """PushSubscription/set create: (the subscription, None), or (None, the SetError) when it was not created.

    Destroyed at the end of the case. ``absent``: who is at fault when the server has no PushSubscription.
    """
    obj: dict = {"deviceClientId": f"lemonade-{rx.token}-{name}", "url": url or rx.url(name),
                 "types": types if types is not None else ["Email"]}
    if keys is not None:
        obj["keys"] = keys
    if expires is not None:
        obj["expires"] = expires
    rname, args = _set(c, {"create": {name: obj}})
    _absent(c, rname, args, absent)
    if rname == "error":
        raise ConformanceFailure(f"PushSubscription/set create answered the method error {args}")
    created = (args.get("created") or {}).get(name)
    if isinstance(created, dict) and isinstance(created.get("id"), str):
        sid = created["id"]
        case.on_cleanup(lambda: _set(c, {"destroy": [sid]}))
        return Subscription(sid, name, created), None
    err = (args.get("notCreated") or {}).get(name)
    if not isinstance(err, dict):
        raise ConformanceFailure(f"PushSubscription/set create of {name!r}: neither created nor notCreated: {args}")
    return None, err


def require_receiver_accepted(sub: Subscription | None, err: dict | None, url: str) -> Subscription:
    """Checks that need pushes: a refused loopback URL makes them not-applicable (the server keeps to RFC 8620 8.7)."""
    if sub is None:
        raise NotApplicable(f"the server refused the suite's loopback push URL {url} ({err}); RFC 8620 8.7 asks a "
                            "server to refuse internal URLs, so this needs a server configured to push to 127.0.0.1")
    return sub


def await_verification(case, rx: PushReceiver, sub: Subscription, within: float,
                       blame: Blame = Blame.PREREQUISITE) -> Delivery:
    """The first request to the subscription's URL (the PushVerification). Not-applicable when the server could not
    reach the receiver because it rejected the receiver's certificate; when nothing came at all, the verdict
    ``blame`` stands for (the verification check's fail; the other checks' not-applicable)."""
    got = rx.wait(sub.name, 1, within)
    if got:
        return got[0]
    if rx.tls_failures:
        raise NotApplicable(f"the server connected to the push receiver but the TLS handshake failed "
                            f"({rx.tls_failures[0][1]}): give the server {rx.ca_file} to trust, or allow it to skip "
                            "verification for this test")
    refuse(blame, f"no PushVerification reached {rx.url(sub.name)} within {within:.1f} s of creating subscription "
                  f"{sub.id} (RFC 8620 7.2.2: the server MUST push it immediately)"
           + ("" if blame is Blame.SERVER else "; judged by jmap.pushsub.verification, so there is no verified "
              "subscription to judge"))
    raise AssertionError("unreachable")


def json_body(d: Delivery) -> tuple[dict | None, str]:
    """A push body as a JSON object, or None and what is wrong with it."""
    try:
        obj = json.loads(d.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return None, f"body is not UTF-8 JSON ({type(e).__name__}: {str(e)[:80]}; {d.body[:60]!r})"
    return (obj, "") if isinstance(obj, dict) else (None, f"body is JSON but not an object: {str(obj)[:80]}")


def verify(c: JmapClient, sub: Subscription, code: str) -> tuple[bool, dict]:
    """PushSubscription/set update with the verification code: (accepted, the server's answer)."""
    rname, args = _set(c, {"update": {sub.id: {"verificationCode": code}}})
    return rname != "error" and sub.id in (args.get("updated") or {}), args


def verified(case, c: JmapClient, rx: PushReceiver, name: str, within: float, **kw) -> tuple[Subscription, Delivery]:
    """A subscription to the receiver, verified with the code the server pushed (plaintext pushes)."""
    sub = require_receiver_accepted(*subscribe(case, c, rx, name, **kw), rx.url(name))
    first = await_verification(case, rx, sub, within)
    obj, why = json_body(first)
    code = (obj or {}).get("verificationCode")
    if not isinstance(code, str):
        raise NotApplicable(f"the first push carries no verificationCode ({why or obj}); judged by "
                            "jmap.pushsub.verification")
    ok, args = verify(c, sub, code)
    if not ok:
        raise NotApplicable(f"the server did not accept its own verification code ({args}); judged by "
                            "jmap.pushsub.verification")
    return sub, first


def utc(seconds_from_now: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@pytest.mark.requirement("jmap.pushsub.verification")
def test_pushsub_verification(case):
    """Creating a subscription makes the server POST one PushVerification at once, and nothing else until the client
    sets the code; a wrong code is rejected with invalidProperties, the right one accepted."""
    rid = "jmap.pushsub.verification"
    within, quiet = case.param("within"), case.param("quiet")
    c, w = client(case), writer(case)
    rx = receiver(case)
    t_created = case.transcript.now()
    sub = require_receiver_accepted(*subscribe(case, c, rx, "verify", absent=Blame.SERVER), rx.url("verify"))
    first = await_verification(case, rx, sub, within, Blame.SERVER)
    case.measure("verification_after", round(first.t - t_created, 3), "s")
    problems = []
    obj, why = json_body(first)
    if obj is None:
        problems.append(f"the PushVerification {why}")
    else:
        if obj.get("@type") != "PushVerification":
            problems.append(f"the first push has @type {obj.get('@type')!r}, expected PushVerification")
        if obj.get("pushSubscriptionId") != sub.id:
            problems.append(f"pushSubscriptionId {obj.get('pushSubscriptionId')!r} is not the new subscription {sub.id!r}")
        if not isinstance(obj.get("verificationCode"), str) or not obj.get("verificationCode"):
            problems.append(f"verificationCode {obj.get('verificationCode')!r} is not a non-empty string")
    code = (obj or {}).get("verificationCode")
    # unverified: a change must not produce a push
    imported(case, w, "pushsub unverified")
    time.sleep(quiet)
    extra = rx.to(sub.name)[1:]
    if extra:
        problems.append(f"{len(extra)} more request(s) reached the URL before it was verified (first at "
                        f"t={extra[0].t:.2f}: {extra[0].body[:80]!r}); RFC 8620 7.2 allows none")
    wrong = f"lemonade-wrong-{rx.token}"
    rname, args = _set(c, {"update": {sub.id: {"verificationCode": wrong}}})
    err = (args.get("notUpdated") or {}).get(sub.id) if rname != "error" else args
    if not isinstance(err, dict) or err.get("type") != "invalidProperties":
        problems.append(f"a wrong verificationCode was answered {rname} {args}, expected notUpdated "
                        "invalidProperties (RFC 8620 7.2.2)")
    if isinstance(code, str) and code:
        ok, args = verify(c, sub, code)
        if not ok:
            problems.append(f"the code the server pushed was not accepted: {args}")
    case.require(rid, not problems, "; ".join(problems))
    case.passed(f"one PushVerification {first.t - t_created:.2f} s after the create, nothing else while unverified "
                f"for {quiet:.0f} s, wrong code rejected (invalidProperties), right code accepted")


def _content_type_json(d: Delivery) -> bool:
    return d.header("content-type").split(";")[0].strip().lower() == "application/json"


def _ttl_ok(d: Delivery) -> bool:
    return d.header("ttl").strip().isdigit()


def _ours(rx: PushReceiver, name: str, account: str, states: set[str]) -> int:
    """The pushes to ``url(name)`` whose StateChange names one of ``states`` as the account's Email state: the ones
    a burst of the check's own changes caused (other cases change the same account meanwhile)."""
    n = 0
    for d in rx.to(name):
        obj, _ = json_body(d)
        changed = (obj or {}).get("changed")
        if isinstance(changed, dict) and isinstance(changed.get(account), dict) and changed[account].get("Email") in states:
            n += 1
    return n


@pytest.mark.requirement("jmap.pushsub.post-format")
def test_pushsub_post_format(case):
    """Every POST is application/json with a TTL header and carries a StateChange once verified; after a 429 the
    server pushes less often than it did for the same changes before."""
    rid = "jmap.pushsub.post-format"
    within, changes, gap, settle = case.param("within"), case.param("changes"), case.param("gap"), case.param("settle")
    c, w = client(case), writer(case)
    rx = receiver(case)
    sub, first = verified(case, c, rx, "format", within)
    imported(case, w, "pushsub format")
    got = rx.wait(sub.name, 2, within)
    problems = []
    for d in got:
        if not _content_type_json(d):
            problems.append(f"POST at t={d.t:.2f} has Content-Type {d.header('content-type')!r}, not application/json")
        if not _ttl_ok(d):
            problems.append(f"POST at t={d.t:.2f} has no TTL header with a number of seconds "
                            f"(TTL: {d.header('ttl')!r}; RFC 8030 5.2)")
    if len(got) < 2:
        problems.append(f"no push reached the verified subscription within {within:.1f} s of a change")
    else:
        obj, why = json_body(got[1])
        changed = (obj or {}).get("changed") if obj else None
        if obj is None or obj.get("@type") != "StateChange" or not isinstance(changed, dict):
            problems.append(f"the push after a change is not a StateChange: {why or str(obj)[:160]}")
        elif c.account_id not in changed:
            problems.append(f"StateChange.changed does not name account {c.account_id}: {changed}")
    if problems:
        case.require(rid, False, "; ".join(problems))
        return
    # the same burst of changes twice: answered 201, then answered 429 (Retry-After) from the first push on; each
    # burst's pushes are counted until the server has been quiet for `settle` s, so slow deliveries count too
    baseline = _burst(case, w, rx, sub, changes, gap, settle, "before")
    retry_after = int(max(2, changes * gap))
    rx.answer = lambda d: Answer(429, {"Retry-After": str(retry_after)})
    throttled = _burst(case, w, rx, sub, changes, gap, settle, "after 429", hold=retry_after)
    case.measure("pushes_before_429", baseline, "requests")
    case.measure("pushes_after_429", throttled, "requests")
    if baseline < 2:
        case.informational(f"{changes} changes {gap} s apart gave {baseline} push(es): the server already coalesces "
                           "them, so whether a 429 slows it down cannot be seen", requirement=rid)
        return
    case.require(rid, throttled < baseline,
                 f"after answering 429 (Retry-After: {retry_after}) the server pushed {throttled} time(s) for "
                 f"{changes} changes, as often as before ({baseline}); RFC 8620 7.2: a 429 must slow the pushes down")
    case.passed(f"POSTs are application/json with TTL, the push is a StateChange; {baseline} pushes before a 429, "
                f"{throttled} after")


def _burst(case, w: JmapClient, rx: PushReceiver, sub: Subscription, changes: int, gap: float, settle: float,
           label: str, hold: float = 0.0) -> int:
    """Make ``changes`` changes ``gap`` seconds apart; how many pushes named the state of one of them, counted until
    the URL has been quiet for ``settle`` seconds (after ``hold`` more seconds, e.g. a Retry-After the server may
    honour). Pushes still on their way for earlier changes are waited out first."""
    _quiet(rx, sub.name, settle, settle + changes * gap)
    states = set()
    for i in range(changes):
        states.add(_change(case, w, f"pushsub burst {label} {i}"))
        time.sleep(gap)
    time.sleep(hold)
    _quiet(rx, sub.name, settle, settle + 4 * (changes * gap + hold))
    return _ours(rx, sub.name, w.account_id, states)


def _change(case, w: JmapClient, subject: str) -> str:
    """Import a message (destroyed when the case ends); the Email state it produced (Email/import newState)."""
    up = w.upload(sample_message(subject))
    if up.status_code not in (200, 201):
        raise HarnessError(f"upload failed: {up.status_code} {up.text[:200]}")
    args = w.ok("Email/import", {"accountId": w.account_id, "emails": {
        "e1": {"blobId": up.json()["blobId"], "mailboxIds": {w.mailbox_id(): True}, "keywords": {}}}})
    created = (args.get("created") or {}).get("e1")
    if not created or not isinstance(args.get("newState"), str):
        raise HarnessError(f"Email/import did not create the message or gave no newState: {str(args)[:200]}")
    destroy_at_end(case, w, [created["id"]])
    return args["newState"]


def _quiet(rx: PushReceiver, name: str, settle: float, bound: float) -> None:
    """Return once nothing has reached ``url(name)`` for ``settle`` seconds, or after ``bound`` seconds (a server
    pushing forever)."""
    limit = time.monotonic() + bound
    while time.monotonic() < limit:
        seen = len(rx.to(name))
        if len(rx.wait(name, seen + 1, min(settle, max(0.0, limit - time.monotonic())))) == seen:
            return


@pytest.mark.requirement("jmap.pushsub.encrypted")
def test_pushsub_encrypted(case):
    """With keys, every push (the PushVerification too) is an RFC 8291 message in one aes128gcm record that
    decrypts with the subscription's keys."""
    rid = "jmap.pushsub.encrypted"
    within = case.param("within")
    c, w = client(case), writer(case)
    rx = receiver(case)
    ua = Subscriber()
    case.transcript.secrets.add(b64url(ua.auth))
    sub, err = subscribe(case, c, rx, "encrypted", keys=ua.keys())
    if sub is None and err and "keys" in (err.get("properties") or []):
        raise NotApplicable(f"the server refused the keys property ({err}): it offers no encrypted push")
    sub = require_receiver_accepted(sub, err, rx.url("encrypted"))
    first = await_verification(case, rx, sub, within)
    problems = []
    plain, why = _decrypt(ua, first)
    code = None
    if plain is None:
        problems.append(f"the PushVerification is not encrypted with the subscription's keys: {why}")
    else:
        code = plain.get("verificationCode")
        if plain.get("@type") != "PushVerification" or plain.get("pushSubscriptionId") != sub.id:
            problems.append(f"the decrypted PushVerification is {str(plain)[:160]}")
    if isinstance(code, str):
        ok, args = verify(c, sub, code)
        if not ok:
            problems.append(f"the decrypted verification code was not accepted: {args}")
        else:
            imported(case, w, "pushsub encrypted")
            got = rx.wait(sub.name, 2, within)
            if len(got) < 2:
                problems.append(f"no push within {within:.1f} s of a change on the verified subscription")
            else:
                state, why = _decrypt(ua, got[1])
                if state is None:
                    problems.append(f"the StateChange push is not encrypted with the subscription's keys: {why}")
                elif state.get("@type") != "StateChange":
                    problems.append(f"the decrypted push is not a StateChange: {str(state)[:160]}")
    case.require(rid, not problems, "; ".join(problems))
    case.passed("PushVerification and StateChange arrived as single-record aes128gcm messages that decrypt with the "
                "subscription's p256dh/auth")


def _decrypt(ua: Subscriber, d: Delivery) -> tuple[dict | None, str]:
    """The JSON object inside an encrypted push, or None and why not (content coding, RFC 8291 rules, JSON)."""
    coding = d.header("content-encoding").strip().lower()
    if coding != "aes128gcm":
        plain = " (the body is plaintext JSON)" if json_body(d)[0] is not None else ""
        return None, f"Content-Encoding {coding or 'absent'}, expected aes128gcm{plain}"
    try:
        out = ua.decrypt(d.body)
    except WebPushError as e:
        return None, str(e)
    if out.records != 1:
        return None, f"{out.records} records; RFC 8291 section 4 requires a single record"
    try:
        obj = json.loads(out.plaintext)
    except ValueError:
        return None, f"the plaintext is not JSON: {out.plaintext[:80]!r}"
    return (obj, "") if isinstance(obj, dict) else (None, f"the plaintext is not a JSON object: {str(obj)[:80]}")


@pytest.mark.requirement("jmap.pushsub.get-hides")
def test_pushsub_get_hides(case):
    """PushSubscription/get never returns url or keys (asking for them is forbidden) and shows only the
    subscriptions made with the same credentials."""
    rid = "jmap.pushsub.get-hides"
    c = client(case)
    other = client(case, 1, label="jmap#other-user")
    rx = receiver(case)
    mine = require_receiver_accepted(*subscribe(case, c, rx, "mine", keys=Subscriber().keys()), rx.url("mine"))
    theirs, _ = subscribe(case, other, rx, "theirs", keys=Subscriber().keys())
    problems = []
    rname, args = c.one("PushSubscription/get", {"ids": None}, USING)
    if rname == "error":
        problems.append(f"PushSubscription/get ids=null answered error {args}")
    else:
        listed = {s.get("id"): s for s in args.get("list") or [] if isinstance(s, dict)}
        if mine.id not in listed:
            problems.append(f"the user's own subscription {mine.id} is missing from /get: {sorted(map(str, listed))}")
        leaked = sorted({k for s in listed.values() for k in ("url", "keys") if k in s})
        if leaked:
            problems.append(f"/get without properties returned {', '.join(leaked)} (RFC 8620 7.2.1: never returned)")
        if theirs is not None and theirs.id in listed:
            problems.append(f"/get shows subscription {theirs.id} made with another user's credentials")
    for prop in ("url", "keys"):
        rname, args = c.one("PushSubscription/get", {"ids": [mine.id], "properties": [prop]}, USING)
        if rname != "error" or args.get("type") != "forbidden":
            shown = str(args)[:200]
            problems.append(f"/get with properties [{prop!r}] answered {rname} {shown}, expected the error forbidden")
    if theirs is not None:
        rname, args = c.one("PushSubscription/get", {"ids": [theirs.id]}, USING)
        if rname != "error" and any(isinstance(s, dict) and s.get("id") == theirs.id for s in args.get("list") or []):
            problems.append(f"/get by id returns subscription {theirs.id} of another user")
    else:
        case.note("the second user's subscription was not created: the credentials rule was judged on /get ids=null only")
    case.require(rid, not problems, "; ".join(problems))
    case.passed("url and keys never returned, asking for them forbidden, another user's subscription invisible")


@pytest.mark.requirement("jmap.pushsub.expiry")
def test_pushsub_expiry(case):
    """An expiry the server caps is at least 48 h away (SHOULD 7 days); after ``expires`` no request reaches the URL."""
    rid = "jmap.pushsub.expiry"
    within, expire_in = case.param("within"), case.param("expire_in")
    c, w = client(case), writer(case)
    rx = receiver(case)
    problems, soft, seen = [], [], []
    for label, asked in (("a year ahead", utc(365 * 86400)), ("none", None)):
        sub = require_receiver_accepted(*subscribe(case, c, rx, f"expiry-{len(seen)}", expires=asked),
                                        rx.url(f"expiry-{len(seen)}"))
        got = sub.created.get("expires") if "expires" in sub.created else _get_expires(c, sub)
        when = parse_utc(got)
        seen.append(f"{label}: {got!r}")
        if got is None or got == asked:
            continue  # not capped: the rule about caps does not apply to this subscription
        if when is None:
            problems.append(f"expires {got!r} (asked {label}) is not a UTCDate")
            continue
        left = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
        if left < 48 * 3600 - 120:
            problems.append(f"asked {label}, the server set expires {got} ({left / 3600:.1f} h away): a cap must be at "
                            "least 48 h in the future (RFC 8620 7.2)")
        elif left < 7 * 86400 - 120:
            soft.append(f"asked {label}, the server capped expires at {got} ({left / 3600:.0f} h): RFC 8620 7.2 "
                        "says it SHOULD be at least 7 days")
    honoured = _expiry_honoured(case, c, w, rx, within, expire_in)
    if honoured:
        problems.append(honoured)
    case.measure("expires_seen", "; ".join(seen))
    if problems:
        case.require(rid, False, "; ".join(problems))
    elif soft:
        case.non_strict("; ".join(soft), requirement=rid)
    else:
        case.require(rid, True, "")
    case.passed(f"expires ({'; '.join(seen)}) within the rules"
                + ("; no push after a short expiry passed" if honoured == "" else "; pushes after expiry not judged"))


def _expiry_honoured(case, c: JmapClient, w: JmapClient, rx: PushReceiver, within: float,
                     expire_in: float) -> str | None:
    """No request reaches the URL after ``expires`` (needs the receiver reachable and a verified subscription):
    the problem, "" when none, None when it could not be judged (the case says why)."""
    try:
        sub, _ = verified(case, c, rx, "expiring", within)
    except NotApplicable as e:
        case.note(f"whether pushes stop after expires is not judged: {e}")
        return None
    asked = utc(expire_in)
    rname, args = _set(c, {"update": {sub.id: {"expires": asked}}})
    set_to = ((args.get("updated") or {}).get(sub.id) or {}).get("expires") if rname != "error" else None
    deadline = parse_utc(set_to or asked)
    if rname == "error" or sub.id not in (args.get("updated") or {}):
        case.note(f"shortening expires was refused ({args}): whether pushes stop after it is not judged")
        return None
    if deadline is None or (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds() > expire_in + within:
        case.note(f"the server moved expires to {set_to}: too far to watch it pass in this case")
        return None
    time.sleep(max(0.0, (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.0)
    t_expired = case.transcript.now()
    imported(case, w, "pushsub after expiry")
    time.sleep(within)
    late = [d for d in rx.to(sub.name) if d.t > t_expired]
    if late:
        return (f"{len(late)} request(s) reached the URL after its expires {set_to or asked} "
                f"(first at t={late[0].t:.2f}); RFC 8620 7.2: MUST NOT")
    return ""


def _get_expires(c: JmapClient, sub: Subscription) -> object:
    rname, args = c.one("PushSubscription/get", {"ids": [sub.id], "properties": ["expires"]}, USING)
    found = [s for s in (args.get("list") or []) if isinstance(s, dict) and s.get("id") == sub.id]
    return found[0].get("expires") if rname != "error" and found else None


@pytest.mark.requirement("jmap.pushsub.abuse-limits")
def test_pushsub_abuse_limits(case):
    """An http:// URL and an internal URL (127.0.0.2) are refused or never contacted, and a burst of creations is
    stopped by a limit before it ends."""
    rid = "jmap.pushsub.abuse-limits"
    within, attempts = case.param("within"), case.param("attempts")
    c = client(case)
    rx = receiver(case)
    problems, notes = [], []
    plain, err = subscribe(case, c, rx, "plain-http", url=rx.url("plain-http", scheme="http"))
    internal, ierr = (subscribe(case, c, rx, "internal", url=rx.url("internal", internal=True))
                      if rx.internal is not None else (None, {"type": "not tried: no listener on 127.0.0.2"}))
    time.sleep(within)
    if plain is not None:
        contacted = rx.to("plain-http")
        if contacted:
            problems.append(f"the server accepted http:// URL {rx.url('plain-http', scheme='http')} and sent "
                            f"{len(contacted)} request(s) to it in the clear (RFC 8620 7.2: the url MUST be https)")
        else:
            notes.append("an http:// URL was accepted but never contacted")
    else:
        notes.append(f"http:// URL refused ({err.get('type') if err else '?'})")
    if internal is not None and rx.to("internal"):
        problems.append(f"the server pushed to {rx.url('internal', internal=True)}, an internal address: RFC 8620 8.7 "
                        "requires push URLs that resolve externally (a server set up for this test may allow the "
                        "receiver's own 127.0.0.1, nothing else)")
    elif internal is None:
        notes.append(f"internal URL refused ({ierr.get('type') if ierr else '?'})")
    else:
        notes.append("internal URL accepted but never contacted")
    # a burst of creations must meet a limit (count or rate) before it ends
    stopped, made = None, 0
    batch = 10
    while made < attempts and stopped is None:
        names = [f"burst-{made + i}" for i in range(min(batch, attempts - made))]
        creates = {n: {"deviceClientId": f"lemonade-{rx.token}-{n}", "url": rx.url(n), "types": ["Email"]}
                   for n in names}
        resp = c.post_api(json.dumps({"using": USING, "methodCalls": [
            ["PushSubscription/set", {"create": creates}, "b"]]}).encode())
        if resp.status_code != 200:
            stopped = f"HTTP {resp.status_code} after {made} creations"
            break
        name, args = resp.json()["methodResponses"][0][:2]
        if name == "error":
            stopped = f"method error {args.get('type')} after {made} creations"
            break
        ids = [v["id"] for v in (args.get("created") or {}).values() if isinstance(v, dict) and "id" in v]
        if ids:
            case.on_cleanup(lambda ids=ids: _set(c, {"destroy": ids}))
        made += len(ids)
        refused = args.get("notCreated") or {}
        if refused:
            first = next(iter(refused.values()))
            stopped = f"notCreated {first.get('type') if isinstance(first, dict) else first} after {made} creations"
    case.measure("burst_created", made, "subscriptions")
    if made == 0:
        notes.append(f"count limit not observable: the receiver's loopback URL is refused ({stopped})")
    elif stopped is None:
        problems.append(f"{made} subscriptions created in a burst without any limit (RFC 8620 8.7: the number and "
                        "rate of subscriptions per user must be limited)")
    else:
        notes.append(f"burst stopped: {stopped}")
    case.require(rid, not problems, "; ".join(problems))
    case.passed("; ".join(notes))
