"""The JMAP core, WebSocket and reachability checks against scripted peers: all pass against the conformant
peer; the sloppy peer breaks one rule per check and each check fails; a peer without push fails reachability."""

from __future__ import annotations

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


def _run(lemonade, tmp_path, behaviour, k, profiles=("jmap",)):
    with FakeJmapServer(behaviour) as fake:
        args = ["run", "--target", str(fake.target_file(tmp_path)), "--scenario", "direct", "-n", "2", "-k", k]
        for p in profiles:
            args += ["--profile", p]
        run = lemonade(*args)
    return run, {key.split("|")[0]: verdict for key, verdict in run.verdicts().items()}


def test_conformant_peer_passes_and_sloppy_peer_fails_each_check(lemonade, tmp_path):
    run, got = _run(lemonade, tmp_path, "conformant", K)
    assert CHECKS <= set(got), f"missing {CHECKS - set(got)}\n{run.out}\n{run.err}"
    bad = {c: got[c] for c in CHECKS if got[c] != "pass"}
    assert not bad, f"{bad}\n{run.out}"
    run, got = _run(lemonade, tmp_path, "sloppy", K)
    assert CHECKS <= set(got), f"missing {CHECKS - set(got)}\n{run.out}\n{run.err}"
    passed = {c: got[c] for c in CHECKS if got[c] not in ("fail", "non-strict")}
    assert not passed, f"the sloppy peer should fail these: {passed}\n{run.out}"
    assert run.rc == 1


def test_reachability_needs_a_complete_protocol(lemonade, tmp_path):
    run, got = _run(lemonade, tmp_path, "conformant", "reachability", ("mobile-intermediary",))
    assert got["jmap/reachability"] == "pass", run.out
    rows = run.result("jmap/reachability")["evidence"]["reachability"]["rows"]
    assert rows["JMAP push (EventSource)"]["push"] == "ok" and rows["IMAP"]["login"] == "not offered"
    run, got = _run(lemonade, tmp_path, "no-push", "reachability", ("mobile-intermediary",))
    r = run.result("jmap/reachability")
    assert r["verdict"] == "fail" and "204" in r["evidence"]["reachability"]["rows"]["JMAP push (EventSource)"]["note"]
    assert "reachability" in (run.dir / "index.html").read_text()
