"""The container engine the container targets need: one docker-py client for DOCKER_HOST (or the default
socket), whether one answers, and whether an image is present. Docker's engine or Podman's socket alike."""

from __future__ import annotations

import functools
import os

from ..errors import HarnessError


class EngineUnavailable(HarnessError):
    """No container engine answers: container targets are skipped, not errors."""


@functools.cache
def docker_client():
    """A docker-py client (made once per process); EngineUnavailable when no engine answers (not cached, so a
    later call tries again)."""
    try:
        import docker
    except ImportError as e:  # pragma: no cover - a dependency of testcontainers
        raise EngineUnavailable(f"the docker Python package is missing ({e})") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure here means: no engine
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise EngineUnavailable(f"no container engine answers at {where} ({first}); start one with "
                                f"scripts/dockerd-up (root) or point DOCKER_HOST at a podman socket") from None
    return client


def engine_problem() -> str | None:
    """None when a container engine answers, else one line saying why not."""
    try:
        docker_client()
        return None
    except EngineUnavailable as e:
        return str(e)


def image_exists(tag: str) -> bool:
    import docker.errors

    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
