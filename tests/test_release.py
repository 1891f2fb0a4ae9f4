"""Release bundles and the command line, exercised the way staff and students use them."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import paths
from grader.suites import load_suite
from grader.release import STUDENT_TARGETS, RULE, gradescope_bundle, student_bundle
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


def test_student_bundle_has_the_students_readme_and_targets(student):
    readme = (student / "README.md").read_text()
    assert "make submit A=" in readme and "public" in readme and "autograder" in readme
    assert "For instructors" not in readme and "solutions/" not in readme
    makefile = (student / "Makefile").read_text()
    targets = {m.group(1).strip() for line in makefile.splitlines()
               if not line.startswith(("\t", "#")) and (m := RULE.match(line))}
    assert targets == STUDENT_TARGETS | {".PHONY"}
    run = subprocess.run(["make", "-n", "check"], cwd=student, capture_output=True, text=True)
    assert run.returncode != 0 and "No rule to make target" in run.stderr
    run = subprocess.run(["make", "-n", "grade", "A=attention"], cwd=student,
                         capture_output=True, text=True)
    assert run.returncode == 0 and "-m grader grade attention" in run.stdout, run.stderr


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


def run_autograder(root: Path, **env):
    """Gradescope's call, in ROOT's layout; returns the run and the results it left."""
    results = root / "results" / "results.json"
    results.unlink(missing_ok=True)
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")],
                         env=dict(os.environ, AUTOGRADER_ROOT=str(root), PYTHON=sys.executable,
                                  GRADER_ARGS="--no-training", PYTHONPATH=str(root / "source"),
                                  **env),
                         capture_output=True, text=True, timeout=600)
    return run, json.loads(results.read_text()) if results.is_file() else None


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


def test_gradescope_shows_cases_as_the_staff_chose(autograder):
    submission = autograder / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    submission.mkdir()
    shutil.copy(paths.SOLUTIONS / "transformer.py", submission)
    run, data = run_autograder(autograder, GRADER_VISIBILITY="*=after_published,tokens/=hidden")
    assert run.returncode == 0, run.stderr
    shown = {t["name"]: t["visibility"] for t in data["tests"]}
    assert {v for n, v in shown.items() if n.startswith("tokens/")} == {"hidden"}
    assert {v for n, v in shown.items() if not n.startswith("tokens/")} == {"after_published"}
    assert data["score"] == MAX  # visibility changes what students see, never the score


def test_gradescope_refuses_a_truncated_fixture_before_grading(tmp_path):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(gradescope_bundle("attention", tmp_path / "bundle.zip")) as zf:
        zf.extractall(root / "source")
    fixture = root / "source" / "fixtures" / "attention" / "autograder_expected.pt"
    fixture.write_bytes(fixture.read_bytes()[:4096])
    (root / "submission").mkdir()
    shutil.copy(paths.SOLUTIONS / "attention.py", root / "submission")
    run, data = run_autograder(root)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "autograder_expected.pt cannot be read" in errors[0], run.stderr
    assert data is None  # no score: Gradescope shows staff an autograder failure
    assert "autograder set" not in run.stdout  # nobody was graded


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
    (["batch", "solutions", "--assignment", "atention"], "unknown assignment 'atention'"),
    (["batch", "solutions", "--assignment", "transformer", "--cases", "nosuch/case"],
     "no case 'nosuch/case'"),
    (["mutant", "atention"], "unknown assignment 'atention'"),
    (["mutant", "attention", "no_sclae"], "no mutant 'no_sclae'"),
    (["fixtures", "atention"], "unknown assignment 'atention'"),
    (["audit", "atention"], "unknown assignment 'atention'"),
    (["grade", "attention", "--visibility", "pe/=secret"], "must be one of visible, hidden"),
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
    with open(out / "gradebook.csv", newline="") as handle:
        body = {row["submission"]: row for row in csv.DictReader(handle)}
    assert (body["alice"]["total"], body["alice"]["max"], body["alice"]["status"],
            body["alice"]["reason"]) == (f"{MAX:g}", f"{MAX:g}", "graded", "")
    assert body["bob"]["total"] == body["carol"]["total"] == body["assignments"]["total"] == "0"
    assert body["bob"]["status"] == body["carol"]["status"] == "not graded"
    assert "not a readable zip" in body["carol"]["reason"]
    assert body["assignments"]["status"] == "graded"  # the skeleton: a genuine 0
    for name in body:
        assert_gradescope_schema(json.loads((out / name / "results.json").read_text()))


# ---------------------------------------------------------------------------------------
# Releases that check themselves
# ---------------------------------------------------------------------------------------

def copy_of_the_course(target: Path) -> Path:
    """The tracked and untracked (not ignored) files of this checkout, times kept."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                            cwd=paths.ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = paths.ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_make_release_refuses_after_an_unregenerated_edit(tmp_path):
    course = copy_of_the_course(tmp_path / "course")
    reference = course / "solutions" / "attention.py"
    reference.write_text(reference.read_text().replace(
        "You write, in order:", "You write, in this order:"))  # the skeleton's docstring too
    venv = Path(sys.executable).parent.parent
    run = subprocess.run(["make", "-o", str(venv / ".installed"), "release", f"VENV={venv}"],
                         cwd=course, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(course)))
    assert run.returncode != 0
    refused = [line for line in run.stderr.splitlines() if line.startswith("release refused")]
    assert refused == ["release refused: skeletons out of date (assignments/attention.py): "
                       "run `python -m grader skeletons`"], run.stdout + run.stderr
    assert not (course / "build").exists()


def test_a_refactor_that_breaks_several_variants_reports_them_all(tmp_path, monkeypatch, capsys):
    from grader.__main__ import main
    from grader.authoring import equivalents, mutants
    for name in ("attention.py", "attention_mutants.py", "attention_equivalents.py"):
        shutil.copy(paths.SOLUTIONS / name, tmp_path / name)
    old, new = "torch.bmm(q, k.transpose(-2, -1))", "(q @ k.transpose(-2, -1))"
    reference = tmp_path / "attention.py"
    reference.write_text(reference.read_text().replace(old, new))  # a one-line refactor
    broken = {f"{kind} {name}" for kind, known in (("mutant", mutants("attention")),
                                                   ("equivalent", equivalents("attention")))
              for name, (_, edits) in known.items() if any(old in text for text, _ in edits)}
    assert len(broken) >= 4
    monkeypatch.setattr(paths, "SOLUTIONS", tmp_path)
    assert main(["fixtures", "attention"]) == 1
    printed = capsys.readouterr().out
    named = set(re.findall(r"^  ((?:mutant|equivalent) \w+):", printed, re.M))
    assert named == broken, printed
    assert printed.count("closest: lines") == len(broken)
    assert printed.count(f"+    scores = {new}") == len(broken)  # the reference's new line
