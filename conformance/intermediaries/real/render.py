"""Configuration files of the real programs, from the Jinja2 templates beside this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...providers import base

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render(name: str, **values: Any) -> str:
    return base.render(TEMPLATES, name, **values)
