"""`make submit`: the zip a student uploads, and what it says about itself.

The zip holds the student's module, the notebook, `autograder.pt` (their outputs on the
autograder inputs, for the outputs-mode flow), the results of grading on the public set,
and MANIFEST.json with the SHA-256 of every file. Beside it, `<a>_written.pdf` (and .html)
holds only the written questions and answers, for the manual-grading upload.

The local score covers every case except the training ones: those train for minutes, and
the course's autograder runs them on its own machines (`make grade` runs them here). The
command says so, in its output and in the zip's results.json ("output", and "extra_data"
with the cases covered and left out), and warns in one line each when the score is 0,
parts are still TODO, written answers are empty, or the notebook holds no outputs or is
older than the module. It writes the zip whatever it warns about.
"""
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch

from grader import paths, report, written
from grader.grade import Graded, GradingError, autograder_outputs, grade, resolve_impl
from grader.suites import load_suite

TRAINING_NOTE = ("training cases run on the course's autograder, on its machines; "
                 "`make grade A={a}` runs them here")


@dataclass
class Submission:
    zip: Path
    graded: Graded
    left_out: list = field(default_factory=list)   # the training cases: (name, points)
    warnings: list = field(default_factory=list)   # one line each

    @property
    def coverage(self) -> str:
        """What the local score covers, in one line."""
        g = self.graded
        line = (f"local score {g.score:g} / {g.max_score:g} on the public inputs, "
                f"{len(g.verdicts)} of {len(g.verdicts) + len(self.left_out)} cases")
        if not self.left_out:
            return line
        names = ", ".join(f"{name} ({points:g} points)" for name, points in self.left_out)
        return f"{line}. Not run here: {names}: {TRAINING_NOTE.format(a=g.assignment)}"


def module_file(assignment: str, impl: str) -> Path:
    module = resolve_impl(impl)
    module = module if module.suffix == ".py" else module / f"{assignment}.py"
    if not module.is_file():
        raise GradingError(f"nothing to submit: {module} does not exist")
    return module


def score_warnings(graded: Graded) -> list[str]:
    lines = []
    if graded.score == 0:
        lines.append(f"your score here is 0 / {graded.max_score:g}: no case passes yet")
    todo = [v.name for v in graded.verdicts if v.todo]
    if todo:
        shown = ", ".join(todo[:4]) + (f" and {len(todo) - 4} more" if len(todo) > 4 else "")
        lines.append(f"{len(todo)} of {len(graded.verdicts)} cases are still TODO "
                     f"(not implemented yet): {shown}")
    return lines


def notebook_warnings(notebook: Path, module: Path) -> list[str]:
    """What is wrong with the notebook on disk: the zip holds it as it is."""
    shown = f"notebooks/{notebook.name}"
    if not notebook.is_file():
        return [f"no {shown}: the zip holds no notebook"]
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # noqa: BLE001 - a damaged notebook: say so, zip it anyway
        return [f"{shown} could not be read as a notebook ({type(exc).__name__})"]
    lines = []
    if not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"):
        lines.append(f"{shown} holds no outputs: run it and save it before you submit")
    elif notebook.stat().st_mtime < module.stat().st_mtime:
        lines.append(f"{shown} was saved before {module.name} last changed: re-run it and "
                     "save it")
    empty = [f"Q{q.number}" for q in written.questions(nb) if not q.answered]
    if empty:
        lines.append(f"written answers are empty in {shown}: {', '.join(empty)} "
                     "(write them under each question, then save the notebook)")
    return lines


def make_submission(assignment: str, impl: str = "assignments", out: Path | None = None,
                    device: str = "cpu") -> Submission:
    module = module_file(assignment, impl)
    graded = grade(assignment, impl, device=device, which="public", training=False)
    left_out = [(c.name, c.points) for c in load_suite(assignment) if c.is_training]
    notebook = paths.NOTEBOOKS / f"{assignment}.ipynb"
    submission = Submission(out or paths.SUBMISSIONS / f"{assignment}.zip", graded, left_out,
                            score_warnings(graded) + notebook_warnings(notebook, module))
    results = report.results(graded.verdicts, graded.seconds,
                             notes=[submission.coverage, *graded.host, *graded.notes])
    results["extra_data"] = {"fixture_set": "public",
                             "covered": [v.name for v in graded.verdicts],
                             "left_out": [{"name": name, "points": points, "why": "training"}
                                          for name, points in left_out]}
    outputs = io.BytesIO()
    torch.save({"assignment": assignment, "outputs": autograder_outputs(assignment, impl,
                                                                        device=device)}, outputs)
    files = {f"{assignment}.py": module.read_bytes(), "autograder.pt": outputs.getvalue(),
             "results.json": json.dumps(results, indent=2).encode()}
    if notebook.is_file():
        files[notebook.name] = notebook.read_bytes()
    report.submission_zip(submission.zip, files)
    return submission


def written_answers(assignment: str, folder: Path) -> written.Written:
    """`<folder>/<a>_written.pdf` and `.html` from the student's (saved) notebook."""
    notebook = paths.NOTEBOOKS / f"{assignment}.ipynb"
    if not notebook.is_file():
        return written.Written(notes=[f"no notebook {notebook.name}: no written answers "
                                      "exported"])
    return written.write_answers(notebook, folder / f"{assignment}_written",
                                 f"{assignment}: written answers")
