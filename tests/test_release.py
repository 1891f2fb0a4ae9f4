"""Release bundles and the command line, exercised the way staff and students use them."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import paths
from grader.suites import load_suite
from grader.release import gradescope_bundle, student_bundle
from helpers import assert_gradescope_schema, cli


MAX = sum(c.points for c in load_suite("transformer").select(None, training=False))


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return student_bundle(tmp_path_factory.mktemp("release") / "student")


def run_in(folder: Path, *args, env=None, timeout=600):
    """Run python in `folder` so that the bundle's own packages are the ones imported."""
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = str(folder)
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_student_bundle_has_no_solutions_and_no_expected_values(student):
    names = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    assert not any(n.startswith(("solutions/", "tests/")) for n in names)
    assert not any("autograder_expected" in n for n in names)
    assert "fixtures/transformer/public.pt" in names
    assert "fixtures/transformer/autograder_inputs.pt" in names
    assert "assignments/transformer.py" in names and "Makefile" in names


def test_student_bundle_grades_on_its_own(student):
    where = run_in(student, "-c", "import grader.paths as p; print(p.ROOT)")
    assert where.stdout.strip() == str(student), where.stderr
    run = run_in(student, "-m", "grader", "grade", "transformer", "--no-training")
    assert run.returncode == 0, run.stderr
    assert "public set" in run.stdout and f"0 / {MAX:g}" in run.stdout
    # A student who finishes the work gets full marks from the same bundle.
    shutil.copy(paths.SOLUTIONS / "transformer.py", student / "assignments" / "transformer.py")
    run = run_in(student, "-m", "grader", "grade", "transformer", "--no-training")
    assert f"{MAX:g} / {MAX:g}" in run.stdout, run.stdout + run.stderr
    run = run_in(student, "-m", "grader", "submit", "transformer")
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(student / "submissions" / "transformer.zip") as zf:
        assert {"transformer.py", "autograder.pt", "results.json", "MANIFEST.json"} <= set(zf.namelist())


def test_student_bundle_notebook_runs(student, tmp_path):
    reference = tmp_path / "ref"
    reference.mkdir()
    shutil.copy(paths.SOLUTIONS / "transformer.py", reference)
    script = (
        "import nbformat, nbclient, sys\n"
        "nb = nbformat.read('notebooks/transformer.ipynb', as_version=4)\n"
        "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',\n"
        "    resources={'metadata': {'path': 'notebooks'}}).execute()\n"
        "print('executed', len(nb.cells))\n")
    run = run_in(student, "-c", script, env={"DLCOURSE_IMPL": str(reference),
                                              "DLCOURSE_QUICK": "1", "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "executed" in run.stdout


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    """Gradescope's layout: ROOT/source (the unzipped bundle), ROOT/submission, ROOT/results."""
    root = tmp_path_factory.mktemp("autograder")
    archive = gradescope_bundle("transformer", root / "bundle.zip")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert "setup.sh" in names and "run_autograder" in names  # at the archive root
        assert "fixtures/transformer/autograder_expected.pt" in names
        # Only this assignment's reference, which evaluates trained weights in a sandbox
        # of its own; student code never sees it (tests/test_corpus.py::reads_fixtures).
        assert [n for n in names if n.startswith("solutions/")] == ["solutions/transformer.py"]
        assert "MANUAL_GRADING.md" in names and "Q1." in zf.read("MANUAL_GRADING.md").decode()
        assert "system-packages.sh bubblewrap" in zf.read("setup.sh").decode()
        zf.extractall(root / "source")
    (root / "source" / "run_autograder").chmod(0o755)
    return root


def run_autograder(root: Path):
    """Gradescope's call, in ROOT's layout; returns the run and the results it left."""
    results = root / "results" / "results.json"
    results.unlink(missing_ok=True)
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")],
                         env=dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHON=sys.executable,
                                  GRADER_ARGS="--no-training", PYTHONPATH=str(root / "source")),
                         capture_output=True, text=True, timeout=600)
    return run, json.loads(results.read_text())


@pytest.mark.parametrize("impl,score", [("solutions", MAX), ("assignments", 0)])
def test_gradescope_run_autograder(autograder, impl, score):
    submission = autograder / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    submission.mkdir()
    shutil.copy(paths.ROOT / impl / "transformer.py", submission)
    run, data = run_autograder(autograder)
    assert run.returncode == 0, run.stderr
    assert_gradescope_schema(data)
    assert data["score"] == score
    assert "autograder set" in run.stdout


def test_gradescope_accepts_the_zip_from_make_submit(autograder, tmp_path):
    submission = autograder / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    submission.mkdir()
    run = cli("submit", "transformer", "--impl", "solutions", "--out",
              str(submission / "transformer.zip"))
    assert run.returncode == 0, run.stderr
    run, data = run_autograder(autograder)
    assert data["score"] == MAX, run.stdout + run.stderr


def test_outputs_mode_scores_the_submitted_autograder_file(tmp_path):
    archive = tmp_path / "sub.zip"
    assert cli("submit", "transformer", "--impl", "solutions", "--out", str(archive)).returncode == 0
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("MANIFEST.json"))
        import hashlib
        for name, entry in manifest.items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == entry["sha256"]
        (tmp_path / "autograder.pt").write_bytes(zf.read("autograder.pt"))
    results = tmp_path / "results.json"
    run = cli("grade", "transformer", "--outputs", str(tmp_path / "autograder.pt"),
              "--results", str(results))
    assert run.returncode == 0, run.stderr
    assert json.loads(results.read_text())["score"] == MAX


@pytest.mark.parametrize("args,message", [
    (["grade", "nosuch"], "unknown assignment 'nosuch'"),
    (["grade", "transformer", "--impl", "/no/such/folder"], "no such file or folder"),
    (["grade", "transformer", "--cases", "nosuch/case"], "no case 'nosuch/case'"),
    (["grade", "transformer", "--outputs", "/no/such.pt"], "no such file"),
    (["batch", "/no/such.zip", "--assignment", "transformer"], "no such submission"),
])
def test_bad_input_gets_one_clear_line_and_exit_2(args, message):
    run = cli(*args)
    assert run.returncode == 2
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_batch_grades_a_class_and_writes_a_gradebook(tmp_path):
    good = tmp_path / "alice.zip"
    assert cli("submit", "transformer", "--impl", "solutions", "--out", str(good)).returncode == 0
    broken = tmp_path / "bob"
    broken.mkdir()
    (broken / "transformer.py").write_text("import os\nos._exit(3)\n")
    corrupt = tmp_path / "carol.zip"
    corrupt.write_bytes(b"not a zip")
    out = tmp_path / "graded"
    run = cli("batch", str(good), str(broken), str(corrupt), str(paths.ASSIGNMENTS),
              "--assignment", "transformer", "--jobs", "2", "--no-training", "--out", str(out))
    assert run.returncode == 0, run.stderr
    rows = (out / "gradebook.csv").read_text().splitlines()
    header, body = rows[0].split(","), {r.split(",")[0]: r.split(",") for r in rows[1:]}
    assert header[0] == "submission" and header[-3:] == ["total", "max", "not graded"]
    assert body["alice"][-3:] == [f"{MAX:g}", f"{MAX:g}", ""]
    assert body["bob"][-3] == body["carol"][-3] == body["assignments"][-3] == "0"
    for name in body:
        assert_gradescope_schema(json.loads((out / name / "results.json").read_text()))
