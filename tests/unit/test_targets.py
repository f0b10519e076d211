"""Target files: the documented format loads; every mistake is one clear message."""

import json

import pytest

from conformance.errors import BadInput
from conformance.targets import load_target_file

GOOD = '''name = "example"
[endpoints]
imap = "imap://127.0.0.1:10143"
imaps = "imaps://127.0.0.1:10993"
submission = "smtp://127.0.0.1:10587"
jmap = "http://127.0.0.1:8080/.well-known/jmap"
[tls]
verify = false
[[accounts]]
username = "alice"
password = "alicepw"
[[accounts]]
username = "bob"
password = "bobpw"
'''


def write(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_documented_format_loads(tmp_path):
    t = load_target_file(write(tmp_path, GOOD))
    assert t.name == "example" and t.endpoint("imaps").port == 10993 and t.endpoint("jmap").path == "/.well-known/jmap"
    assert [a.username for a in t.accounts] == ["alice", "bob"]
    assert "alicepw" not in str(t.describe())


@pytest.mark.parametrize("mutate, expect", [
    (lambda s: s.replace('name = "example"\n', ""), "missing 'name'"),
    (lambda s: s.replace("imap://127.0.0.1:10143", "pop3://127.0.0.1:10143"), "scheme must be"),
    (lambda s: s.replace("imap://127.0.0.1:10143", "imap://127.0.0.1:99999"), "invalid port"),
    (lambda s: s + 'colour = "blue"\n', "unknown key(s) colour"),
    (lambda s: s.replace("verify = false", "verify = false\npin = 1"), "unknown key(s) in [tls]: pin"),
    (lambda s: s.replace('password = "bobpw"\n', ""), "missing 'password'"),
    (lambda s: s.replace("[endpoints]", "[endpoints]\nftp = \"ftp://x\""), "unknown endpoint 'ftp'"),
    (lambda s: s.replace('name = "example"', 'name = "example'), "not valid TOML"),
])
def test_mistakes_are_named(tmp_path, mutate, expect):
    with pytest.raises(BadInput) as e:
        load_target_file(write(tmp_path, mutate(GOOD)))
    assert expect in str(e.value) and "t.toml" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_target_file(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "x..y", "..", ".hidden", "tab\there", "nul\0byte",
                                  "x" * 129])
def test_a_name_that_cannot_be_part_of_a_file_name_is_refused_at_parse_time(tmp_path, name):
    """Names become results.d/target-NAME-worker.json: '/' or '..' once gave a harness error mid-run (issue 20)."""
    text = GOOD.replace('name = "example"', f"name = {json.dumps(name)}")
    with pytest.raises(BadInput) as e:
        load_target_file(write(tmp_path, text))
    assert "cannot be used" in str(e.value) and "file names" in str(e.value) and "t.toml" in str(e.value)


@pytest.mark.parametrize("name", ["example", "Stalwart-0.9", "mail.example.org", "a_b+c@d", "with space", "é",
                                  'we"ird', "dovecot via nat-idle:timeout=1,mode=rst", "x" * 128])
def test_ordinary_names_are_kept(tmp_path, name):
    assert load_target_file(write(tmp_path, GOOD.replace('name = "example"', f"name = {json.dumps(name)}"))).name == name


def test_run_with_such_a_name_is_exit_2_before_anything_starts(tmp_path, capsys):
    from conformance.cli import main

    target = write(tmp_path, GOOD.replace('name = "example"', 'name = "../../escape"'))
    assert main(["run", "--target", str(target), "--output", str(tmp_path / "run")]) == 2
    assert "cannot be used" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
