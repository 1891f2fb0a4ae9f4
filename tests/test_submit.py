"""`make submit` tells the truth: the local score, what it covers, and one-line warnings."""
import json
import os
import zipfile

import nbformat
import pytest

from grader import paths
from grader.submit import notebook_warnings
from grader.suites import load_suite
from helpers import cli

SUITE = load_suite("gpt")  # one training case, quick to grade otherwise
COVERED = [c.name for c in SUITE if not c.is_training]
TRAINING = [c.name for c in SUITE if c.is_training]
LOCAL_MAX = sum(c.points for c in SUITE if not c.is_training)


def submitted(tmp_path, *args):
    run = cli("submit", "gpt", "--out", str(tmp_path / "gpt.zip"), *args)
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(tmp_path / "gpt.zip") as archive:
        results = json.loads(archive.read("results.json"))
    return run.stdout, results


def test_the_skeleton_scores_zero_and_says_what_is_missing(tmp_path):
    out, results = submitted(tmp_path)
    assert f"local score 0 / {LOCAL_MAX:g}" in out
    assert f"warning: your score here is 0 / {LOCAL_MAX:g}" in out
    assert f"warning: {len(COVERED)} of {len(COVERED)} cases are still TODO" in out
    assert "warning: written answers are empty in notebooks/gpt.ipynb: Q1, Q2" in out
    assert "upload this file" in out and results["score"] == 0


def test_the_reference_scores_full_marks_and_names_the_training_cases(tmp_path):
    out, results = submitted(tmp_path, "--impl", "solutions")
    assert f"local score {LOCAL_MAX:g} / {LOCAL_MAX:g} on the public inputs" in out
    assert f"Not run here: {TRAINING[0]}" in out and "course's autograder" in out
    assert "warning: your score" not in out and "still TODO" not in out
    assert results["score"] == LOCAL_MAX and "Not run here" in results["output"]
    assert results["extra_data"]["covered"] == COVERED
    assert [case["name"] for case in results["extra_data"]["left_out"]] == TRAINING


def saved_notebook(tmp_path, outputs: bool, answer: str):
    nb = nbformat.read(paths.NOTEBOOKS / "gpt.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("*Your answer:*"):
            cell.source = f"*Your answer:* {answer}"
        elif cell.cell_type == "code" and outputs:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    path = tmp_path / "gpt.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("outputs,answer,module_newer,expected", [
    (False, "", False, ["holds no outputs", "written answers are empty"]),
    (True, "Because the mask is causal.", True, ["was saved before gpt.py last changed"]),
    (True, "Because the mask is causal.", False, []),
])
def test_notebook_warnings(tmp_path, outputs, answer, module_newer, expected):
    notebook = saved_notebook(tmp_path, outputs, answer)
    module = tmp_path / "gpt.py"
    module.write_text("")
    stamp = notebook.stat().st_mtime + (60 if module_newer else -60)
    os.utime(module, (stamp, stamp))
    warnings = notebook_warnings(notebook, module)
    assert len(warnings) == len(expected)
    assert all(part in line for part, line in zip(expected, warnings))
    assert all("\n" not in line for line in warnings)
