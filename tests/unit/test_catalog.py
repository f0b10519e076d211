"""The catalog's validation: every mistake in profiles/ or in a check's requirement ids is a clear error."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.catalog import PROFILES_DIR, CatalogError, load_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_catalog_is_valid():
    cat = load_catalog()
    assert "lemonade" in cat.profiles and "lemonade.store.capabilities" in cat.requirements
    for prof in cat.profiles.values():
        assert all(rid in cat.requirements for rid in prof.ids)


@pytest.fixture
def catalog_copy(tmp_path):
    dst = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, dst)
    return dst


def test_profile_naming_unknown_requirement_fails(catalog_copy):
    (catalog_copy / "bogus.yaml").write_text("name: bogus\nrequirements:\n  - no.such.requirement\n")
    with pytest.raises(CatalogError, match="profile 'bogus'.*'no.such.requirement', which does not exist"):
        load_catalog(catalog_copy)


def test_duplicate_requirement_id_fails(catalog_copy):
    (catalog_copy / "requirements" / "zz-dup.yaml").write_text(textwrap.dedent("""\
        requirements:
          - id: lemonade.store.capabilities
            title: again
            source: {rfc: 5550, section: "3.2"}
            level: MUST
            family: capability
        """))
    with pytest.raises(CatalogError, match="duplicate id"):
        load_catalog(catalog_copy)


@pytest.mark.parametrize("field, value, expect", [
    ("level", "MUSTN'T", "level"), ("family", "misc", "family"), ("id", "Bad Id", "must look like"),
])
def test_bad_requirement_fields_fail(catalog_copy, field, value, expect):
    entry = {"id": "x.y.z", "title": "t", "source": "{rfc: 1, section: \"1\"}", "level": "MUST", "family": "push"}
    entry[field] = value
    body = "\n".join(f"    {k}: {v if k == 'source' else repr(v)}" for k, v in entry.items())
    body = body.replace("    id:", "  - id:", 1)
    (catalog_copy / "requirements" / "zz.yaml").write_text("requirements:\n" + body + "\n")
    with pytest.raises(CatalogError, match=expect):
        load_catalog(catalog_copy)


def test_parameter_type_checked(catalog_copy):
    (catalog_copy / "requirements" / "zz.yaml").write_text(textwrap.dedent("""\
        requirements:
          - id: x.y.z
            title: t
            source: {rfc: 1, section: "1"}
            level: MUST
            family: push
            parameters:
              gap: {type: float, quick: fast, full: 300}
        """))
    with pytest.raises(CatalogError, match="quick value 'fast' is not float"):
        load_catalog(catalog_copy)


def test_check_naming_unknown_requirement_is_a_collection_error(tmp_path):
    check = tmp_path / "test_bogus_check.py"
    check.write_text(textwrap.dedent("""\
        import pytest

        @pytest.mark.requirement("no.such.requirement")
        def test_x(case):
            assert True
        """))
    p = subprocess.run([sys.executable, "-m", "pytest", str(check), "-p", "conformance.plugin", "-p", "no:cacheprovider",
                        "--lemonade-output", str(tmp_path / "out"), "--rootdir", str(tmp_path), "-c", "/dev/null"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode not in (0, 1, 5), p.stdout + p.stderr
    assert "unknown requirement id(s) no.such.requirement" in p.stdout + p.stderr
