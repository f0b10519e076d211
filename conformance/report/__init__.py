"""Report rendering from results.json alone: the self-contained HTML page and JUnit XML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .html import render_html
from .junit import render_junit


def render_all(out: Path, doc: dict[str, Any]) -> None:
    (out / "index.html").write_text(render_html(doc), encoding="utf-8")
    (out / "junit.xml").write_text(render_junit(doc), encoding="utf-8")
