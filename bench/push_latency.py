"""Measure IMAP push figures of the embedded Dovecot: notification latency during IDLE and the keepalive gap.

Not a test: prints numbers for reports. Starts its own Dovecot (quick settings, optionally overridden),
idles on one connection, APPENDs from a second one N times and watches the idling connection.

    .venv/bin/python bench/push_latency.py                               # 1 s keepalive (quick depth)
    .venv/bin/python bench/push_latency.py --keepalive "2 mins" --observe 270 --changes 5   # Dovecot default
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from conformance.protocols.imap import ImapConnection
from conformance.providers.dovecot import DovecotProvider
from conformance.transcript import Transcript

MSG = b"From: bench@example.test\r\nSubject: bench\r\n\r\nhello\r\n"


def connect(target, transcript: Transcript, label: str) -> ImapConnection:
    ep = target.endpoint("imap")
    c = ImapConnection(ep.host, ep.port, transcript=transcript, label=label, ssl_context=target.tls.client_context())
    c.read_greeting()
    c.starttls(target.tls.client_context())
    acct = target.accounts[0]
    c.login(acct.username, acct.password)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keepalive", default=None, help='imap_idle_notify_interval, e.g. "1 secs" or "2 mins"')
    ap.add_argument("--observe", type=float, default=10.0, help="seconds of quiet IDLE to measure keepalive gaps")
    ap.add_argument("--changes", type=int, default=20, help="APPENDs whose notification latency is measured")
    args = ap.parse_args()
    settings = {"imap_idle_notify_interval": args.keepalive} if args.keepalive else {}
    prov = DovecotProvider("quick", settings=settings)
    target = prov.start()
    try:
        tr = Transcript()
        idler, changer = connect(target, tr, "idler"), connect(target, tr, "changer")
        changer.command('CREATE "bench"')
        idler.command('SELECT "bench"')
        tag = idler.idle()
        # 1. quiet IDLE: when do keepalives arrive?
        start = time.monotonic()
        arrivals = [start]
        while time.monotonic() - start < args.observe:
            r = idler.poll(args.observe - (time.monotonic() - start))
            if r is not None:
                arrivals.append(time.monotonic())
        arrivals.append(time.monotonic())
        gaps = [round(b - a, 3) for a, b in zip(arrivals, arrivals[1:])]
        # 2. latency: APPEND on the second connection -> '* n EXISTS' on the idling one
        latencies = []
        for _ in range(args.changes):
            t0 = time.monotonic()
            changer.command(f"APPEND \"bench\" {{{len(MSG)}}}", literal=MSG)
            deadline = t0 + 10
            while time.monotonic() < deadline:
                r = idler.poll(deadline - time.monotonic())
                if r is not None and re.match(r"^\* \d+ EXISTS", r.first_line):
                    latencies.append(round(time.monotonic() - t0, 3))
                    break
        idler.done(tag)
        out = {
            "dovecot_keepalive": prov.settings["imap_idle_notify_interval"],
            "observed_s": args.observe,
            "keepalives": len(arrivals) - 2,
            "longest_gap_s": max(gaps),
            "gaps_s": gaps,
            "latency_s": {"n": len(latencies), "median": statistics.median(latencies) if latencies else None,
                          "min": min(latencies, default=None), "max": max(latencies, default=None)},
        }
        print(json.dumps(out, indent=1))
    finally:
        prov.stop()


if __name__ == "__main__":
    main()
