"""The class report (grader/classreport.py) on outcomes built here, without grading: hostile
text stays text, similarity flags copies and not independent work, and an empty class renders."""
import re
from pathlib import Path

import pytest

from grader import paths
from grader.batch import Outcome
from grader.cases import Verdict
from grader.classreport import class_summary, similar_pairs, write_report
from grader.roster import Student
from grader.suites import load_suite
from helpers import browser, headless

A = "attention"
CASES = load_suite(A).select(None, training=False)
SKELETON = (paths.ASSIGNMENTS / f"{A}.py").read_text()
REFERENCE = (paths.SOLUTIONS / f"{A}.py").read_text()
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
STUDENT_CODE = '''
def attention(q, k, v):
    """</pre><script>alert(3)</script>"""
    d = q.shape[-1]
    logits = torch.einsum("bqd,bkd->bqk", q, k) / math.sqrt(d)
    weights = torch.softmax(logits, dim=-1)
    return torch.einsum("bqk,bkd->bqd", weights, v), weights
'''


def outcome(tmp: Path, sid: str, code: str | None, passed: set, mistake: str = "",
            students=(), reason: str = "") -> Outcome:
    """A graded outcome (or, with `reason`, one no case could run) whose module is `code`."""
    folder = tmp / sid
    folder.mkdir()
    if code is not None:
        (folder / f"{A}.py").write_text(code)
    verdicts = [Verdict(c.name, c.points if c.name in passed else 0.0, c.points,
                        c.name in passed, reason or ("" if c.name in passed else "wrong"),
                        error=None if reason else 0.5,
                        mistake="" if c.name in passed or reason else mistake)
                for c in CASES]
    return Outcome(sid, folder, verdicts, 3.5, students=list(students))


def test_hostile_text_stays_text(tmp_path):
    names = {c.name for c in CASES}
    outcomes = {
        "a": outcome(tmp_path, "a", SKELETON + STUDENT_CODE, names,
                     students=[Student("1", HOSTILE, "x@y")]),
        "b": outcome(tmp_path, "b", SKELETON + STUDENT_CODE, set(), mistake=HOSTILE),
        "c": outcome(tmp_path, "c", None, set(), reason=f"importing the module failed: {HOSTILE}"),
    }
    page = write_report(tmp_path / "report.html", A, CASES, outcomes)
    text = page.read_text()
    assert "<script" not in text and "<img src=x" not in text and "</pre><script" not in text
    assert text.count("&lt;script&gt;alert(") >= 4  # name, mistake, reason, code
    assert 'data-a="a" data-b="b"' in text  # the two copies are flagged side by side


@pytest.mark.skipif(browser() is None, reason="needs Chromium (make install adds it)")
def test_hostile_text_never_becomes_an_element_in_the_browser(tmp_path):
    outcomes = {"a": outcome(tmp_path, "a", SKELETON + STUDENT_CODE, set(),
                             students=[Student("1", HOSTILE, "")])}
    page = write_report(tmp_path / "report.html", A, CASES, outcomes)
    dom = headless(page, "--dump-dom", tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>" in dom.stdout and "<script" not in dom.stdout
    assert '<img src="x"' not in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout


def test_similarity_flags_copies_not_independent_work_or_the_skeleton():
    independent = SKELETON + '''
def attention(q, k, v):
    scale = 1.0 / math.sqrt(k.shape[2])
    probs = (q.matmul(k.transpose(1, 2)) * scale).softmax(-1)
    return probs.matmul(v), probs
'''
    renamed = REFERENCE.replace("scores", "logits").replace("att_values", "probs")
    sources = {"ref": REFERENCE, "copy": renamed, "own": SKELETON + STUDENT_CODE,
               "other": independent, "skeleton": SKELETON, "also_skeleton": SKELETON}
    pairs = {(p.a, p.b): p for p in similar_pairs(sources, SKELETON)}
    assert set(pairs) == {("copy", "ref")}
    pair = pairs["copy", "ref"]
    assert pair.share_a > 0.9 and pair.share_b > 0.9
    left = [text for number, text, hit in pair.lines_a if hit]
    right = [text for number, text, hit in pair.lines_b if hit]
    assert any("logits" in line for line in left) and any("scores" in line for line in right)
    # Without the skeleton as boilerplate the given code alone makes two skeletons "copies".
    assert ("also_skeleton", "skeleton") in {(p.a, p.b) for p in similar_pairs(sources)}


def test_pass_rates_count_graded_submissions_only(tmp_path):
    first, second = CASES[0].name, CASES[1].name
    outcomes = {"a": outcome(tmp_path, "a", REFERENCE, {first, second}),
                "b": outcome(tmp_path, "b", SKELETON, {first}, mistake="no_scale"),
                "c": outcome(tmp_path, "c", None, set(), reason="missing file: no attention.py")}
    summary = class_summary(A, CASES, outcomes)
    rates = {c["name"]: (c["passed"], c["graded"]) for c in summary["cases"]}
    assert rates[first] == (2, 2) and rates[second] == (1, 2) and rates[CASES[2].name] == (0, 2)
    found = next(c for c in summary["cases"] if c["name"] == second)["mistakes"]
    assert found == [{"name": "no_scale", "count": 1, "submissions": ["b"],
                      "description": "the scores were not divided by sqrt(d_k)"}]
    assert summary["not_graded"] == [("c", "missing file: no attention.py")]


def test_a_class_nobody_could_be_graded_in_still_has_a_report(tmp_path):
    outcomes = {"a": outcome(tmp_path, "a", None, set(), reason="sandbox unavailable: no bwrap")}
    text = write_report(tmp_path / "report.html", A, CASES, outcomes).read_text()
    assert "No submission was graded." in text and "sandbox unavailable: no bwrap" in text
    assert re.search(r'data-passed="0" data-graded="0"', text)
