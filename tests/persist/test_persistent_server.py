"""The suite on servers it did not start (issue 21), served by `lemonade serve` as separate processes.

- Run after run: one external Dovecot and one external cyrus-push, whose accounts already hold a user's mail and
  folders (a message marked \\Deleted but not expunged among them), get the same run twice. The verdicts are
  identical, every mailbox and message is as before (nothing left behind, nothing of the user's touched), and the only
  leftovers listed are uploads (JMAP cannot delete them). By default (CI time) the run is one `lemonade run` of the
  checks that create each kind of thing (IMAP: scratch mailboxes, APPEND, COPY, MOVE, STORE, EXPUNGE, CLOSE,
  CREATE/RENAME/DELETE, a cut APPEND, the reachability table; JMAP: Email/import of the same octets, uploads,
  Email/set, Mailbox/set, pushed changes) on both servers; with LEMONADE_TEST_DEPTH=full it is the whole suite
  (every profile, every check, quick depth, each check's default scenarios) on both servers, and the verdict tables
  of both runs are printed per server (markdown). The runs use one worker: cases of one run share the target's
  accounts, and Dovecot 2.3 was seen to drop a NOTIFY RENAME event while another case created and deleted mailboxes
  in the same account (a server behaviour that would make the verdicts differ at random).
- The target's address and TLS settings hold through a plain reverse proxy: the cyrus-push above behind `lemonade
  serve --target FILE --scenario read-timeout:timeout=3600` (mitmproxy in reverse mode: Host rewritten to the
  server's address, redirects passed unchanged, as many front ends do) redirects /.well-known/jmap to its own address;
  the direct, read-timeout and buffering scenarios follow it through their path, say so, and end in no error.
"""

from __future__ import annotations

import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.persist.inventory import differences, inventory, seed_user_data
from tests.persist.serving import lemonade_serve

# LEMONADE_TEST_DEPTH=full: the whole suite (every profile, quick depth) on both servers, per run
FULL = os.environ.get("LEMONADE_TEST_DEPTH") == "full"

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the cyrus-push target needs root (master drops to cyrus)"),
              pytest.mark.timeout(3000 if FULL else 900)]

# the default test set's share (CI time): of each kind of thing the suite creates, the checks that create it
IMAP_QUICK = ("body_stable_across_sessions_flags_copy_move", "notify_mailboxname_list_events", "expunge_codes_and_close",
              "append_cut_midway", "reachability and direct")
JMAP_QUICK = ("import_keeps_blob_byte_exact", "upload_download_identical", "email_changes_reconstruct_after_reconnect",
              "get_state_changes", "changes_maxchanges", "ws_push_state_catchup", "last_event_id_resume")


def selected(names) -> str:
    return " or ".join(f"({k})" for k in names)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """An external Dovecot and an external cyrus-push (`lemonade serve`), their accounts seeded with a user's data."""
    tmp = tmp_path_factory.mktemp("served")
    with ExitStack() as stack:
        with ThreadPoolExecutor(2) as pool:  # both start at once
            started = list(pool.map(lambda t: stack.enter_context(lemonade_serve(tmp, "--target", t, name=t)),
                                    ("dovecot", "cyrus-push")))
            list(pool.map(seed_user_data, [s.target for s in started]))
        yield dict(zip(("dovecot", "cyrus-push"), started))
    for served in started:  # SIGTERM stopped everything serve started: exit 0, the server's ports closed
        assert served.returncode == 0, (served.returncode, served.stderr()[-2000:])
        ep = served.target.endpoint("imap")
        with pytest.raises(OSError):
            socket.create_connection((ep.host, ep.port), timeout=2).close()


def inventories(servers) -> list:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(inventory, [s.target for s in servers.values()]))


def verdict_table(*runs) -> dict[str, str]:
    return {f"{r['check']} | {r['target']} | {r['scenario']} | {r['nodeid'].split('::')[-1]}": r["verdict"]
            for run in runs for r in run.results["results"]}  # the node id tells apart variants of one check


def markdown_tables(first: dict[str, str], second: dict[str, str], seconds: list[float]) -> str:
    """Per server: check x scenario (x variant), the verdict of run 1 and of run 2, then the totals of each run."""
    lines = [f"Elapsed: run 1 {seconds[0]:.0f} s, run 2 {seconds[1]:.0f} s", ""]
    keys = sorted(set(first) | set(second))
    for target in sorted({k.split(" | ")[1] for k in keys}):
        mine = [k for k in keys if k.split(" | ")[1] == target]
        lines += [f"### {target}", "", "| check | scenario | case | run 1 | run 2 |", "|---|---|---|---|---|"]
        for k in mine:
            check, _, scenario, node = k.split(" | ")
            flip = "" if first.get(k) == second.get(k) else " **differs**"
            lines.append(f"| {check} | {scenario} | `{node}` | {first.get(k, '-')} | {second.get(k, '-')}{flip} |")
        lines += ["", "| verdict | run 1 | run 2 |", "|---|---|---|"]
        for verdict in sorted({v for t in (first, second) for k, v in t.items() if k in mine}):
            counts = [sum(1 for k in mine if t.get(k) == verdict) for t in (first, second)]
            lines.append(f"| {verdict} | {counts[0]} | {counts[1]} |")
        lines.append(f"| all | {sum(1 for k in mine if k in first)} | {sum(1 for k in mine if k in second)} |")
        lines.append("")
    return "\n".join(lines)


def test_twice_on_external_dovecot_and_cyrus_push_same_verdicts_nothing_left(lemonade, servers):
    dovecot, cyrus = servers["dovecot"], servers["cyrus-push"]
    before = inventories(servers)
    rounds, seconds = [], []
    for n in range(2):
        t0 = time.monotonic()
        if FULL:  # the whole suite: no -k, no --profile, no --scenario; one worker (see the module's note)
            runs = (lemonade("run", "--target", str(dovecot.target_file), "--target", str(cyrus.target_file), "-n", "1",
                             "--depth", "quick", timeout=1400),)
        else:  # one run: the IMAP and JMAP checks of the quick selection on both servers
            runs = (lemonade("run", "--target", str(dovecot.target_file), "--target", str(cyrus.target_file), "-n", "1",
                             "-k", selected(IMAP_QUICK + JMAP_QUICK), timeout=600),)
        seconds.append(time.monotonic() - t0)
        print(f"run {n + 1}: {seconds[-1]:.0f} s")
        rounds.append(runs)
    after = inventories(servers)
    first, second = (verdict_table(*r) for r in rounds)
    print("\n" + markdown_tables(first, second, seconds))  # both runs' tables, also when an assertion below fails
    for run in (run for r in rounds for run in r):
        assert run.rc in (0, 1), f"exit {run.rc}: a harness error on a healthy server\n{run.out}\n{run.err}"
    assert first == second, {k: (first.get(k), second.get(k)) for k in set(first) | set(second)
                             if first.get(k) != second.get(k)}
    assert len(first) >= (200 if FULL else 28) and "error" not in first.values(), first
    assert any(k.startswith("jmap/import_keeps_blob_byte_exact | cyrus-push | direct") for k in second)  # issue 21
    for name, b, a in zip(servers, before, after):
        assert not differences(b, a), (name, differences(b, a))
    for run in (run for r in rounds for run in r):
        left = run.results["leftovers"]
        assert {x["kind"] for x in left} <= {"upload"}, left  # JMAP offers no way to delete an upload
        if left:
            assert "Leftovers" in (run.dir / "index.html").read_text()


def test_redirect_to_the_servers_own_address_is_followed_through_the_path(lemonade, servers, tmp_path):
    cyrus = servers["cyrus-push"]
    before = inventory(cyrus.target)
    with lemonade_serve(tmp_path, "--target", str(cyrus.target_file), "--scenario", "read-timeout:timeout=3600",
                        name="front") as front:
        text = front.target_file.read_text()
        assert "verify = false" in text and list(front.target.endpoints) == ["jmap"], text
        run = lemonade("run", "--target", str(front.target_file), "--profile", "jmap", "-n", "2",
                       "--scenario", "direct", "--scenario", "read-timeout", "--scenario", "buffering",
                       "-k", "session_wellknown or upload_download_identical or state_event_on_change", timeout=300)
    assert front.returncode == 0, front.stderr()
    results = run.results["results"]
    assert {r["scenario"].split(":")[0] for r in results} == {"direct", "read-timeout", "buffering"}, run.out
    for r in results:
        assert r["verdict"] != "error", (r["check"], r["scenario"], r["message"])
        notes = [e["text"] for e in r["evidence"]["transcript"] if "another address of the same server" in e["text"]]
        assert notes, (r["check"], r["scenario"], "no transcript note about the redirect")
    for r in results:
        if r["check"] in ("jmap/session_wellknown", "jmap/upload_download_identical"):
            assert r["verdict"] == "pass", (r["check"], r["scenario"], r["message"])
        if r["check"] == "jmap/session_wellknown":  # the Session was reached where the client reaches the target
            note = next(e["text"] for e in r["evidence"]["transcript"]
                        if "another address of the same server" in e["text"])
            own = re.search(r"names (\S+), another address", note).group(1)
            assert own not in r["message"], (own, r["message"])
    assert not differences(before, inventory(cyrus.target))
