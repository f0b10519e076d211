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
    build=lambda p: ([nat_idle.NatIdle()], {"nat_idle_timeout": float(p["timeout"]), "nat_idle_mode": p["mode"]}),
))

register(Intermediary(
    name="lifetime", path="tcp",
    summary="Carrier/proxy session limit: every connection is cut at age `max` whatever its traffic.",
    params=(
        Param("max", float, 5.0, 300.0, "maximum connection age", unit="s"),
        Param("mode", str, "fin", "fin", "how the cut looks", choices=("rst", "fin")),
    ),
    build=lambda p: ([lifetime.Lifetime()], {"lifetime_max": float(p["max"]), "lifetime_mode": p["mode"]}),
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
    build=lambda p: ([flaky.Flaky()], {"flaky_reset_every": float(p["reset_every"]), "flaky_seed": int(p["seed"])}),
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
