"""The built-in intermediaries: registry entries that map scenario parameters to addons and options."""

from __future__ import annotations

from .addons import kill, lifetime, nat_idle
from .scenario import Intermediary, Param, register

register(Intermediary(
    name="nat-idle", path="tcp",
    summary="NAT/stateful firewall that drops a connection after `timeout` seconds without a byte either way.",
    params=(
        Param("timeout", float, 3.0, 30.0, "idle seconds before the mapping is dropped", unit="s"),
        Param("mode", str, "rst", "rst", "rst: reset both sides; fin: orderly close; silent: black hole, nobody told",
              choices=("rst", "fin", "silent")),
    ),
    build=lambda p: ([nat_idle.NatIdle()], {"nat_idle_timeout": str(float(p["timeout"])), "nat_idle_mode": p["mode"]}),
))

register(Intermediary(
    name="lifetime", path="tcp",
    summary="Carrier/proxy session limit: every connection is cut at age `max` whatever its traffic.",
    params=(
        Param("max", float, 5.0, 300.0, "maximum connection age", unit="s"),
        Param("mode", str, "fin", "fin", "how the cut looks", choices=("rst", "fin")),
    ),
    build=lambda p: ([lifetime.Lifetime()], {"lifetime_max": str(float(p["max"])), "lifetime_mode": p["mode"]}),
))

register(Intermediary(
    name="kill", path="tcp",
    summary="Cuts connections on demand: checks drop every connection now, or after N octets from one side.",
    params=(),
    build=lambda p: ([kill.Kill()], {}),
))

from .addons import flaky  # noqa: E402  reconnect family

register(Intermediary(
    name="flaky", path="tcp",
    summary="Unreliable mobile link: each connection is reset after a seeded random lifetime around `reset_every`.",
    params=(
        Param("reset_every", float, 1.0, 3.0, "mean connection lifetime before a reset (drawn from 0.5x to 1.5x)",
              unit="s"),
        Param("seed", int, 1, 1, "seed of the random lifetimes: the same seed gives the same schedule"),
    ),
    build=lambda p: ([flaky.Flaky()], {"flaky_reset_every": str(float(p["reset_every"])), "flaky_seed": int(p["seed"])}),
))

# -- envelope/transport security (issue 7) -------------------------------------------------------------
from .addons import strip_starttls  # noqa: E402

register(Intermediary(
    name="strip-starttls", path="tcp",
    summary="Active attacker that removes STARTTLS and LOGINDISABLED from cleartext capability lists and EHLO replies.",
    params=(),
    build=lambda p: ([strip_starttls.StripStarttls()], {}),
    endpoints=("imap", "submission"),
))

# -- link shaping and the HTTP path (helper "intermediaries") ------------------------------------------------
from .addons import buffering, https_only, inspecting, link, read_timeout  # noqa: E402


def _ports_ok(value: str) -> str | None:
    parts = [p for p in value.replace("/", ",").split(",") if p.strip()]
    if not parts or not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in parts):
        return "must be port numbers separated by '/', e.g. 443/8443"
    return None


_ENDPOINT_NAMES = ("imap", "imaps", "submission", "submissions", "jmap")


def _endpoints_ok(value: str) -> str | None:
    names = [n for n in value.split("/") if n]
    if value != "none" and (not names or any(n not in _ENDPOINT_NAMES for n in names)):
        return f"must be 'none' or endpoint names separated by '/' ({', '.join(_ENDPOINT_NAMES)})"
    return None


def _https_ports(p: dict) -> str:
    """The declared HTTPS ports: the `ports` parameter plus the target's ports of the named endpoints
    (jmap only when the target serves it over https)."""
    ports = set(https_only.parse_ports(p["ports"]))
    target = p.get("_target_endpoints", {})
    if p["endpoints"] != "none":
        ports |= {target[n][1] for n in p["endpoints"].split("/")
                  if n in target and (n != "jmap" or target[n][0] == "https")}
    return ",".join(str(x) for x in sorted(ports))


register(Intermediary(
    name="link", path="tcp",
    summary="Slow mobile link: one-way delay and bandwidth per direction (a pipe: data in flight overlaps).",
    params=(
        Param("latency", int, 100, 300, "one-way delay added in each direction", unit="ms"),
        Param("rate", int, 0, 50, "bandwidth per direction, 0 = unlimited", unit="KB/s"),
    ),
    build=lambda p: ([link.Link()], {"link_latency": int(p["latency"]), "link_rate": int(p["rate"])}),
))

register(Intermediary(
    name="https-only", path="http-forward",
    summary="Corporate firewall: explicit HTTP proxy, CONNECT only to ports declared HTTPS (403 otherwise), "
            "plain HTTP passes, tunnels are not inspected.",
    params=(
        Param("ports", str, "443", "443", "ports declared HTTPS, separated by '/'", check=_ports_ok),
        Param("endpoints", str, "jmap", "jmap", "target endpoints whose own ports also count as HTTPS "
              "(e.g. jmap/imaps), separated by '/', or none", check=_endpoints_ok),
    ),
    build=lambda p: ([https_only.HttpsOnly()], {"https_only_ports": _https_ports(p)}),
    endpoints=_ENDPOINT_NAMES,
))

register(Intermediary(
    name="inspecting", path="http-forward",
    summary="TLS-intercepting explicit HTTP proxy with its own CA (trusted only by the suite's clients): "
            "passes HTTP, cuts anything else inside a tunnel.",
    params=(),
    build=lambda p: ([inspecting.Inspecting()], {}),
    endpoints=_ENDPOINT_NAMES,
))

register(Intermediary(
    name="buffering", path="http-reverse",
    summary="Reverse proxy holding each response until complete or `limit` octets are buffered "
            "(nginx proxy_buffering: breaks EventSource).",
    params=(Param("limit", int, 65536, 65536, "octets held before they are sent on", unit="B"),),
    build=lambda p: ([buffering.Buffering()], {"buffering_limit": int(p["limit"])}),
    endpoints=("jmap",),
))

register(Intermediary(
    name="read-timeout", path="http-reverse",
    summary="Reverse proxy ending a response after `timeout` seconds without a byte from upstream "
            "(nginx proxy_read_timeout).",
    params=(Param("timeout", float, 5.0, 60.0, "seconds without a byte from upstream", unit="s"),),
    build=lambda p: ([read_timeout.ReadTimeout()], {"read_timeout": str(float(p["timeout"]))}),
    endpoints=("jmap",),
))
