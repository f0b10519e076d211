"""Measurement (not a test): what the kernel's own NAT does when a mapping expires, seen from both ends.

For real-nat ``strict`` and ``default`` and for who speaks first after the expiry (client or server), an IDLE-like
session goes through the NAT (a client socket in the client namespace, the embedded Dovecot behind the exit
relay), stays silent past nf_conntrack_tcp_timeout_established, then one side sends. Prints when the kernel
destroyed the mapping (its conntrack event, on the case clock), what the client saw and what the server's end
saw, and how long until anything happened; and a client whose kernel sends TCP keepalives (they refresh the
kernel's mapping, which an application proxy's idle timer never sees). Needs root.

    .venv/bin/python bench/real_nat.py [--timeout 2]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.intermediaries.path import NetworkPath  # noqa: E402
from conformance.intermediaries.scenario import parse_scenario  # noqa: E402
from conformance.providers.dovecot import DovecotProvider  # noqa: E402
from conformance.transcript import Transcript  # noqa: E402


def read(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return f"RST after {time.monotonic() - t0:.2f} s"
    except TimeoutError:
        return f"nothing within {timeout:g} s (read timed out)"
    return f"data after {time.monotonic() - t0:.2f} s: {data[:40]!r}" if data else f"FIN after {time.monotonic() - t0:.2f} s"


def login(sock: socket.socket, account) -> None:
    sock.settimeout(3)
    sock.recv(4096)
    sock.sendall(f'a LOGIN "{account.username}" "{account.password}"\r\n'.encode())
    buf = b""
    while b"a OK" not in buf:
        buf += sock.recv(4096)
    sock.sendall(b"b SELECT INBOX\r\n")
    buf = b""
    while b"b OK" not in buf:
        buf += sock.recv(4096)


def one(target, mode: str, first: str, timeout: int) -> dict[str, str]:
    transcript = Transcript(secrets=target.secrets())
    path = NetworkPath.for_scenario(parse_scenario(f"real-nat:timeout={timeout},mode={mode}"), target, transcript)
    path.start()
    try:
        sock = path.open("imap")
        if first == "keepalive":  # the client's kernel sends TCP keepalives every second: they cross the NAT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        login(sock, target.accounts[0])
        if first == "server":  # IDLE: the server speaks first (Dovecot's keepalive is 1 s in quick: wait idle
            # with NOOP-free silence instead, then make the server speak by an APPEND from a direct connection)
            sock.sendall(b"c IDLE\r\n")
            sock.settimeout(3)
            sock.recv(4096)  # "+ idling"
        deadline = time.monotonic() + (2 * timeout + 1 if first == "keepalive" else timeout + 5)
        while not any(e.direction == "I" and "DESTROY" in e.text for e in transcript.entries):
            if time.monotonic() > deadline:
                break
            if first == "server":
                try:  # keepalives of the server ("* OK Still here") keep refreshing the mapping: count them
                    sock.settimeout(0.05)
                    sock.recv(4096)
                except TimeoutError:
                    pass
            else:
                time.sleep(0.05)
        destroyed = next((e.t for e in transcript.entries if e.direction == "I" and "DESTROY" in e.text), None)
        sent_at = transcript.now()
        if first in ("client", "keepalive"):
            sock.sendall(b"d NOOP\r\n")
        else:
            with socket.create_connection((target.endpoint("imap").host, target.endpoint("imap").port)) as w:
                login(w, target.accounts[0])
                w.sendall(b"e APPEND INBOX {14+}\r\nSubject: x\r\n\r\n\r\n")
                w.settimeout(3)
                w.recv(4096)
        client = read(sock, 3)
        time.sleep(0.3)
        server = [e.text.removeprefix("real-nat: ") for e in transcript.entries
                  if e.leg == "proxy-server" and e.t >= sent_at and ("arrived" in e.text or e.direction == "C")]
        sock.close()
        return {"mode": mode, "first": first, "destroyed": f"t={destroyed:.2f} s" if destroyed else "never",
                "client": client, "server": "; ".join(server[:2]) or "nothing"}
    finally:
        path.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=int, default=2)
    args = ap.parse_args()
    prov = DovecotProvider(depth="full")  # Dovecot's own 2-minute IDLE keepalive: silence longer than the NAT's
    target = prov.start()
    try:
        rows = [one(target, mode, first, args.timeout) for mode in ("strict", "default") for first in ("client", "server")]
        rows.append(one(target, "strict", "keepalive", args.timeout))
    finally:
        prov.stop()
    print(f"real-nat, nf_conntrack_tcp_timeout_established={args.timeout} s, embedded Dovecot (2 min keepalive)")
    print(f"{'mode':8} {'speaks first':13} {'mapping destroyed':18} {'client saw':42} server's end saw")
    for r in rows:
        print(f"{r['mode']:8} {r['first']:13} {r['destroyed']:18} {r['client']:42} {r['server']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
