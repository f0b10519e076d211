"""Measure quick vs full resynchronisation octets (and COMPRESS=DEFLATE savings) on the embedded Dovecot.

Usage: .venv/bin/python bench/resync_cost.py [--sizes 100,1000,10000] [--changes 5]
For each mailbox size N: fill a scratch mailbox, cache it with a full sync, make `changes` changes from a
second connection, then count the octets (both directions, TLS excluded) of a quick resync
(ENABLE QRESYNC + SELECT (QRESYNC ...) + fetch of new messages) and of a full resync (SELECT +
UID FETCH 1:* (FLAGS)), plain and with COMPRESS=DEFLATE. Prints one table row per N.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.checks.reconnect.mailbox import change_mailbox, full_sync, populate, quick_resync  # noqa: E402
from conformance.protocols.imap import ImapConnection  # noqa: E402
from conformance.providers.dovecot import DovecotProvider  # noqa: E402
from conformance.transcript import Transcript  # noqa: E402


def connect(target, label: str) -> ImapConnection:
    ep = target.endpoint("imap")
    conn = ImapConnection(ep.host, ep.port, transcript=Transcript(), ssl_context=target.tls.client_context(),
                          label=label, timeout=120)
    conn.read_greeting()
    conn.starttls(target.tls.client_context())
    acct = target.accounts[0]
    assert conn.login(acct.username, acct.password).ok
    return conn


def wire(conn: ImapConnection) -> int:
    return conn.bytes_sent + conn.bytes_received


def measure(target, n: int, changes: int) -> dict:
    setup = connect(target, "setup")
    name = f"bench-{n}-{int(time.time() * 1000) % 100000}"
    setup.command(f'CREATE "{name}"')
    populate(setup, name, n)
    client = connect(target, "client")
    client.command("ENABLE QRESYNC")
    cached, _ = full_sync(client, name)
    client.close()
    change_mailbox(setup, name, sorted(cached.flags), changes=changes)
    quick = connect(target, "quick")
    s, t = wire(quick), time.monotonic()
    quick.command("ENABLE QRESYNC")
    resync = quick_resync(quick, name, cached, timeout=120)
    q_bytes, q_time = wire(quick) - s, time.monotonic() - t
    full = connect(target, "full")
    s, t = wire(full), time.monotonic()
    view, _ = full_sync(full, name, timeout=300)
    f_bytes, f_time = wire(full) - s, time.monotonic() - t
    comp = connect(target, "compressed")
    assert comp.compress().ok
    s = wire(comp)
    cview, _ = full_sync(comp, name, timeout=300)
    c_bytes = wire(comp) - s
    assert not resync.view.diff(view) and not cview.diff(view)
    setup.command(f'DELETE "{name}"')
    for c in (setup, quick, full, comp):
        c.close()
    return {"n": n, "quick": q_bytes, "quick_s": q_time, "full": f_bytes, "full_s": f_time, "compressed": c_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--changes", type=int, default=5)
    args = ap.parse_args()
    prov = DovecotProvider(depth="quick")
    target = prov.start()
    try:
        print(f"{'N':>7} {'quick B':>9} {'quick s':>8} {'full B':>10} {'full s':>7} {'full+DEFLATE B':>15} {'ratio':>6}")
        for n in (int(x) for x in args.sizes.split(",")):
            r = measure(target, n, args.changes)
            print(f"{r['n']:>7} {r['quick']:>9} {r['quick_s']:>8.3f} {r['full']:>10} {r['full_s']:>7.3f} "
                  f"{r['compressed']:>15} {r['full'] / r['compressed']:>6.1f}", flush=True)
    finally:
        prov.stop()


if __name__ == "__main__":
    main()
