"""JMAP core over HTTP (RFC 8620) and the mail data it carries (RFC 8621): session, requests, changes, blobs."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from conformance.checks.support import Blame, examine, fetch_uid, search_uids
from conformance.checks.support.jmap import client, ids_in, scratch_mailbox
from conformance.errors import ConformanceFailure, HarnessError
from conformance.fixtures.smime import first_difference
from conformance.protocols.imapwire import quote
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
    """An unknown method gets an error response in its place (jmap.api.method-errors); the calls around it still run,
    and the responses come in the order of the calls (jmap.api.in-order)."""
    c = client(case)
    data = c.call([["Core/echo", {"n": 1}, "a"], ["Lemonade/nosuchmethod", {}, "b"], ["Core/echo", {"n": 3}, "c"]])
    rs = data["methodResponses"]
    ids = [r[2] for r in rs]
    case.require("jmap.api.in-order", ids == ["a", "b", "c"],
                 f"responses out of order or missing: {[r[:1] + r[2:] for r in rs]}")
    by_id = {r[2]: r for r in rs}
    b = by_id.get("b")
    case.require("jmap.api.method-errors", b is not None and b[0] == "error" and b[1].get("type") == "unknownMethod",
                 f"call b (unknown method) answered {b[0] + ' ' + str(b[1]) if b else 'nothing'}, expected error "
                 f"unknownMethod in its place")
    case.require("jmap.api.in-order", by_id.get("a") == ["Core/echo", {"n": 1}, "a"]
                 and by_id.get("c") == ["Core/echo", {"n": 3}, "c"],
                 f"the echo calls around the error did not run normally: {by_id.get('a')}, {by_id.get('c')}")
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


class StateOutdated(Exception):
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
    """maxChanges=1 with several pending changes: at most one id and hasMoreChanges (or cannotCalculateChanges, which
    RFC 8620 5.2 allows); maxChanges=0 is invalidArguments."""
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
        case.require("jmap.changes.maxchanges", args.get("type") == "cannotCalculateChanges",
                     f"maxChanges=1 answered error {args}")
        case.note("maxChanges=1 answered cannotCalculateChanges (allowed; clients must then resync fully)")
    else:
        n = sum(len(args.get(k) or []) for k in ("created", "updated", "destroyed"))
        case.require("jmap.changes.maxchanges", n <= 1, f"maxChanges=1 but {n} ids returned: {args}")
        case.require("jmap.changes.maxchanges", args.get("hasMoreChanges") is True,
                     f"3 changes pending, at most 1 returned, but hasMoreChanges={args.get('hasMoreChanges')}")
    name0, args0 = _changes(c, since, 0)
    case.require("jmap.changes.maxchanges", name0 == "error" and args0.get("type") == "invalidArguments",
                 f"maxChanges=0 answered {name0} {args0}, expected error invalidArguments")
    case.passed("maxChanges=1 honoured" + (" (cannotCalculateChanges)" if name == "error" else " with hasMoreChanges")
                + "; maxChanges=0 rejected with invalidArguments")


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
    """Email/changes, paged after a reconnect, turns the old id set into exactly the server's current set; an unusable
    sinceState gets cannotCalculateChanges (jmap.changes.paging). A server may answer cannotCalculateChanges for a
    real state too (RFC 8620 5.2): the check measures again from a fresh state, and when every attempt is outdated the
    pages cannot be judged (not-applicable, with the reason)."""
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
        if not (bogus_name == "error" and bogus.get("type") in ("cannotCalculateChanges", "invalidArguments")):
            case.require("jmap.changes.paging", False, f"sinceState='lemonade-bogus-state' answered {bogus_name} "
                                                       f"{bogus}, expected cannotCalculateChanges")
        try:
            created, updated, destroyed, pages, _ = walk_changes(r, since, 2)
            break
        except StateOutdated as e:
            if attempt == ATTEMPTS:
                for rid in ("jmap.changes.paging", "jmapmail.email-changes"):
                    case.requirement_not_applicable(rid, f"{e} in each of {ATTEMPTS} attempts (allowed by RFC 8620 "
                                                         f"5.2): the pages cannot be walked, the client must resync "
                                                         f"fully")
                return
            case.note(f"attempt {attempt}: {e} (allowed: another change to the account may have outdated the state); "
                      "measuring again")
    # the account's changes include other mailboxes' (other cases, the user's mail): keep those of this mailbox
    elsewhere = created - in_mailbox(r, created, box)
    rebuilt = (known | (created - elsewhere)) - destroyed
    case.measure("pages", pages, "requests")
    for rid in ("jmap.changes.paging", "jmapmail.email-changes"):
        case.require(rid, rebuilt == truth,
                     f"after {pages} Email/changes page(s) the rebuilt set differs from Email/query: missing "
                     f"{sorted(truth - rebuilt)}, extra {sorted(rebuilt - truth)} (created {sorted(created)}, destroyed "
                     f"{sorted(destroyed)})")
        case.require(rid, keep[0] in updated or keep[0] in created,
                     f"flag change on {keep[0]} not reported as updated: {sorted(updated)}")
    case.passed(f"{len(truth)} ids rebuilt exactly from {pages} page(s) of maxChanges=2")


@pytest.mark.requirement("jmap.upload.response", "jmap.download.headers")
def test_upload_download_identical(case):
    """An upload answers {accountId, blobId, type, size} with the size sent (jmap.upload.response); downloading the
    blob gives the same bytes, with the type and name asked for (jmap.download.headers)."""
    c = client(case)
    data = bytes(range(256)) * 37 + b"\r\n.\r\nlemonade\x00end"
    up = c.upload(data, "application/x-lemonade-test")
    if up.status_code not in (200, 201):
        raise ConformanceFailure(f"upload answered {up.status_code}: {up.text[:200]}", requirement="jmap.upload.response")
    try:
        info = up.json()
    except ValueError:
        info = None
    if not case.require("jmap.upload.response", isinstance(info, dict),
                        f"the upload response is not a JSON object: {up.text[:200]!r}"):
        return
    missing = [k for k in ("accountId", "blobId", "type", "size") if k not in info]
    case.require("jmap.upload.response", not missing, f"upload response lacks {', '.join(missing)}: {info}")
    case.require("jmap.upload.response", info.get("size") == len(data),
                 f"upload size {info.get('size')} != {len(data)} octets sent")
    if "blobId" not in info:
        case.requirement_not_applicable("jmap.download.headers", "the upload named no blobId to download")
        return
    down = c.download(info["blobId"], "a.bin", "application/x-lemonade-test")
    if not case.require("jmap.download.headers", down.status_code == 200,
                        f"download of the uploaded blob answered {down.status_code}"):
        return
    case.require("jmap.download.headers", hashlib.sha256(down.content).digest() == hashlib.sha256(data).digest(),
                 f"downloaded {len(down.content)} octets differ from the {len(data)} uploaded")
    ctype = down.headers.get("content-type", "").split(";")[0].strip()
    case.require("jmap.download.headers", ctype == "application/x-lemonade-test",
                 f"download Content-Type {ctype!r}, expected the type variable")
    cd = down.headers.get("content-disposition", "")
    case.require("jmap.download.headers", not cd or "a.bin" in cd,
                 f"Content-Disposition {cd!r} does not carry the name variable a.bin")
    case.passed(f"{len(data)} octets identical after upload and download; type and name honoured")


SIGNED_LIKE = (b"From: Alice <alice@localhost>\r\nTo: bob@localhost\r\nSubject: byte-exact\r\n"
               b"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\nMessage-ID: <{marker}>\r\n"
               b"X-Folded: a header folded\r\n\tunusually  with   spaces \r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b1\r\n\r\n"
               b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ntrailing spaces   \r\n\r\n--b1\r\n"
               b"Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nx\r\n"
               b"-----END PGP SIGNATURE-----\r\n--b1--\r\n")


def _imap_body(case, marker: str) -> bytes | None:
    """BODY[] of the INBOX message whose Message-ID is ``marker``, read over IMAP on a direct connection (None when
    the target has no IMAP endpoint or the message is not found there)."""
    if case.target.endpoint("imap") is None and case.target.endpoint("imaps") is None:
        return None
    endpoint = "imap" if case.target.endpoint("imap") is not None else "imaps"
    conn = case.imap(via_path=False, endpoint=endpoint, label="imap-cross-check")
    examine(conn, "INBOX")
    found = search_uids(conn, f"HEADER Message-ID {quote(marker)}")
    if not found:
        return None
    data = fetch_uid(conn, found[-1], "BODY.PEEK[]", blame=Blame.SERVER).get("BODY[]")
    return data if isinstance(data, bytes) else None


@pytest.mark.requirement("jmapmail.import.modified-blobid", "jmapmail.blobid-raw")
def test_import_keeps_blob_byte_exact(case):
    """Upload a signed-like message and Email/import its blob. The import's blobId is the Email's (Email/get), and
    when it is the uploaded blobId the stored octets are the uploaded ones (jmapmail.import.modified-blobid: a server
    that changes a message must give it a new blobId). Email.blobId downloads the raw message: IMAP's BODY[] of the
    same message where the target speaks IMAP too, else the uploaded octets when the blobId was kept
    (jmapmail.blobid-raw)."""
    c = client(case)
    # a Message-ID of this run's own: a server may deduplicate identical octets (Cyrus answers alreadyExists)
    marker = f"{case.unique('byte-exact')}@lemonade.test"
    raw = SIGNED_LIKE.replace(b"{marker}", marker.encode())
    up = c.upload(raw)
    if up.status_code not in (200, 201):
        raise HarnessError(f"upload of the message failed: {up.status_code} {up.text[:200]}")
    uploaded = up.json()["blobId"]
    args = c.ok("Email/import", {"accountId": c.account_id, "emails": {
        "e1": {"blobId": uploaded, "mailboxIds": {c.mailbox_id(): True}, "keywords": {}}}})
    created = (args.get("created") or {}).get("e1")
    if not created:
        raise ConformanceFailure(f"Email/import of an uploaded RFC 5322 message did not create it: "
                                 f"{args.get('notCreated')}")
    case.on_cleanup(lambda: c.one("Email/set", {"accountId": c.account_id, "destroy": [created["id"]]}))
    imported = created.get("blobId")
    got = c.ok("Email/get", {"accountId": c.account_id, "ids": [created["id"]], "properties": ["blobId", "size"]})
    email = (got.get("list") or [{}])[0]
    stored = email.get("blobId")
    case.measure("blob_ids", {"uploaded": uploaded, "import_answer": imported, "email": stored})
    case.require("jmapmail.import.modified-blobid", imported is not None and imported == stored,
                 f"Email/import answered blobId {imported!r} but the Email's blobId (Email/get) is {stored!r}: the "
                 f"import's answer does not name the stored message")
    down = c.download(stored, "m.eml", "message/rfc822") if stored else None
    if down is None or down.status_code != 200:
        raise ConformanceFailure(f"download of Email.blobId {stored!r} answered "
                                 f"{down.status_code if down is not None else 'nothing (no blobId)'}",
                                 requirement="jmapmail.blobid-raw")
    kept = imported == uploaded
    if kept:
        case.require("jmapmail.import.modified-blobid", down.content == raw,
                     f"the import kept the uploaded blobId {uploaded!r}, but the stored message differs from the "
                     f"uploaded octets: {first_difference(raw, down.content)}")
    else:
        case.note(f"the import gave the message a new blobId ({uploaded} -> {imported}); the content is "
                  f"{'identical' if down.content == raw else 'modified'}, which a new blobId allows")
    imap_body = _imap_body(case, marker)
    if imap_body is not None:
        case.require("jmapmail.blobid-raw", down.content == imap_body,
                     f"Email.blobId {stored!r} does not download the raw message IMAP's BODY[] holds: "
                     f"{first_difference(imap_body, down.content)}")
    elif kept:
        case.require("jmapmail.blobid-raw", down.content == raw,
                     f"Email.blobId {stored!r} (the uploaded blob) does not download the raw uploaded octets: "
                     f"{first_difference(raw, down.content)}")
    else:
        case.requirement_not_applicable("jmapmail.blobid-raw", "the import changed the blobId and the target has no "
                                        "IMAP endpoint to read the raw message another way")
    case.passed(f"{'the import kept the uploaded blobId and' if kept else 'a new blobId;'} Email.blobId downloads the "
                f"raw message byte for byte{' (compared with IMAP BODY[])' if imap_body is not None else ''}")
