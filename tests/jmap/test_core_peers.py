"""The JMAP core, WebSocket and reachability checks against scripted peers (tests/fakes/jmap.py): all pass against the
conformant peer; each fault fails its check for that check's own reason; lawful answers (cannotCalculateChanges) are
not failures; a peer without push fails reachability."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.conftest import run_cli
from tests.fakes.jmap import FakeJmapServer

CHECKS = {
    "jmap/session_wellknown", "jmap/session_object", "jmap/session_templates", "jmap/request_level_errors",
    "jmap/method_error_in_place", "jmap/get_state_changes", "jmap/changes_maxchanges",
    "jmap/email_changes_reconstruct_after_reconnect", "jmap/upload_download_identical",
    "jmap/import_keeps_blob_byte_exact", "jmap/ws_discovery_and_handshake", "jmap/ws_request_ids_and_errors",
    "jmap/ws_fragmented_request", "jmap/ws_push_enable_null_means_all", "jmap/ws_push_state_catchup",
    "jmap/ws_push_disable", "jmap/ping_zero_means_none", "jmap/last_event_id_resume",
}
K = " or ".join(c.split("/")[1] for c in CHECKS)
RUNS = {  # behaviour -> (-k, profiles)
    "conformant": (K, ("jmap",)),
    "sloppy": (" or ".join(c.split("/")[1] for c in CHECKS if c != "jmap/session_wellknown"), ("jmap",)),
    "no-wellknown": ("session_wellknown", ("jmap",)),
    "import-fixes": ("import_keeps_blob_byte_exact", ("jmap",)),
    "cannot-calculate": ("email_changes_reconstruct or changes_maxchanges", ("jmap",)),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One `lemonade run` per peer behaviour, concurrently."""
    tmp = tmp_path_factory.mktemp("jmap-core")
    with ExitStack() as stack:
        jobs = {}
        for behaviour, (k, profiles) in RUNS.items():
            fake = stack.enter_context(FakeJmapServer(behaviour))
            args = ["run", "--target", str(fake.target_file(tmp)), "--scenario", "direct", "-k", k]
            if len(k.split(" or ")) > 3:
                args += ["-n", "2"]
            for p in profiles:
                args += ["--profile", p]
            jobs[behaviour] = args
        with ThreadPoolExecutor(3) as pool:
            done = {b: pool.submit(run_cli, tmp / b, *a) for b, a in jobs.items()}
            yield {b: f.result() for b, f in done.items()}


def _verdicts(run) -> dict[str, str]:
    return {key.split("|")[0]: verdict for key, verdict in run.verdicts().items()}


def test_conformant_peer_passes_every_core_check(runs):
    run = runs["conformant"]
    got = _verdicts(run)
    assert CHECKS <= set(got), f"missing {CHECKS - set(got)}\n{run.out}\n{run.err}"
    bad = {c: got[c] for c in CHECKS if got[c] != "pass"}
    assert not bad, f"{bad}\n{run.out}"


@pytest.mark.proves("jmap/session_wellknown", "jmap.session.wellknown")
@pytest.mark.proves("jmap/session_object", "jmap.session.object")
@pytest.mark.proves("jmap/session_templates", "jmap.session.templates")
@pytest.mark.proves("jmap/request_level_errors", "jmap.api.request-errors")
@pytest.mark.proves("jmap/method_error_in_place", "jmap.api.method-errors")
@pytest.mark.proves("jmap/method_error_in_place", "jmap.api.in-order")
@pytest.mark.proves("jmap/get_state_changes", "jmap.get.state")
@pytest.mark.proves("jmap/changes_maxchanges", "jmap.changes.maxchanges")
@pytest.mark.proves("jmap/email_changes_reconstruct_after_reconnect", "jmap.changes.paging")
@pytest.mark.proves("jmap/email_changes_reconstruct_after_reconnect", "jmapmail.email-changes")
@pytest.mark.proves("jmap/upload_download_identical", "jmap.download.headers")
@pytest.mark.proves("jmap/upload_download_identical", "jmap.upload.response")
@pytest.mark.proves("jmap/import_keeps_blob_byte_exact", "jmapmail.blobid-raw")
@pytest.mark.proves("jmap/ws_discovery_and_handshake", "jmapws.discovery-handshake")
@pytest.mark.proves("jmap/ws_request_ids_and_errors", "jmapws.request-id")
@pytest.mark.proves("jmap/ws_fragmented_request", "jmapws.frames")
@pytest.mark.proves("jmap/ws_push_enable_null_means_all", "jmapws.push-enable")
@pytest.mark.proves("jmap/ws_push_disable", "jmapws.push-enable")
@pytest.mark.proves("jmap/ping_zero_means_none", "jmap.eventsource.ping")
def test_each_fault_of_the_sloppy_peers_fails_its_check(runs, prove):
    sloppy = runs["sloppy"]
    prove(runs["no-wellknown"], "jmap/session_wellknown", "jmap.session.wellknown", "/.well-known/jmap")
    for check, rid, words in [
        ("jmap/session_object", "jmap.session.object", "sessionState 's2' differs from Session state 's1'"),
        ("jmap/session_templates", "jmap.session.templates", "lacks name"),
        ("jmap/request_level_errors", "jmap.api.request-errors", "notJSON: 500 with a non-JSON body"),
        ("jmap/method_error_in_place", "jmap.api.method-errors", "expected error unknownMethod in its place"),
        ("jmap/method_error_in_place", "jmap.api.in-order", "responses out of order or missing"),
        ("jmap/get_state_changes", "jmap.get.state", "Email state stayed"),
        ("jmap/changes_maxchanges", "jmap.changes.maxchanges", "the response to Email/changes is missing"),
        ("jmap/email_changes_reconstruct_after_reconnect", "jmap.changes.paging", "the response to Email/changes"),
        ("jmap/email_changes_reconstruct_after_reconnect", "jmapmail.email-changes", "the response to Email/changes"),
        ("jmap/upload_download_identical", "jmap.download.headers", "octets differ from the 9489 uploaded"),
        ("jmap/upload_download_identical", "jmap.upload.response", "upload response lacks accountId"),
        ("jmap/import_keeps_blob_byte_exact", "jmapmail.blobid-raw", "does not download the raw uploaded octets"),
        ("jmap/ws_discovery_and_handshake", "jmapws.discovery-handshake", "is not a wss-URI"),
        ("jmap/ws_request_ids_and_errors", "jmapws.request-id", "Response requestId None"),
        ("jmap/ws_fragmented_request", "jmapws.frames", "no Response to a fragmented Request"),
        ("jmap/ws_push_enable_null_means_all", "jmapws.push-enable", "dataTypes null means all types"),
        ("jmap/ws_push_disable", "jmapws.push-enable", "StateChange after WebSocketPushDisable"),
        ("jmap/ping_zero_means_none", "jmap.eventsource.ping", "ping=0 but"),
    ]:
        prove(sloppy, check, rid, words)
    assert sloppy.rc == 1


@pytest.mark.proves("jmap/import_keeps_blob_byte_exact", "jmapmail.import.modified-blobid")
def test_import_that_changes_the_message_but_answers_the_uploaded_blobid_fails(runs, prove):
    """The peer stores a changed copy under a new blob and answers the import with the uploaded blobId. The check used
    to compare Email/get with the import's answer as rewritten by the client (informational); it now compares the
    upload, the import's answer and the Email."""
    r = prove(runs["import-fixes"], "jmap/import_keeps_blob_byte_exact", "jmapmail.import.modified-blobid",
              ["Email/import answered blobId", "the Email's blobId (Email/get) is"])
    ids = r["evidence"]["measurements"]["blob_ids"]["value"]
    assert ids["uploaded"] == ids["import_answer"] != ids["email"], ids


def test_cannot_calculate_changes_is_no_failure(runs):
    """cannotCalculateChanges is a lawful answer (RFC 8620 5.2): the paging check cannot walk pages (not-applicable,
    with the reason) and maxChanges=0 is still judged."""
    run = runs["cannot-calculate"]
    r = run.result("jmap/email_changes_reconstruct_after_reconnect")
    assert r["verdict"] == "not-applicable" and "cannotCalculateChanges (allowed" in r["message"], r
    assert run.result("jmap/changes_maxchanges")["verdict"] == "pass"


@pytest.mark.proves("jmap/reachability", "mobile.http.mail-over-https")
def test_reachability_needs_a_complete_protocol(lemonade, tmp_path, prove):
    with FakeJmapServer("conformant") as good, FakeJmapServer("no-push") as bad:
        run = lemonade("run", "--target", str(good.target_file(tmp_path)), "--target", str(bad.target_file(tmp_path)),
                       "--profile", "mobile-intermediary", "--scenario", "direct", "-n", "2", "-k", "reachability")
    ok = next(r for r in run.results["results"] if r["target"] == "fake-jmap-conformant")
    assert ok["verdict"] == "pass", ok
    rows = ok["evidence"]["reachability"]["rows"]
    assert rows["JMAP push (EventSource)"]["push"] == "ok" and rows["IMAP"]["login"] == "not offered"
    r = prove(run, "jmap/reachability", "mobile.http.mail-over-https", "no protocol lets a client log in",
              target="fake-jmap-no-push")
    assert "204" in r["evidence"]["reachability"]["rows"]["JMAP push (EventSource)"]["note"]
    assert "reachability" in (run.dir / "index.html").read_text()
