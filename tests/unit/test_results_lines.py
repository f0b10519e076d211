"""results.d is one JSON line per result: every result written is read back, whatever characters its strings hold
(a transcript of random octets holds U+0085, U+2028, form feeds...), and a torn last line is the only one skipped."""

from __future__ import annotations

import json

from conformance.results import ResultsWriter, dumps_doc, read_partial

ODD = "a\x85b\u2028c\u2029d\x0ce\x0bf\x1cg\x1dh\x1ei\rj"  # every line break str.splitlines() knows, but "\n"


def test_every_result_is_read_back_whatever_its_strings_hold(tmp_path):
    w = ResultsWriter(tmp_path, "gw0")
    for i in range(3):
        w.append({"check": f"x/c{i}", "nodeid": f"n{i}", "started": i, "message": ODD,
                  "evidence": {"transcript": [{"text": ODD * 3}]}})
    with open(tmp_path / "gw0.jsonl", "a", encoding="utf-8") as f:
        f.write('{"check": "x/torn", "nodeid": "torn", "mess')  # a kill mid-write
    got = read_partial(tmp_path)
    assert [r["nodeid"] for r in got] == ["n0", "n1", "n2"]
    assert all(r["message"] == ODD for r in got)


def test_the_document_keeps_each_result_on_one_line_and_round_trips():
    doc = {"schema_version": 2, "run": {"id": "r"}, "results": [{"nodeid": "n", "message": ODD}], "summary": {}}
    text = dumps_doc(doc)
    assert json.loads(text) == doc
    assert sum(1 for line in text.split("\n") if '"nodeid"' in line) == 1
