"""JSON Schemas of the files lemonade writes: ``results.schema.json`` documents results.json (schema 2; 1 still valid)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def results_schema() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "results.schema.json").read_text(encoding="utf-8"))


def validate_results(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the results.json schema, as readable lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]
