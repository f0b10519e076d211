"""A mutant target: a reference server with the mutating proxy (tests/mutants/addon.py) in front of some of its
endpoints, described by a target file the suite runs against (tests and bench/mutants.py only)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# which endpoints each protocol's operators sit in front of, and how the reference server is configured for them
SETUPS = {
    "imap": {"target": "dovecot", "settings": {"ssl": "no", "disable_plaintext_auth": "no"}, "endpoints": ("imap",)},
    "smtp": {"target": "dovecot", "settings": {}, "endpoints": ("submission",)},
    "jmap": {"target": "cyrus-push", "settings": {}, "endpoints": ("jmap",)},
}


@dataclass
class Mutant:
    """A running mutant target: its target file, a target file of the same server without the proxy, the proxy."""

    target_file: Path
    direct_file: Path
    host: Any

    @property
    def applied(self) -> int:
        """Responses the operator changed so far."""
        from tests.mutants.addon import applied

        return applied(self.host.master)


def _provider(setup: dict, logs: Path):
    if setup["target"] == "dovecot":
        from conformance.providers.dovecot import DovecotProvider

        return DovecotProvider(settings=dict(setup["settings"]), keep_logs=logs)
    from conformance.providers import provider_for

    return provider_for(setup["target"], "quick", logs)


@contextmanager
def mutant_target(directory: Path, protocol: str, operator: str) -> Iterator[Mutant]:
    """The reference server for ``protocol`` (imap, smtp, jmap) with ``operator`` applied in front of its endpoints;
    also a target file for the same server without the proxy (``direct_file``)."""
    from conformance.errors import HarnessError
    from conformance.intermediaries.addons.common import RawTcp, StreamResponses
    from conformance.intermediaries.host import ProxyHost
    from conformance.providers.base import free_port
    from conformance.targets import Endpoint, write_target_file
    from conformance.transcript import Transcript
    from tests.mutants.addon import Mutate, PathConfig, configure_path

    setup = SETUPS[protocol]
    directory.mkdir(parents=True, exist_ok=True)
    prov = _provider(setup, directory / "logs")
    target = prov.start()
    host = ProxyHost(Transcript())
    try:
        direct_file = write_target_file(target, directory / "direct.toml")
        config = PathConfig()
        for name in setup["endpoints"]:
            config.protocols[target.endpoint(name).port] = "smtp" if name.startswith("submission") else "imap"
        for attempt in range(3):  # a free port can be taken by another process before the proxy binds it
            modes = [f"reverse:{'https' if ep.scheme == 'https' else 'tcp'}://{ep.host}:{ep.port}@127.0.0.1:{free_port()}"
                     for ep in (target.endpoint(name) for name in setup["endpoints"])]
            try:
                listen = host.start(modes, [RawTcp(), StreamResponses(), Mutate()], {"mutant_operator": operator})
                break
            except HarnessError as e:
                host.stop()
                host = ProxyHost(Transcript())
                if "already in use" not in str(e) or attempt == 2:
                    raise
        for name, mode in zip(setup["endpoints"], modes):
            h, p = listen.get(mode) or next(v for k, v in listen.items() if k.endswith(mode.rsplit("@", 1)[1]))
            ep = target.endpoint(name)
            config.aliases[f"{ep.host}:{ep.port}".encode()] = f"{h}:{p}".encode()
            target.endpoints[name] = Endpoint(name, ep.scheme, h, p, ep.path)
        configure_path(host.master, config)
        target.name = f"mutant-{operator}"
        target.tls.verify, target.tls.ca_file = False, None  # the proxy presents its own certificate for https
        yield Mutant(write_target_file(target, directory / "mutant.toml"), direct_file, host)
    finally:
        host.stop()
        prov.stop()
