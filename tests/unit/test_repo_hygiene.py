"""Repository hygiene: no tracked file carries the markers of an unfinished merge."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)


def _tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_merge_conflict_markers_in_tracked_files():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (installed package)")
    offenders = []
    for path in _tracked_files():
        if not path.is_file() or path.suffix in {".png", ".gz", ".whl", ".der", ".p12"}:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        match = MARKER.search(data)
        if match:
            line = data.count(b"\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, "merge conflict markers left in: " + ", ".join(offenders)


def test_marker_pattern_finds_a_conflict():
    sample = b"a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> branch\n"
    assert MARKER.search(sample)
    assert not MARKER.search(b"Title\n=======\n>>> quoted\n")
