"""JMAP core over HTTP (RFC 8620) and the mail data it carries (RFC 8621): session, requests, changes, blobs."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from conformance.checks.support.jmap import client, ids_in, scratch_mailbox
from conformance.errors import ConformanceFailure
from conformance.protocols.jmap import CORE, MAIL, sample_message

pytestmark = pytest.mark.uses("jmap")

PROBLEM = "urn:ietf:params:jmap:error:"


@pytest.mark.requirement("jmap.session.wellknown")
def test_session_wellknown(case):
    """GET /.well-known/jmap (authenticated) resolves, directly or by redirect, to the Session resource."""
    c = client(case)
    session = c.discover()
    assert isinstance(session, dict) and CORE in (session.get("capabilities") or {}), (
        f"/.well-known/jmap did not lead to a Session with {CORE}: {str(session)[:300]}")
    case.passed(f"/.well-known/jmap led to the Session at {c.session_url}")


@pytest.mark.requirement("jmap.session.object")
def test_session_object(case):
    """The Session has the required members and core limits; API responses carry its state as sessionState."""
    c = client(case)
    s = c.discover()
    missing = [k for k in ("capabilities", "accounts", "primaryAccounts", "username", "apiUrl", "downloadUrl",
                           "uploadUrl", "eventSourceUrl", "state") if k not in s]
    assert not missing, f"Session lacks {', '.join(missing)} (RFC 8620 2): {json.dumps(s)[:400]}"
    core = s["capabilities"].get(CORE) or {}
    limits = ["maxSizeUpload", "maxConcurrentUpload", "maxSizeRequest", "maxConcurrentRequests", "maxCallsInRequest",
              "maxObjectsInGet", "maxObjectsInSet", "collationAlgorithms"]
    absent = [k for k in limits if k not in core]
    assert not absent, f"{CORE} capability lacks {', '.join(absent)}: {core}"
    acc = c.account_id
    assert acc in s["accounts"], f"primaryAccounts[{MAIL}]={acc!r} is not in accounts {list(s['accounts'])}"
    data = c.call([["Core/echo", {"hello": "lemonade"}, "e0"]], [CORE])
    assert data.get("sessionState") == s["state"], (
        f"API response sessionState {data.get('sessionState')!r} differs from Session state {s['state']!r}")
    case.passed(f"Session complete (account {acc}); sessionState {s['state']!r} matches")


TEMPLATE_VARS = {"uploadUrl": {"accountId"}, "downloadUrl": {"accountId", "blobId", "type", "name"},
                 "eventSourceUrl": {"types", "closeafter", "ping"}}


@pytest.mark.requirement("jmap.session.templates")
def test_session_templates(case):
    """uploadUrl, downloadUrl and eventSourceUrl are RFC 6570 level-1 templates with exactly the required variables."""
    c = client(case)
    s = c.discover()
    problems = []
    for key, want in TEMPLATE_VARS.items():
        tpl = s.get(key)
        if not isinstance(tpl, str):
            problems.append(f"{key} missing")
            continue
        have = set(re.findall(r"\{([^}]*)\}", tpl))
        if not want <= have:
            problems.append(f"{key} {tpl!r} lacks {', '.join(sorted(want - have))}")
        bad = [v for v in have if not re.fullmatch(r"[A-Za-z0-9_]+", v)]
        if bad:
            problems.append(f"{key} {tpl!r} has non-level-1 expressions {bad}")
    assert not problems, "; ".join(problems)
    for key in ("apiUrl", *TEMPLATE_VARS):
        if not re.match(r"^https?://", s.get(key, "")):
            case.note(f"{key} is relative ({s.get(key)!r}); resolved against the Session URL")
    case.passed("templates carry " + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in TEMPLATE_VARS.items()))


def _problem(resp, kind: str) -> str | None:
    """None when resp is a 4xx problem details object of ``kind``; else what was wrong."""
    try:
        body = resp.json()
    except ValueError:
        return f"{resp.status_code} with a non-JSON body {resp.text[:120]!r}"
    if not (400 <= resp.status_code < 500):
        return f"status {resp.status_code} (expected 4xx), body {json.dumps(body)[:160]}"
    if not isinstance(body, dict) or body.get("type") != PROBLEM + kind:
        seen = body.get("type") if isinstance(body, dict) else repr(body)
        return f"{resp.status_code} with type {seen}, expected {PROBLEM + kind}"
    if body.get("status") not in (None, resp.status_code):
        return f"problem status {body.get('status')} differs from HTTP {resp.status_code}"
    return None


@pytest.mark.requirement("jmap.api.request-errors")
def test_request_level_errors(case):
    """notJSON, notRequest, unknownCapability and limit come back as problem details (RFC 7807) with a 4xx."""
    c = client(case)
    c.discover()
    limit = int((c.capabilities().get(CORE) or {}).get("maxCallsInRequest", 16))
    tries = {
        "notJSON": (b"this is not { json", "application/json"),
        "notRequest": (json.dumps({"using": [CORE], "calls": []}).encode(), "application/json"),
        "unknownCapability": (json.dumps({"using": [CORE, "urn:x-lemonade:nope"], "methodCalls": [
            ["Core/echo", {}, "0"]]}).encode(), "application/json"),
        "limit": (json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, str(i)] for i in range(limit + 1)]}
                             ).encode(), "application/json"),
    }
    problems = []
    for kind, (body, ctype) in tries.items():
        resp = c.post_api(body, ctype)
        why = _problem(resp, kind)
        if why:
            problems.append(f"{kind}: {why}")
        elif kind == "limit" and resp.json().get("limit") != "maxCallsInRequest":
            problems.append(f"limit: problem does not name the limit (limit={resp.json().get('limit')!r})")
        elif "problem+json" not in resp.headers.get("content-type", ""):
            case.note(f"{kind}: Content-Type {resp.headers.get('content-type')!r} (RFC 7807 uses application/problem+json)")
    assert not problems, "; ".join(problems)
    case.passed("notJSON, notRequest, unknownCapability and limit(maxCallsInRequest) answered as problem details")


@pytest.mark.requirement("jmap.api.method-errors", "jmap.api.in-order")
def test_method_error_in_place(case):
    """An unknown method gets an error response in its place; the calls after it still run, in order."""
    c = client(case)
    data = c.call([["Core/echo", {"n": 1}, "a"], ["Lemonade/nosuchmethod", {}, "b"], ["Core/echo", {"n": 3}, "c"]])
    rs = data["methodResponses"]
    assert [r[2] for r in rs] == ["a", "b", "c"], f"responses out of order or missing: {[r[:1] + r[2:] for r in rs]}"
    assert rs[1][0] == "error" and rs[1][1].get("type") == "unknownMethod", (
        f"call b (unknown method) answered {rs[1][0]} {rs[1][1]}, expected error unknownMethod")
    assert rs[0] == ["Core/echo", {"n": 1}, "a"] and rs[2] == ["Core/echo", {"n": 3}, "c"], (
        f"the echo calls around the error did not run normally: {rs[0]}, {rs[2]}")
    case.passed("unknownMethod in place; echo calls before and after ran in order")


@pytest.mark.requirement("jmap.get.state")
def test_get_state_changes(case):
    """Email/get's state string changes when an email is imported."""
    c = client(case)
    got = c.ok("Email/get", {"accountId": c.account_id, "ids": []})
    assert got.str("accountId") == c.account_id, (
        f"Email/get answered for account {got['accountId']!r}, asked for {c.account_id!r} (RFC 8620 5.1)")
    before = got.str("state")
    created = c.import_email(sample_message("state change"), c.mailbox_id())
    after = c.state("Email")
    assert after != before, f"Email state stayed {before!r} after importing {created['id']}"
    case.passed(f"Email state {before!r} -> {after!r} after an import")


# A state string may be outdated by any change to the account a moment after it was read (Cyrus 3.6 answers
# cannotCalculateChanges from every state older than the deletion of any mailbox, and other clients, the user's or the
# suite's other cases, delete mailboxes): RFC 8620 5.2 allows that answer, so a changes check that meets it measures
# again, from a fresh state, before concluding anything.
ATTEMPTS = 3


class StateOutdated(ConformanceFailure):
    """Email/changes answered cannotCalculateChanges for a state the check read moments before."""


def _outdated(name: str, args) -> bool:
    return name == "error" and args.get("type") == "cannotCalculateChanges"


def _changes(c, since: str, max_changes: int | None = None):
    """One Email/changes call from ``since``: (method name, arguments), an error included."""
    args = {"accountId": c.account_id, "sinceState": since}
    if max_changes is not None:
        args["maxChanges"] = max_changes
    return c.one("Email/changes", args)


@pytest.mark.requirement("jmap.changes.maxchanges")
def test_changes_maxchanges(case):
    """maxChanges=1 with several pending changes: at most one id and hasMoreChanges; maxChanges=0 is invalidArguments."""
    c = client(case)
    inbox = c.mailbox_id()
    for attempt in range(1, ATTEMPTS + 1):
        since = c.state("Email")
        for i in range(3):
            c.import_email(sample_message(f"maxchanges {i}"), inbox)
        name, args = _changes(c, since, 1)
        if not _outdated(name, args) or attempt == ATTEMPTS:
            break
        case.note(f"attempt {attempt}: maxChanges=1 from a state read moments before answered cannotCalculateChanges "
                  "(allowed: another change to the account may have outdated it); measuring again")
    if name == "error":
        assert args.get("type") == "cannotCalculateChanges", f"maxChanges=1 answered error {args}"
        case.informational("maxChanges=1 answered cannotCalculateChanges (allowed, but clients must resync fully)")
    else:
        n = sum(len(args.get(k) or []) for k in ("created", "updated", "destroyed"))
        assert n <= 1, f"maxChanges=1 but {n} ids returned: {args}"
        assert args.get("hasMoreChanges") is True, (f"3 changes pending, 1 returned, but "
                                                    f"hasMoreChanges={args.get('hasMoreChanges')}")
    name0, args0 = _changes(c, since, 0)
    assert name0 == "error" and args0.get("type") == "invalidArguments", (
        f"maxChanges=0 answered {name0} {args0}, expected error invalidArguments")
    case.passed("maxChanges=1 honoured with hasMoreChanges; maxChanges=0 rejected with invalidArguments")


def walk_changes(c, since: str, max_changes: int, limit: int = 200):
    """Follow Email/changes pages from ``since``; (created, updated, destroyed, pages, final state)."""
    created, updated, destroyed = set(), set(), set()
    pages = 0
    state = since
    while pages < limit:
        name, args = _changes(c, state, max_changes)
        if _outdated(name, args):
            raise StateOutdated(f"Email/changes from {state!r} (page {pages + 1}) answered error {dict(args)}")
        if name == "error":
            raise ConformanceFailure(f"Email/changes from {state!r} (page {pages + 1}) answered error {dict(args)}")
        pages += 1
        for i in args.get("created") or []:
            created.add(i)
        for i in args.get("updated") or []:
            if i not in created:
                updated.add(i)
        for i in args.get("destroyed") or []:
            if i in created:
                created.discard(i)
            else:
                destroyed.add(i)
            updated.discard(i)
        if args.str("newState") == state and args.get("hasMoreChanges"):
            raise ConformanceFailure(f"Email/changes returned hasMoreChanges with an unchanged state {state!r}")
        state = args.str("newState")
        if not args.get("hasMoreChanges"):
            break
    return created, updated, destroyed, pages, state


def in_mailbox(c, ids: set[str], mailbox_id: str) -> set[str]:
    """Those of ``ids`` that exist and are in ``mailbox_id`` now (Email/get mailboxIds)."""
    if not ids:
        return set()
    got = c.ok("Email/get", {"accountId": c.account_id, "ids": sorted(ids), "properties": ["mailboxIds"]})
    return {e.str("id") for e in got.list("list") if mailbox_id in (e.optional("mailboxIds", dict) or {})}


@pytest.mark.requirement("jmap.changes.paging", "jmapmail.email-changes")
def test_email_changes_reconstruct_after_reconnect(case):
    """Email/changes, paged after a reconnect, turns the old id set into exactly the server's current set."""
    # a mailbox of its own: the account may hold anything, and other cases change it at the same time
    box = scratch_mailbox(case, client(case, label="jmap#setup"))
    for attempt in range(1, ATTEMPTS + 1):
        c = client(case, label="jmap#before")
        keep = [c.import_email(sample_message(f"base {i}"), box)["id"] for i in range(3)]
        since = c.state("Email")
        known = set(ids_in(c, box))
        c.close()
        case.note("client disconnected; a second client changes the mailbox")
        w = client(case, label="jmap#writer")
        new = [w.import_email(sample_message(f"while away {i}"), box)["id"] for i in range(4)]
        w.ok("Email/set", {"accountId": w.account_id, "update": {keep[0]: {"keywords/$seen": True}},
                           "destroy": [keep[1], new[0]]})
        truth = set(ids_in(w, box))
        r = client(case, label="jmap#reconnected")
        bogus_name, bogus = _changes(r, "lemonade-bogus-state")
        assert bogus_name == "error" and bogus.get("type") in ("cannotCalculateChanges", "invalidArguments"), (
            f"sinceState='lemonade-bogus-state' answered {bogus_name} {bogus}, expected cannotCalculateChanges")
        try:
            created, updated, destroyed, pages, _ = walk_changes(r, since, 2)
            break
        except StateOutdated as e:
            if attempt == ATTEMPTS:
                raise
            case.note(f"attempt {attempt}: {e} (allowed: another change to the account may have outdated the state); "
                      "measuring again")
    # the account's changes include other mailboxes' (other cases, the user's mail): keep those of this mailbox
    elsewhere = created - in_mailbox(r, created, box)
    rebuilt = (known | (created - elsewhere)) - destroyed
    case.measure("pages", pages, "requests")
    assert rebuilt == truth, (f"after {pages} Email/changes page(s) the rebuilt set differs from Email/query: "
                              f"missing {sorted(truth - rebuilt)}, extra {sorted(rebuilt - truth)} "
                              f"(created {sorted(created)}, destroyed {sorted(destroyed)})")
    assert keep[0] in updated or keep[0] in created, f"flag change on {keep[0]} not reported as updated: {sorted(updated)}"
    case.passed(f"{len(truth)} ids rebuilt exactly from {pages} page(s) of maxChanges=2")


@pytest.mark.requirement("jmap.upload.response", "jmap.download.headers")
def test_upload_download_identical(case):
    """An upload answers {accountId, blobId, type, size}; downloading the blob gives the same bytes and type."""
    c = client(case)
    data = bytes(range(256)) * 37 + b"\r\n.\r\nlemonade\x00end"
    up = c.upload(data, "application/x-lemonade-test")
    assert up.status_code in (200, 201), f"upload answered {up.status_code}: {up.text[:200]}"
    info = up.json()
    missing = [k for k in ("accountId", "blobId", "type", "size") if k not in info]
    assert not missing, f"upload response lacks {', '.join(missing)}: {info}"
    assert info["size"] == len(data), f"upload size {info['size']} != {len(data)} octets sent"
    down = c.download(info["blobId"], "a.bin", "application/x-lemonade-test")
    assert down.status_code == 200, f"download answered {down.status_code}"
    assert hashlib.sha256(down.content).hexdigest() == hashlib.sha256(data).hexdigest(), (
        f"downloaded {len(down.content)} octets differ from the {len(data)} uploaded")
    ctype = down.headers.get("content-type", "").split(";")[0].strip()
    assert ctype == "application/x-lemonade-test", f"download Content-Type {ctype!r}, expected the type variable"
    cd = down.headers.get("content-disposition", "")
    if cd:
        assert "a.bin" in cd, f"Content-Disposition {cd!r} does not carry the name variable a.bin"
    case.passed(f"{len(data)} octets identical after upload and download; type and name honoured")


SIGNED_LIKE = (b"From: Alice <alice@localhost>\r\nTo: bob@localhost\r\nSubject: byte-exact\r\n"
               b"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\nMessage-ID: <{unique}@lemonade.test>\r\n"
               b"X-Folded: a header folded\r\n\tunusually  with   spaces \r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b1\r\n\r\n"
               b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ntrailing spaces   \r\n\r\n--b1\r\n"
               b"Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nx\r\n"
               b"-----END PGP SIGNATURE-----\r\n--b1--\r\n")


@pytest.mark.requirement("jmapmail.import.modified-blobid", "jmapmail.blobid-raw")
def test_import_keeps_blob_byte_exact(case):
    """Email/import of an upload: the same blobId means the same octets, and Email.blobId downloads them exactly."""
    c = client(case)
    # a Message-ID of this run's own: a server may deduplicate identical octets (Cyrus answers alreadyExists)
    raw = SIGNED_LIKE.replace(b"{unique}", case.unique("byte-exact").encode())
    created = c.import_email(raw, c.mailbox_id())
    got = c.ok("Email/get", {"accountId": c.account_id, "ids": [created["id"]], "properties": ["blobId", "size"]})
    email = got.list("list")[0] if got.list("list") else {}
    blob = email.get("blobId") or created.get("blobId")
    down = c.download(blob, "m.eml", "message/rfc822")
    assert down.status_code == 200, f"download of Email.blobId {blob} answered {down.status_code}"
    same = down.content == raw
    if blob == created["blobId"]:
        assert same, (f"Email.blobId equals the uploaded blobId {blob} but the downloaded octets differ "
                      f"({len(down.content)} vs {len(raw)} octets)")
        case.passed("import kept the uploaded blobId and the octets byte for byte")
    else:
        case.informational(f"import changed the blobId ({created['blobId']} -> {blob}); "
                           f"the content is {'identical' if same else 'modified'}")
