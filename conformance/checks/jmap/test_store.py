"""JMAP data between users and over time: private uploads, blob lifetime, Email/import errors, how far /changes
reaches back (RFC 8620 5.2 and 6, RFC 8621 4.8).

Every message a check imports carries a per-case nonce (a server may refuse an exact duplicate) and is destroyed at
the end of the case; uploads cannot be deleted in JMAP and are left to the server's own expiry.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import pytest

from conformance.checks.support.jmap import client, destroy_at_end
from conformance.errors import ConformanceFailure, HarnessError
from conformance.protocols.jmap import JmapClient, sample_message

pytestmark = pytest.mark.uses("jmap")


def download_as(c: JmapClient, account_id: str, blob_id: str, name: str = "blob.bin",
                type_: str = "application/octet-stream"):
    """GET the downloadUrl of ``blob_id`` filled with ``account_id`` (which need not be the client's own)."""
    url = c.url("downloadUrl")
    for var, value in (("accountId", account_id), ("blobId", blob_id), ("name", name), ("type", type_)):
        url = url.replace("{" + var + "}", quote(value, safe=""))
    return c.request("GET", url)


def upload(c: JmapClient, data: bytes, ctype: str = "application/octet-stream") -> str:
    """Upload ``data`` (a set-up step: a failure is the harness's, judged elsewhere by jmap.upload.response)."""
    up = c.upload(data, ctype)
    if up.status_code not in (200, 201):
        raise HarnessError(f"upload answered {up.status_code}: {up.text[:200]}")
    return up.json()["blobId"]


@pytest.mark.requirement("jmap.upload.private")
def test_upload_private(case):
    """A fresh, unreferenced upload is readable by its uploader only: another user gets no byte of it, neither through
    their own account nor by naming the uploader's."""
    rid = "jmap.upload.private"
    a = client(case)
    b = client(case, 1, label="jmap#other-user")
    data = f"lemonade private upload {uuid.uuid4().hex}\r\n".encode() * 20
    blob = upload(a, data)
    own = a.download(blob)
    if own.status_code != 200 or own.content != data:
        raise HarnessError(f"the uploader cannot read its own blob back ({own.status_code}); judged by "
                           "jmap/upload_download_identical")
    leaks, seen = [], []
    for label, account in ((f"the other user's own account {b.account_id}", b.account_id),
                           (f"the uploader's account {a.account_id}", a.account_id)):
        r = download_as(b, account, blob)
        seen.append(f"{label}: {r.status_code}")
        if r.status_code == 200 and r.content == data:
            leaks.append(f"{b.username} downloaded {a.username}'s unreferenced blob {blob} through {label}")
    case.require(rid, not leaks, "; ".join(leaks) + " (RFC 8620 6.1: only the uploader may read it)")
    case.passed(f"{b.username} cannot read {a.username}'s fresh upload ({'; '.join(seen)})")


@pytest.mark.requirement("jmap.blob.retention")
@pytest.mark.depth("full")
def test_blob_retention(case):
    """An unreferenced upload can still be downloaded, unchanged, ``age`` seconds later (RFC 8620 6: at least 1 h);
    the blob is read every ``poll`` seconds so a server that drops it earlier fails at once."""
    rid = "jmap.blob.retention"
    age, poll = case.param("age"), case.param("poll")
    c = client(case)
    data = f"lemonade retained blob {uuid.uuid4().hex}\r\n".encode() * 50
    blob = upload(c, data)
    t0 = time.monotonic()
    reads = 0
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= age:
            break
        time.sleep(min(poll, age - elapsed))
        r = c.download(blob)
        reads += 1
        if r.status_code != 200 or r.content != data:
            case.require(rid, False, f"the unreferenced blob {blob} was gone or changed {time.monotonic() - t0:.0f} s "
                                     f"after its upload (download answered {r.status_code}, {len(r.content)} octets); "
                                     "RFC 8620 6: kept at least 1 hour unless quota forces it")
            return
    case.measure("age", round(time.monotonic() - t0), "s")
    case.require(rid, True, "")
    case.passed(f"blob unchanged after {age:.0f} s ({reads} reads)")


@pytest.mark.requirement("jmapmail.import.errors")
def test_import_errors(case):
    """Email/import: an unknown blobId, an unknown or empty mailboxIds and an invalid keyword each give
    invalidProperties; a second import of the same blob into the same mailbox is a new Email or alreadyExists with
    existingId; a message with raw UTF-8 in its headers (RFC 6532) is accepted and its Subject read as UTF-8."""
    rid = "jmapmail.import.errors"
    c = client(case)
    inbox = c.mailbox_id()
    nonce = uuid.uuid4().hex[:12]
    blob = upload(c, sample_message(f"import errors {nonce}"), "message/rfc822")
    bad = {
        "blob": ({"blobId": f"lemonade-no-such-blob-{nonce}", "mailboxIds": {inbox: True}}, "blobId"),
        "mailbox": ({"blobId": blob, "mailboxIds": {f"lemonade-no-such-mailbox-{nonce}": True}}, "mailboxIds"),
        "nomailbox": ({"blobId": blob, "mailboxIds": {}}, "mailboxIds"),
        "keyword": ({"blobId": blob, "mailboxIds": {inbox: True}, "keywords": {"bad keyword(": True}}, "keywords"),
    }
    problems, notes = [], []
    args = c.ok("Email/import", {"accountId": c.account_id, "emails": {k: v for k, (v, _) in bad.items()}})
    made = [e["id"] for e in (args.get("created") or {}).values() if isinstance(e, dict) and "id" in e]
    destroy_at_end(case, c, made)
    for key, (obj, prop) in bad.items():
        err = (args.get("notCreated") or {}).get(key)
        if not isinstance(err, dict) or err.get("type") != "invalidProperties":
            got = "created" if key in (args.get("created") or {}) else err
            problems.append(f"{prop} {json.dumps(obj[prop])}: answered {got}, expected invalidProperties")
        elif prop not in (err.get("properties") or []):
            notes.append(f"{prop}: invalidProperties names {err.get('properties')}")
    into_inbox = {"blobId": blob, "mailboxIds": {inbox: True}}
    first = c.ok("Email/import", {"accountId": c.account_id, "emails": {"one": into_inbox}})
    one = (first.get("created") or {}).get("one")
    if not one:
        raise HarnessError(f"a valid Email/import failed: {first.get('notCreated')}")
    destroy_at_end(case, c, [one["id"]])
    again = c.ok("Email/import", {"accountId": c.account_id, "emails": {"two": into_inbox}})
    two = (again.get("created") or {}).get("two")
    dup = (again.get("notCreated") or {}).get("two")
    if two:
        destroy_at_end(case, c, [two["id"]])
        notes.append("duplicates allowed")
    elif not isinstance(dup, dict) or dup.get("type") != "alreadyExists" or dup.get("existingId") != one["id"]:
        problems.append(f"a second import of the same blob into the same mailbox answered {dup}, expected a new Email "
                        f"or alreadyExists with existingId {one['id']!r}")
    else:
        notes.append("duplicate refused with alreadyExists/existingId")
    subject = f"Grüße aus Köln – 日本語 {nonce}"
    raw = (f"From: Jörg Müller <jörg@bücher.example>\r\nTo: bob@localhost\r\nSubject: {subject}\r\n"
           f"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\nMessage-ID: <eai-{nonce}@lemonade.test>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nUTF-8 headers (RFC 6532).\r\n").encode("utf-8")
    eai = c.ok("Email/import", {"accountId": c.account_id, "emails": {"eai": {
        "blobId": upload(c, raw, "message/rfc822"), "mailboxIds": {inbox: True}}}})
    utf8 = (eai.get("created") or {}).get("eai")
    if not utf8:
        problems.append("a message with raw UTF-8 headers (RFC 6532) was refused: "
                        f"{(eai.get('notCreated') or {}).get('eai')}")
    else:
        destroy_at_end(case, c, [utf8["id"]])
        got = c.ok("Email/get", {"accountId": c.account_id, "ids": [utf8["id"]], "properties": ["subject"]})
        seen = ((got.get("list") or [{}])[0]).get("subject")
        if seen != subject:
            problems.append(f"the UTF-8 Subject was imported but reads back as {seen!r}, not {subject!r}")
    case.require(rid, not problems, "; ".join(problems))
    case.passed("bad blobId, mailboxIds and keywords refused with invalidProperties; "
                + "; ".join(notes + ["raw UTF-8 headers accepted"]))


def _changes_from(c: JmapClient, since: str, max_changes: int, limit: int = 500):
    """Walk Email/changes from ``since``: (created, updated, destroyed, pages), or the method error that stopped it."""
    created, updated, destroyed = set(), set(), set()
    state, pages = since, 0
    while pages < limit:
        name, args = c.one("Email/changes", {"accountId": c.account_id, "sinceState": state, "maxChanges": max_changes})
        if name == "error":
            return args, pages
        pages += 1
        created |= set(args.get("created") or [])
        updated |= set(args.get("updated") or [])
        destroyed |= set(args.get("destroyed") or [])
        if not args.get("hasMoreChanges"):
            return (created, updated, destroyed), pages
        if args.get("newState") == state:
            raise ConformanceFailure(f"Email/changes returned hasMoreChanges with an unchanged state {state!r}")
        state = args.get("newState")
    raise ConformanceFailure(f"Email/changes still had more changes after {limit} pages")


@pytest.mark.requirement("jmap.changes.retention")
def test_changes_reach_back(case):
    """A state handed out before ``changes`` changes (a destroy first, then flag changes, then an import) still gives
    its changes: no cannotCalculateChanges, and every change there (RFC 8620 5.2 asks for 30 days; this is the
    scaled-down version the suite can wait for)."""
    rid = "jmap.changes.retention"
    n = case.param("changes")
    c = client(case)
    inbox = c.mailbox_id()
    nonce = uuid.uuid4().hex[:8]
    known = [c.import_email(sample_message(f"retention {nonce} {i}"), inbox)["id"] for i in range(3)]
    destroy_at_end(case, c, known)
    since = c.state("Email")
    c.ok("Email/set", {"accountId": c.account_id, "destroy": [known[0]]})
    per_call = 2  # each Email/set changes both remaining messages
    calls = [["Email/set", {"accountId": c.account_id, "update": {
        known[1]: {"keywords/$flagged": i % 2 == 0 or None}, known[2]: {"keywords/$seen": i % 2 == 0 or None}}}, f"f{i}"]
        for i in range(max(1, n // per_call))]
    limit = int((c.capabilities().get("urn:ietf:params:jmap:core") or {}).get("maxCallsInRequest", 16))
    for i in range(0, len(calls), limit):
        data = c.call(calls[i:i + limit])
        errors = [r for r in data["methodResponses"] if r[0] == "error"]
        if errors:
            raise HarnessError(f"Email/set of the flag changes failed: {errors[0]}")
    new = c.import_email(sample_message(f"retention {nonce} new"), inbox)["id"]
    destroy_at_end(case, c, [new])
    case.measure("changes_made", len(calls) * per_call + 2, "changes")
    result, pages = _changes_from(c, since, 50)
    if isinstance(result, dict):
        case.require(rid, False, f"Email/changes from a state handed out {len(calls) * per_call + 2} changes ago "
                                 f"answered {result.get('type')} ({result.get('description', '')}): RFC 8620 5.2 asks "
                                 "that changes be calculable from any state of the last 30 days")
        return
    created, updated, destroyed = result
    missing = []
    if known[0] not in destroyed:
        missing.append(f"the destroyed {known[0]}")
    if not {known[1], known[2]} <= updated:
        missing.append(f"the updated {sorted({known[1], known[2]} - updated)}")
    if new not in created:
        missing.append(f"the created {new}")
    case.measure("pages", pages, "requests")
    case.require(rid, not missing, f"Email/changes from the old state lacks {', '.join(missing)} (created "
                                   f"{sorted(created)}, updated {sorted(updated)}, destroyed {sorted(destroyed)})")
    case.passed(f"changes calculated across {len(calls) * per_call + 2} changes in {pages} page(s)")
