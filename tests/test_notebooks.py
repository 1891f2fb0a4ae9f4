"""Every notebook runs top to bottom with the reference, in quick mode, on one torch thread
(as students run it), with no cell over 3x its stated CPU time and no warning of its own."""
import copy
import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass

import nbformat
import pytest

from dlkit import load_assignment, progress
from grader import paths, written
from grader.check import check
from helpers import once

NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS.glob("*.py"))
SLACK = 3  # a cell may take this many times its estimate before the test fails

# Run first in the kernel: per cell, the CPU time of the kernel process (and of children it
# waited for), the estimate the cell printed (dlkit.progress.stated) and torch's threads.
TIMER = """
import resource as _resource, sys as _sys
import dlkit.progress as _progress
_cells = []

def _cpu():
    return sum(getattr(resource_usage, field) for resource_usage in
               (_resource.getrusage(_resource.RUSAGE_SELF),
                _resource.getrusage(_resource.RUSAGE_CHILDREN))
               for field in ("ru_utime", "ru_stime"))

def _before(info):
    _progress.stated = None
    _cells.append({"cpu": -_cpu()})

def _after(result):
    if _cells and _cells[-1]["cpu"] <= 0:
        torch = _sys.modules.get("torch")
        _cells[-1].update(cpu=_cells[-1]["cpu"] + _cpu(), stated=_progress.stated,
                          threads=torch.get_num_threads() if torch else None)

get_ipython().events.register("pre_run_cell", _before)
get_ipython().events.register("post_run_cell", _after)
"""
REPORT = "import json as _json; print(_json.dumps(_cells[:-1]))"


@dataclass
class Cell:
    source: str
    cpu: float           # CPU-seconds of the kernel while the cell ran
    stated: float | None  # the estimate it printed, if any
    threads: int | None   # torch's intra-op threads after it ran

    @property
    def budget(self) -> float:
        return SLACK * (self.stated if self.stated is not None else progress.UNSTATED_CPU_SECONDS)


def execute(name: str, quick: bool = True, timeout: int = 900):
    """Run notebooks/<name>.ipynb with the reference solution in place of the student's
    module; returns the executed notebook and one Cell per code cell."""
    import nbclient
    nb = nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    nb.cells = [nbformat.v4.new_code_cell(TIMER), *nb.cells, nbformat.v4.new_code_cell(REPORT)]
    env_before = dict(os.environ)
    os.environ.update(DLCOURSE_IMPL=str(paths.SOLUTIONS), MPLBACKEND="Agg")
    if quick:
        os.environ["DLCOURSE_QUICK"] = "1"
    else:
        os.environ.pop("DLCOURSE_QUICK", None)
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(paths.NOTEBOOKS)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    timings = json.loads(nb.cells[-1].outputs[0]["text"])
    nb.cells = nb.cells[1:-1]
    assert len(timings) == len(code), (len(timings), len(code))
    return nb, [Cell(cell.source, **t) for cell, t in zip(code, timings)]


@pytest.fixture(scope="session")
def executed(shared_folder):
    """executed(A): notebook A run once for the whole session, every xdist worker and every
    test of this file included; (notebook, cells)."""
    def run(name: str) -> str:
        nb, cells = execute(name)
        return json.dumps({"notebook": nbformat.writes(nb),
                           "cells": [dataclasses.asdict(cell) for cell in cells]})

    @functools.cache
    def of(name: str):
        saved = json.loads(once(shared_folder, f"notebook-{name}", lambda: run(name)))
        return (nbformat.reads(saved["notebook"], as_version=4),
                [Cell(**cell) for cell in saved["cells"]])
    return of


def notebook_text(nb) -> str:
    """All text outputs of an executed notebook, for asserting on what the learner sees."""
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(chunks)


def first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")[:70]


@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_notebook_executes_with_the_reference(assignment, executed):
    nb, _ = executed(assignment)
    text = notebook_text(nb)
    assert "PASS" in text and "FAIL" not in text and "TODO" not in text


@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_every_cell_runs_within_its_estimate_on_one_thread(assignment, executed):
    _, cells = executed(assignment)
    slow = [f"{first_line(c.source)!r}: {c.cpu:.1f} CPU-s > {c.budget:.1f}" for c in cells
            if c.cpu > c.budget]
    assert not slow, slow
    # The first cell sets one thread: every cell after it trains as the grader does.
    assert {c.threads for c in cells[1:]} == {1}, [(first_line(c.source), c.threads)
                                                    for c in cells if c.threads != 1]


@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_the_notebook_itself_warns_nothing(assignment, executed):
    nb, _ = executed(assignment)
    warnings = [line for cell in nb.cells for out in cell.get("outputs", [])
                if out.get("name") == "stderr" for line in out["text"].splitlines()
                if re.search(r"Warning\b", line)]
    assert not warnings, warnings



@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_progress_bars_are_saved_in_their_final_state(assignment, executed):
    nb, _ = executed(assignment)
    bars = [text for cell in nb.cells for out in cell.get("outputs", [])
            for text in ["".join(out.get("data", {}).get("text/plain", ""))] if "%|" in text]
    assert all(bar.split(":", 1)[-1].lstrip().startswith("100%|") for bar in bars), bars
    assert not any("widget-view" in str(out.get("data", {}))
                   for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_a_saved_notebook_holds_no_scripts(assignment, executed):
    """BertViz's views (megabytes of weights and JavaScript) go to pages of their own."""
    nb, _ = executed(assignment)
    html = ["".join(out["data"]["text/html"]) for cell in nb.cells
            for out in cell.get("outputs", []) if "text/html" in out.get("data", {})]
    assert not [h for h in html if "<script" in h]


def test_check_runs_the_case_it_names_or_a_group_ending_in_a_slash(capsys):
    gpt = load_assignment("gpt", paths.SOLUTIONS)
    assert check(gpt, "attention/head")  # not attention/head_cache, which Part 4 teaches
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["attention/head"]
    assert check(gpt, "attention/")
    assert "attention/head_cache" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no case or group 'attention/hea'"):
        check(gpt, "attention/hea")

# An answer with the formulas students write, and long enough to take two pages under Q2.
ANSWER = ("*Your answer:* the scores are divided by $\\sqrt{d_k}$, blocked ones set to "
          "$-\\infty$, and post-LN is\n\n$$x \\leftarrow \\mathrm{LN}(x + f(x)).$$\n\n")
RAW_TEX = re.compile(r"\\[A-Za-z]+|\$")


@pytest.mark.skipif(written.browser() is None, reason="needs Chromium (make install adds it)")
@pytest.mark.parametrize("assignment", NOTEBOOKS)
def test_written_answers_of_the_executed_notebook(assignment, executed, tmp_path):
    """Answers filled in: formulas typeset (no raw LaTeX in the PDF's text), every figure a
    question names attached on its pages, and each question from the top of a new page."""
    import pypdf
    nb = copy.deepcopy(executed(assignment)[0])
    answers = [c for c in nb.cells if c.cell_type == "markdown"
               and c.source.startswith("*Your answer:*")]
    for index, cell in enumerate(answers):
        cell.source = ANSWER + ("A sentence of a long answer. " * 500 if index == 1 else "")
    nbformat.write(nb, tmp_path / f"{assignment}.ipynb")
    result = written.write_answers(tmp_path / f"{assignment}.ipynb", tmp_path / assignment, assignment)
    assert not result.notes, result.notes
    pages = pypdf.PdfReader(tmp_path / f"{assignment}.pdf").pages
    texts = [" ".join(page.extract_text().split()) for page in pages]
    assert not [t for t in texts if RAW_TEX.search(t)]
    spans = [result.pages[q.number] for q in result.questions]
    assert [first for first, _ in spans] == sorted({first for first, _ in spans})
    assert spans[1][1] > spans[1][0]  # the long answer runs on, the next question starts anew
    for q, (first, last) in zip(result.questions, spans):
        assert texts[first - 1].removeprefix(assignment).strip().startswith(f"Q{q.number}.")
        if q.tags:
            assert q.figures, (q.number, q.tags)  # the named figures exist in the notebook
        assert sum(len(pages[i].images) for i in range(first - 1, last)) >= len(q.figures)
