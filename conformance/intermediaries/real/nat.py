"""real-nat: the kernel's own NAT (conntrack + nftables MASQUERADE) between a client and a server namespace.

Design (the simplest sound one we found): the target keeps running where it is (loopback); an **exit relay**
listens in the server namespace on the target's port numbers and forwards to it, so a packet reaches the server
only if the router's NAT forwarded it. The suite's clients either get a socket created inside the client
namespace (``path.open()``: every segment they send, keepalives included, crosses the kernel NAT) or, when they
connect by address (IMAP, HTTP clients), go through an **entry relay** on loopback that opens such a socket for
them. A program under test can run in the client namespace itself (``path.client_netns``, address
``path.nat_address(name)``). The router namespace reports its conntrack events (``conntrack -E``); a netlink
dump every 0.1 s makes the kernel evict an expired entry at once, so its DESTROY event marks the expiry.

Modes: ``default`` keeps the kernel's defaults (nf_conntrack_tcp_loose=1, nothing dropped); ``strict`` sets
loose=0 and drops packets conntrack finds INVALID (forwarded or addressed to the router): a silent black hole.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import socket
import subprocess
import threading
import weakref

from ...errors import HarnessError, NotApplicable
from ...transcript import Transcript
from .base import RealPath
from .netns import CLIENT_ADDR, SERVER_ADDR, Topology, conntrack_socket, dump_finished, dump_request, missing, socket_in
from .program import Program
from .relay import Relays

CONNTRACK = Program("nat", "conntrack", "conntrack", ("--version",), r"v(\S+)")
EVENT = re.compile(r"\[(?P<ts>[\d.]+)\]\s+\[(?P<ev>NEW|DESTROY)\]\s+tcp\s+6\s+(?:\d+\s+)?(?P<state>[A-Z_]+)\s+"
                   r"src=(?P<src>\S+) dst=(?P<dst>\S+) sport=(?P<sport>\d+) dport=(?P<dport>\d+)")


def describe_event(line: str, timeout: int) -> tuple[str, str, str] | None:
    """(direction, text, connection label) for one ``conntrack -E -o timestamp`` line, or None (sans-IO)."""
    m = EVENT.search(line)
    if not m:
        return None
    ev, state, src, sport = m.group("ev"), m.group("state"), m.group("src"), m.group("sport")
    tup = f"{src}:{sport} -> {m.group('dst')}:{m.group('dport')}"
    if ev == "DESTROY" and state == "ESTABLISHED":
        return ("I", f"conntrack DESTROY of an ESTABLISHED mapping {tup}: forgotten after {timeout} s without a "
                     "packet (the kernel tells neither end)", f"nat:{sport}")
    if ev == "NEW" and src == SERVER_ADDR:
        return ("I", f"conntrack NEW from the server side {tup} ({state}): a packet of a forgotten mapping reached "
                     "the router itself, whose stack answers it (the client is not told)", f"nat:{m.group('dport')}")
    if ev == "NEW" and state != "SYN_SENT":
        return ("I", f"conntrack NEW {tup} in state {state}: a mid-stream packet from the client re-created the "
                     "mapping (nf_conntrack_tcp_loose=1)", f"nat:{sport}")
    return ("N", f"conntrack {ev} {tup} ({state})", f"nat:{sport}")


class ConntrackWatch:
    """``conntrack -E`` in the router namespace, and the netlink dump that makes expiry events timely."""

    def __init__(self, topology: Topology, transcript: Transcript, who: str) -> None:
        self.topology, self.transcript, self.who = topology, transcript, who
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.netlink: socket.socket | None = None

    def start(self) -> "ConntrackWatch":
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.topology.router, "conntrack", "-E", "-o",
                                      "timestamp", "-p", "tcp", "-e", "NEW,DESTROY"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
                                     text=True)
        self.netlink = conntrack_socket(self.topology.router)
        self.netlink.settimeout(0.5)
        self.threads = [threading.Thread(target=self._read, name="conntrack-events", daemon=True),
                        threading.Thread(target=self._poke, name="conntrack-dump", daemon=True)]
        for t in self.threads:
            t.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            got = describe_event(line, self.topology.timeout)
            if got is not None:
                direction, text, conn = got
                self.transcript.add(self.who, direction, f"{self.who}: {text}", conn=conn)

    def _poke(self) -> None:
        seq = 0
        while not self.stopping.wait(0.1):
            seq += 1
            try:
                assert self.netlink is not None
                self.netlink.send(dump_request(seq))
                for _ in range(64):  # bounded: a dump of this namespace holds a few entries
                    if dump_finished(self.netlink.recv(1 << 16)):
                        break
            except OSError:
                if self.stopping.is_set():
                    return

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None:
            from ...providers.workdir import stop_process_group

            stop_process_group(self.proc, grace=2.0)
        for t in self.threads:
            t.join(3)
        if self.netlink is not None:
            self.netlink.close()


class NatPath(RealPath):
    program = CONNTRACK

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.topology: Topology | None = None
        self.relays: Relays | None = None
        self.watch: ConntrackWatch | None = None
        self.opened: "weakref.WeakSet[socket.socket]" = weakref.WeakSet()

    @property
    def client_netns(self) -> str | None:
        """The client namespace: a program under test run there (``ip netns exec``) crosses the kernel NAT."""
        return self.topology.client if self.topology else None

    def nat_address(self, name: str) -> tuple[str, int]:
        """Where a socket in the client namespace connects to reach endpoint ``name`` through the NAT."""
        ep = self.target.endpoint(name)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {name} endpoint")
        return SERVER_ADDR, ep.port

    def launch(self) -> None:
        if problem := missing():
            raise NotApplicable(problem)
        strict = self.params["mode"] == "strict"
        self.topology = Topology(f"{os.getpid()}-{secrets.token_hex(2)}", int(self.params["timeout"]), strict)
        self.topology.create()
        self.relays = Relays(self.transcript, self.who).start()
        for name, ep in self.target.endpoints.items():
            if not self.scenario.supports(name):
                continue
            listener = socket_in(self.topology.server)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((SERVER_ADDR, ep.port))
            listener.listen(512)
            self.relays.add_exit(listener, (ep.host, ep.port), name)
            entry = socket.socket()
            entry.bind(("127.0.0.1", 0))
            entry.listen(512)
            self.reverse[name] = entry.getsockname()[:2]
            self.relays.add_entry(entry, self.client_socket, (SERVER_ADDR, ep.port), name)
        self.watch = ConntrackWatch(self.topology, self.transcript, self.who).start()
        loose = self.topology.sysctl("nf_conntrack_tcp_loose")
        established = self.topology.sysctl("nf_conntrack_tcp_timeout_established")
        self.record_program({
            "kernel": f"Linux {platform.release()}",
            "config": f"namespaces {self.topology.client} -> {self.topology.router} (MASQUERADE) -> "
                      f"{self.topology.server}; nf_conntrack_tcp_timeout_established={established}, "
                      f"nf_conntrack_tcp_loose={loose}" + ("; ct state invalid dropped (forward, input)" if strict
                                                           else ""),
        })
        self.facts["intermediary"]["value"] = f"Linux {platform.release()} conntrack NAT ({self.params['mode']})"

    def client_socket(self) -> socket.socket:
        """A TCP socket in the client namespace, bound so its port is known (for black-hole rules)."""
        assert self.topology is not None and self.relays is not None
        sock = socket_in(self.topology.client)
        sock.bind((CLIENT_ADDR, 0))
        self.relays.client_ports.add(sock.getsockname()[1])
        return sock

    def open(self, name: str, timeout: float = 10.0) -> socket.socket:
        """A socket in the client namespace connected through the kernel NAT (no relay on the client side)."""
        host, port = self.nat_address(name)
        sock = self.client_socket()
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError as e:
            sock.close()
            raise HarnessError(f"real-nat: cannot connect through the NAT to {name} at {host}:{port}: {e}") from e
        self.opened.add(sock)
        self.transcript.add("client-proxy", "N", f"{self.who}: {name} opened from the client namespace "
                                                 f"{CLIENT_ADDR}:{sock.getsockname()[1]} -> {host}:{port}",
                            conn=f"nat:{sock.getsockname()[1]}")
        return sock

    # -- faults on demand ------------------------------------------------------------------------
    def live_client_ports(self, endpoint: str | None = None) -> set[int]:
        assert self.relays is not None
        ports = {p.outer.getsockname()[1] for p in list(self.relays.pairs.values())
                 if p.kind == "entry" and endpoint in (None, p.endpoint)}
        want = self.nat_address(endpoint)[1] if endpoint else None
        for s in list(self.opened):
            try:
                if want in (None, s.getpeername()[1]):
                    ports.add(s.getsockname()[1])
            except OSError:  # closed or no longer connected
                continue
        return ports

    def blackhole(self, endpoint: str | None = None) -> int:
        """The router drops every packet of the live connections (to ``endpoint`` when given) from now on
        (nftables in the router's namespace), telling nobody."""
        if self.topology is None:
            raise HarnessError("real-nat is not running")
        ports = sorted(self.live_client_ports(endpoint))
        if not ports:
            return 0
        spec = ", ".join(map(str, ports))
        rules = ("add chain ip lemonade_nat blackhole { type filter hook forward priority -10; }\n"
                 f"add rule ip lemonade_nat blackhole ip saddr {CLIENT_ADDR} tcp sport {{ {spec} }} drop\n"
                 f"add rule ip lemonade_nat blackhole ip daddr {CLIENT_ADDR} tcp dport {{ {spec} }} drop\n")
        out = subprocess.run(["ip", "netns", "exec", self.topology.router, "nft", "-f", "-"], input=rules,
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise HarnessError(f"real-nat: black hole rules refused: {out.stderr.strip()[-300:]}")
        self.transcript.action(self.who, f"black hole on demand: the router drops every packet of {len(ports)} live "
                                         f"connection(s) (client ports {spec}); neither end is told")
        return len(ports)

    def kill(self, how: str = "rst", endpoint: str | None = None) -> int:
        if self.relays is None:
            raise HarnessError("real-nat is not running")
        return self.relays.kill(how, endpoint)

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
            self.watch = None
        for s in list(self.opened):
            try:
                s.close()
            except OSError:
                pass
        if self.relays is not None:
            self.relays.stop()
            self.relays = None
        if self.topology is not None:
            self.topology.delete()
            self.topology = None
        super().stop()
