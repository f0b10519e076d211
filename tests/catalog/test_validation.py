"""Every mistake in profiles/ is a CatalogError whose message names the file and the entry."""

import shutil
import textwrap
from collections import Counter

import pytest

from conformance.catalog import PROFILES_DIR, CatalogError, load_catalog

GOOD_REQ = """\
requirements:
  - id: zz.topic.rule
    title: A statement.
    source: {rfc: 9051, section: "6.1"}
    level: MUST
    family: push
    parameters:
      gap: {type: float, quick: 1, full: 30, unit: s, help: "how long"}
"""


@pytest.fixture
def cat(tmp_path):
    """A copy of the shipped profiles/ plus one extra requirement file (zz.yaml) the test can rewrite."""
    dst = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, dst)
    (dst / "requirements" / "zz.yaml").write_text(GOOD_REQ)
    return dst


def write_req(cat, body: str) -> None:
    (cat / "requirements" / "zz.yaml").write_text(textwrap.dedent(body))


def write_profile(cat, body: str) -> None:
    (cat / "zz-profile.yaml").write_text(textwrap.dedent(body))


def test_fixture_is_valid(cat):
    c = load_catalog(cat)
    assert c.requirements["zz.topic.rule"].parameters["gap"].value("full") == 30


# -- the shipped catalog ---------------------------------------------------------------------------------
def test_shipped_catalog_size_and_levels():
    c = load_catalog()
    assert len(c.requirements) >= 100
    assert set(Counter(r.level for r in c.requirements.values())) <= {"MUST", "SHOULD", "MAY", "PROFILE"}
    shipped = {"lemonade", "mobile-intermediary", "imap-push", "imap-reconnect", "jmap", "transport-security"}
    assert shipped <= set(c.profiles)


def test_every_shipped_requirement_is_in_a_profile():
    """A requirement in no profile would never be selected by a default run, so its checks would never run."""
    c = load_catalog()
    in_profiles = set().union(*(set(p.ids) for p in c.profiles.values()))
    assert not set(c.requirements) - in_profiles


def test_lemonade_profile_membership():
    c = load_catalog()
    ids = set(c.profiles["lemonade"].ids)
    assert {"lemonade.store.keywords", "lemonade.store.url-partial", "lemonade.store.binary-append",
            "lemonade.store.idle-timely", "lemonade.submit.burl-imap", "qresync.enable", "notify.overflow",
            "catenate.octets-unchanged", "urlauth.urlfetch-ok", "burl.bdat-interleave"} <= ids
    # derived rules and obligations of other parties stay out of the RFC 5550 profile
    assert not {rid for rid in ids if c.requirements[rid].level == "PROFILE"}
    assert "idle.reissue-29" not in ids and not {rid for rid in ids if rid.startswith(("jmap", "tls.", "mobile."))}


def test_mobile_intermediary_is_derived_and_explicit():
    c = load_catalog()
    prof = c.profiles["mobile-intermediary"]
    assert all(rid.startswith("mobile.") for rid in c.requirements if c.requirements[rid].family and
               rid.startswith("mobile.")) and {r for r in c.requirements if r.startswith("mobile.")} <= set(prof.ids)
    assert c.requirements["mobile.push.survives-idle-timeout"].parameters["idle_timeout"].value("quick") > 0


def test_untestable_entries_give_reasons():
    c = load_catalog()
    untestable = [r for r in c.requirements.values() if r.untestable]
    assert untestable and all(len(r.untestable) > 20 for r in untestable)


# -- requirement files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("old, new, expect", [
    ("level: MUST", "level: MUSTNT", "zz.yaml requirement zz.topic.rule: level 'MUSTNT' must be one of"),
    ("family: push", "family: misc", "zz.yaml requirement zz.topic.rule: family 'misc' must be one of"),
    ("id: zz.topic.rule", "id: Bad Id", "zz.yaml requirement #1: id 'Bad Id' must look like family.topic.rule"),
    ("    title: A statement.\n", "", "zz.yaml requirement zz.topic.rule: missing 'title'"),
    ("title: A statement.", "title: ''", "title must be a non-empty sentence"),
    ('source: {rfc: 9051, section: "6.1"}', "source: {rfc: IMAP}", "source rfc 'IMAP' must be an RFC number"),
    ('source: {rfc: 9051, section: "6.1"}', "source: {section: '1'}", "source must be {rfc, section}"),
    ('source: {rfc: 9051, section: "6.1"}', "source: {derived: why, documents: [RFC 1]}",
     "a derived requirement has level PROFILE"),
    ("family: push", "family: push\n    flavour: sour", "unknown key(s) flavour"),
    ("family: push", "family: push\n    untestable: true", "untestable must be the reason (a non-empty string)"),
    ("family: push", "family: push\n    untestable: ''", "untestable must be the reason"),
    ("quick: 1,", "quick: fast,", "parameter 'gap': quick value 'fast' is not float"),
    ("type: float", "type: number", "parameter 'gap': type must be one of"),
    ("quick: 1, full: 30,", "quick: 1,", "parameter 'gap' needs type, quick and full"),
    ('help: "how long"', "help: 5", "parameter 'gap': help must be a string"),
    ("unit: s,", "unit: s, colour: red,", "parameter 'gap': unknown key(s) colour"),
])
def test_bad_requirement_is_named(cat, old, new, expect):
    assert old in GOOD_REQ
    write_req(cat, GOOD_REQ.replace(old, new, 1))
    with pytest.raises(CatalogError) as e:
        load_catalog(cat)
    assert expect in str(e.value)


def test_duplicate_id_names_both_files(cat):
    write_req(cat, GOOD_REQ.replace("zz.topic.rule", "lemonade.store.keywords"))
    duplicate = r"zz.yaml requirement lemonade.store.keywords: duplicate id \(also in capability.yaml\)"
    with pytest.raises(CatalogError, match=duplicate):
        load_catalog(cat)


def test_invalid_yaml_names_the_file(cat):
    write_req(cat, "requirements:\n  - id: [unclosed\n")
    with pytest.raises(CatalogError, match=r"zz.yaml: not valid YAML"):
        load_catalog(cat)


def test_spec_source_for_non_rfc_documents(cat):
    write_req(cat, GOOD_REQ.replace('{rfc: 9051, section: "6.1"}', '{spec: "WHATWG HTML", section: "9.2.3"}'))
    req = load_catalog(cat).requirements["zz.topic.rule"]
    assert req.source_text == "WHATWG HTML §9.2.3" and req.url is None


# -- profiles --------------------------------------------------------------------------------------------
PROFILE = """\
name: zz
title: test profile
requirements:
  - zz.topic.rule
"""


def test_profile_entry_with_overrides(cat):
    write_profile(cat, """\
        name: zz
        requirements:
          - {id: zz.topic.rule, level: SHOULD, parameters: {gap: {quick: 2.5}}}
        include: ["lemonade.store.*"]
        exclude: ["lemonade.store.starttls"]
        """)
    c = load_catalog(cat)
    assert c.level("zz.topic.rule", ["zz"]) == "SHOULD" and c.level("zz.topic.rule") == "MUST"
    assert c.parameter("zz.topic.rule", "gap", "quick", ["zz"]) == 2.5
    assert c.parameter("zz.topic.rule", "gap", "full", ["zz"]) == 30
    assert "lemonade.store.keywords" in c.profiles["zz"].ids and "lemonade.store.starttls" not in c.profiles["zz"].ids


def test_levels_limit_what_patterns_pick_up(cat):
    write_profile(cat, """\
        name: zz
        requirements: [mobile.tls.min-version]
        include: ["qresync.*", "idle.*"]
        levels: [MUST]
        """)
    ids = load_catalog(cat).profiles["zz"].ids
    assert "qresync.enable" in ids and "mobile.tls.min-version" in ids  # explicit entries are always kept
    assert "qresync.resync-equivalence" not in ids and "idle.reissue-29" not in ids  # PROFILE and SHOULD rows


@pytest.mark.parametrize("body, expect", [
    (PROFILE + "  - no.such.requirement\n",
     "profile 'zz' (zz-profile.yaml) names requirement 'no.such.requirement', which does not exist"),
    (PROFILE + "  - zz.topic.rule\n", "profile 'zz' (zz-profile.yaml): requirement 'zz.topic.rule' is listed twice"),
    (PROFILE + 'include: ["nosuch.*"]\n', "include pattern 'nosuch.*' matches no requirement"),
    (PROFILE + 'include: "idle.*"\n', "'include' must be a list of id patterns"),
    (PROFILE + 'exclude: ["nosuch.*"]\n', "exclude pattern 'nosuch.*' matches no requirement"),
    (PROFILE + 'exclude: ["zz.*"]\n', "exclude pattern 'zz.*' removes explicitly listed zz.topic.rule"),
    (PROFILE.replace("- zz.topic.rule", "- {id: zz.topic.rule, level: MUSTNT}"),
     "level override 'MUSTNT' for zz.topic.rule must be one of"),
    (PROFILE.replace("- zz.topic.rule", "- {id: zz.topic.rule, parameters: {speed: {quick: 1}}}"),
     "zz.topic.rule has no parameter 'speed' (it has: gap)"),
    (PROFILE.replace("- zz.topic.rule", "- {id: zz.topic.rule, parameters: {gap: {quick: soon}}}"),
     "zz.topic.rule parameter 'gap': quick value 'soon' is not float"),
    (PROFILE.replace("- zz.topic.rule", "- {id: zz.topic.rule, parameters: {gap: {slow: 1}}}"),
     "the override maps quick and/or full to values"),
    (PROFILE.replace("- zz.topic.rule", "- {id: zz.topic.rule, why: because}"),
     "needs 'id' and only 'level'/'parameters' besides"),
    (PROFILE + "colour: red\n", "zz-profile.yaml: unknown key(s) colour"),
    (PROFILE + "levels: [MUST, OFTEN]\n", "'levels' (the catalog levels include patterns pick up) must be a list"),
    (PROFILE.replace("name: zz", "name: Bad Name"), "zz-profile.yaml: 'name' must be a lower-case word"),
    (PROFILE.replace("name: zz", "name: lemonade"), "duplicate profile name 'lemonade'"),
    ("name: zz\ntitle: empty\n", "profile 'zz' (zz-profile.yaml) lists no requirements"),
])
def test_bad_profile_is_named(cat, body, expect):
    write_profile(cat, body)
    with pytest.raises(CatalogError) as e:
        load_catalog(cat)
    assert expect in str(e.value)


def test_unknown_profile_is_bad_input_naming_the_known_ones():
    with pytest.raises(CatalogError.__mro__[1], match=r"unknown profile 'nonesuch' \(known: .*lemonade"):
        load_catalog().profile("nonesuch")
