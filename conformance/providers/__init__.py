"""Providers bring targets to life: `local` processes, `container`s, or an `external` target file.

``NAMED`` maps the target names users type (``--target dovecot``) to provider factories; anything else
given to --target is read as a target file. Later providers register here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import BadInput
from ..targets import Target, load_target_file
from .base import Provider, Service


class ExternalProvider(Service):
    """A server that is already running, described by a target file: nothing to start or stop."""

    def __init__(self, path: str) -> None:
        self.path = path

    def start(self) -> Target:
        return load_target_file(self.path)

    def stop(self) -> None:
        pass


def _dovecot(depth: str, logs: Path | None, **kw: Any) -> Provider:
    from .dovecot import DovecotProvider

    return DovecotProvider(depth=depth, keep_logs=logs, **kw)


def _cyrus(variant: str) -> Callable[..., Provider]:
    def make(depth: str, logs: Path | None, **kw: Any) -> Provider:
        from .cyrus import CyrusProvider

        return CyrusProvider(variant=variant, depth=depth, keep_logs=logs, **kw)
    return make


def _container(name: str) -> Callable[..., Provider]:
    def factory(depth: str, logs: Path | None, **kw: Any) -> Provider:
        from .container import ContainerProvider

        return ContainerProvider(name, depth=depth, keep_logs=logs, **kw)

    factory.container = True  # type: ignore[attr-defined]  # cli: skipped when no container engine answers
    return factory


NAMED: dict[str, tuple[str, Callable[..., Provider]]] = {
    "dovecot": ("embedded Dovecot 2.3 as a local process (the default)", _dovecot),
    "cyrus": ("Debian's Cyrus IMAP 3.6 binaries (IMAP, IMAPS, JMAP; no push) as a local process", _cyrus("stock")),
    "cyrus-push": ("Cyrus IMAP 3.6 rebuilt with WebSockets (JMAP EventSource and RFC 8887 push)", _cyrus("push")),
}
# container targets (providers/container.py): images built locally from servers/<name>/ (providers/images.py)
NAMED.update({
    "dovecot-2.3": ("Dovecot 2.3 (Debian 12 packages) in a container", _container("dovecot-2.3")),
    "dovecot-2.4": ("Dovecot 2.4 (Debian 13 packages) in a container", _container("dovecot-2.4")),
    "cyrus-3.10": ("Cyrus 3.10 (Debian 13, rebuilt with WebSockets: JMAP push) in a container", _container("cyrus-3.10")),
})


def is_container_target(spec: str) -> bool:
    return spec in NAMED and getattr(NAMED[spec][1], "container", False)


def provider_for(spec: str, depth: str = "quick", logs: Path | None = None,
                 **kw: Any) -> Provider | ExternalProvider:
    """``kw`` goes to a named provider (e.g. ``settings`` for the partner of a client run)."""
    if spec in NAMED:
        return NAMED[spec][1](depth, logs, **kw)
    p = Path(spec)
    if p.suffix == ".toml" or p.exists() or "/" in spec:
        load_target_file(p)  # validate now: a wrong file is a clear message before anything starts
        return ExternalProvider(spec)
    raise BadInput(f"unknown target '{spec}': use one of {', '.join(NAMED)} or the path of a target file (.toml)")


def target_name(spec: str) -> str:
    """The name results use for a --target value (a file's 'name' key, or the built-in name)."""
    if spec in NAMED:
        return spec
    return load_target_file(spec).name
