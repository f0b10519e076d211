"""EventSource notification latency and ping accuracy of a Cyrus target (default cyrus-push).

    .venv/bin/python bench/jmap_push.py [--target cyrus-push] [--changes 10] [--ping 2] [--pushpoll 1s]

Starts the target, opens eventSourceUrl (types=*, ping=N) and, from a second client, imports `changes` emails at
random moments; latency = arrival of the state event naming the new Email state minus the moment the import
was sent. Ping accuracy = for each ping, (time since the previous event) - interval. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.protocols.jmap import EventStream, JmapClient, sample_message, split_url, wrap_tls  # noqa: E402
from conformance.providers.cyrus import CyrusProvider  # noqa: E402
from conformance.transcript import Transcript  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="cyrus-push", choices=("cyrus", "cyrus-push"))
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--ping", type=int, default=2)
    ap.add_argument("--pushpoll", default="1s")
    a = ap.parse_args()
    prov = CyrusProvider("push" if a.target == "cyrus-push" else "stock", pushpoll=a.pushpoll)
    t0 = time.monotonic()
    target = prov.start()
    ready = time.monotonic() - t0
    try:
        tr = Transcript(secrets=target.secrets())
        ep = target.endpoint("jmap")
        acct = target.accounts[0]
        reader = JmapClient(ep.url, acct.username, acct.password, tr, label="reader")
        writer = JmapClient(ep.url, acct.username, acct.password, tr, label="writer")
        url = (reader.url("eventSourceUrl").replace("{types}", "*").replace("{closeafter}", "no")
               .replace("{ping}", str(a.ping)))
        _, host, port, path = split_url(url)
        import socket

        sock = wrap_tls(socket.create_connection((ep.host, ep.port), timeout=5), "https", ep.host, None)
        stream = EventStream(sock, f"{host}:{port}", path, reader.auth, tr)
        stream.read_head()
        inbox = writer.mailbox_id()
        latencies = []
        for i in range(a.changes):
            time.sleep(random.uniform(0.3, 2.5))  # random phase against the server's poll tick
            sent = tr.now()
            writer.import_email(sample_message(f"bench {i}"), inbox)
            want = writer.state("Email")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                item = stream.next(deadline - time.monotonic())
                if item is None:
                    break
                if item.kind == "event" and item.event.type == "state":
                    data = json.loads(item.event.data)
                    if data["changed"].get(reader.account_id, {}).get("Email") == want:
                        latencies.append(item.t - sent)
                        break
        quiet_from = tr.now()
        quiet_until = time.monotonic() + max(10 * a.ping, 10)
        list(stream.events(quiet_until))
        evs = [x for x in stream.log if x.kind == "event"]
        times = [stream.opened_at] + [x.t for x in evs]
        pairs = [((b - prev) - a.ping, b) for prev, b, x in zip(times, times[1:], evs) if x.event.type == "ping"]
        errors = [e for e, _ in pairs]
        quiet = [e for e, t in pairs if t > quiet_from + a.ping]
        out = {
            "target": target.name, "version": target.version, "pushpoll": a.pushpoll, "ready_s": round(ready, 3),
            "changes": a.changes, "notified": len(latencies),
            "latency_s": {"min": round(min(latencies), 3), "median": round(statistics.median(latencies), 3),
                          "mean": round(statistics.mean(latencies), 3),
                          "max": round(max(latencies), 3)} if latencies else None,
            "ping": a.ping, "pings": len(errors),
            "ping_error_s": {"mean": round(statistics.mean(errors), 4), "max_abs": round(max(map(abs, errors)), 4)}
            if errors else None,
            "ping_error_quiet_s": {"pings": len(quiet), "mean": round(statistics.mean(quiet), 4),
                                   "max_abs": round(max(map(abs, quiet)), 4)} if quiet else None,
        }
        print(json.dumps(out, indent=1))
        stream.close()
        reader.close()
        writer.close()
    finally:
        prov.stop()


if __name__ == "__main__":
    main()
