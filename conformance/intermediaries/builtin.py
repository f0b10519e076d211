"""The built-in intermediaries: each emulator is declared in its addon module (``SCENARIO``); this lists them."""

from __future__ import annotations

from .addons import (
    buffering,
    flaky,
    https_only,
    inspecting,
    kill,
    lifetime,
    link,
    nat_idle,
    read_timeout,
    strip_starttls,
)
from .scenario import register

for _module in (nat_idle, lifetime, kill, flaky, strip_starttls, link, https_only, inspecting, buffering,
                read_timeout):
    register(_module.SCENARIO)
