"""Network namespaces for real-nat: a client, a router and a server namespace joined by two veth pairs.

    client ns  100.64.0.2 --veth-- 100.64.0.1  router ns  198.51.100.1 --veth-- 198.51.100.2  server ns
                                   (MASQUERADE out of the server-side veth, conntrack with the case's timeouts)

Addresses are RFC 6598 shared space (the carrier-grade NAT range) inside and RFC 5737 TEST-NET-2 outside; they
exist only inside namespaces the case creates and removes, so parallel cases never meet. Nothing is added to the
host's own namespace. ``socket_in(ns, ...)`` creates a socket inside a namespace from a short-lived thread
(setns(2) changes only the calling thread's namespace), so the suite's own process owns sockets on both sides.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...errors import HarnessError, NotApplicable

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
PREFIX = "lemonade-real"
CLIENT_ADDR, ROUTER_IN, ROUTER_OUT, SERVER_ADDR = "100.64.0.2", "100.64.0.1", "198.51.100.1", "198.51.100.2"


def missing() -> str | None:
    """Why real-nat cannot run here, or None."""
    if os.geteuid() != 0:
        return "real-nat needs root (it creates network namespaces and sets conntrack timeouts in them)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("conntrack", "conntrack")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"real-nat needs {tool} (Debian package {package}; `bash scripts/setup.sh` installs it)"
    return None


def _setns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_namespace(name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a new thread that entered namespace ``name``; return its result (or raise its error)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            _setns(name)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    t.start()
    t.join(10)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def socket_in(name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    return in_namespace(name, lambda: socket.socket(family, kind, proto))


def sweep_stale() -> None:
    """Remove namespaces this suite left behind when its process died (the pid in the name is gone)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        m = re.match(rf"{PREFIX}-(\d+)-", entry.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", entry.name], capture_output=True, timeout=10)


@dataclass
class Topology:
    """Three namespaces and the router's NAT. ``create()`` and ``delete()``; names are unique per case."""

    tag: str  # unique: "<pid>-<n>"
    timeout: int  # nf_conntrack_tcp_timeout_established
    strict: bool  # loose=0 and INVALID dropped

    @property
    def client(self) -> str:
        return f"{PREFIX}-{self.tag}-c"

    @property
    def router(self) -> str:
        return f"{PREFIX}-{self.tag}-r"

    @property
    def server(self) -> str:
        return f"{PREFIX}-{self.tag}-s"

    def ruleset(self) -> str:
        strict = ("\n  chain forward { type filter hook forward priority filter; ct state invalid drop; }"
                  "\n  chain input { type filter hook input priority filter; ct state invalid drop; }"
                  if self.strict else "")
        return ("table ip lemonade_nat {\n"
                "  chain postrouting { type nat hook postrouting priority srcnat; oifname \"s0\" masquerade; }"
                f"{strict}\n}}\n")

    def script(self) -> str:
        c, r, s = self.client, self.router, self.server
        sysctl = "/proc/sys/net/netfilter/nf_conntrack_tcp_"
        return "\n".join([
            "set -e",
            f"ip netns add {c}", f"ip netns add {r}", f"ip netns add {s}",
            f"ip -n {c} link add c0 type veth peer name r0 netns {r}",
            f"ip -n {r} link add s0 type veth peer name v0 netns {s}",
            f"ip -n {c} addr add {CLIENT_ADDR}/24 dev c0", f"ip -n {c} link set c0 up", f"ip -n {c} link set lo up",
            f"ip -n {c} route add default via {ROUTER_IN}",
            f"ip -n {r} addr add {ROUTER_IN}/24 dev r0", f"ip -n {r} link set r0 up",
            f"ip -n {r} addr add {ROUTER_OUT}/24 dev s0", f"ip -n {r} link set s0 up", f"ip -n {r} link set lo up",
            f"ip -n {s} addr add {SERVER_ADDR}/24 dev v0", f"ip -n {s} link set v0 up", f"ip -n {s} link set lo up",
            f"ip netns exec {r} sh -c '"
            "echo 1 > /proc/sys/net/ipv4/ip_forward; nft -f - <<EOF\n" + self.ruleset() + "EOF\n"
            f"echo {self.timeout} > {sysctl}timeout_established; echo {0 if self.strict else 1} > {sysctl}loose'",
        ])

    def create(self) -> None:
        if problem := missing():
            raise NotApplicable(problem)
        sweep_stale()
        out = subprocess.run(["sh", "-c", self.script()], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            self.delete()
            raise HarnessError(f"real-nat: could not build the namespaces: {out.stderr.strip()[-400:]}")

    def delete(self) -> None:
        for ns in (self.client, self.router, self.server):
            if (NETNS_DIR / ns).exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def sysctl(self, name: str) -> str:
        return in_namespace(self.router, lambda: Path(f"/proc/sys/net/netfilter/{name}").read_text().strip())


# -- conntrack: a netlink dump makes the kernel evict expired entries at once (else only the next packet or
# the garbage collector does, seconds later), so the DESTROY event marks the expiry to within the poll period
NETLINK_NETFILTER = 12
IPCTNL_MSG_CT_GET = (1 << 8) | 1  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET
NLM_F_REQUEST_DUMP = 0x1 | 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2


def dump_request(seq: int) -> bytes:
    """A ctnetlink dump request for IPv4 entries (sans-IO: bytes only)."""
    body = struct.pack("=BBH", socket.AF_INET, 0, 0)
    return struct.pack("=IHHII", 16 + len(body), IPCTNL_MSG_CT_GET, NLM_F_REQUEST_DUMP, seq, 0) + body


def dump_finished(data: bytes) -> bool:
    """True when ``data`` (one recv of netlink messages) holds the end of a dump (DONE or an error)."""
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if length < 16:
            return True
        off += (length + 3) & ~3
    return False


def conntrack_socket(router: str) -> socket.socket:
    return socket_in(router, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
