"""`make submit`: the zip a student uploads.

It holds the student's module, the notebook, `autograder.pt` (their outputs on the
autograder inputs, for the outputs-mode flow), the results of grading on the public set,
and MANIFEST.json with the SHA-256 of every file. Beside it, `<a>_written.pdf` (and .html)
holds only the written questions and answers, for the manual-grading upload.
"""
import io
import json
from pathlib import Path

import torch

from grader import paths, report, written
from grader.grade import GradingError, autograder_outputs, grade, resolve_impl


def make_submission(assignment: str, impl: str = "assignments", out: Path | None = None,
                    device: str = "cpu") -> Path:
    module = resolve_impl(impl)
    module = module if module.suffix == ".py" else module / f"{assignment}.py"
    if not module.is_file():
        raise GradingError(f"nothing to submit: {module} does not exist")
    graded = grade(assignment, impl, device=device, which="public", training=False)
    outputs = io.BytesIO()
    torch.save({"assignment": assignment, "outputs": autograder_outputs(assignment, impl,
                                                                        device=device)}, outputs)
    files = {f"{assignment}.py": module.read_bytes(),
             "autograder.pt": outputs.getvalue(),
             "results.json": json.dumps(report.results(graded.verdicts, graded.seconds),
                                        indent=2).encode()}
    notebook = paths.NOTEBOOKS / f"{assignment}.ipynb"
    if notebook.is_file():
        files[notebook.name] = notebook.read_bytes()
    target = out or paths.SUBMISSIONS / f"{assignment}.zip"
    report.submission_zip(target, files)
    return target


def written_answers(assignment: str, folder: Path) -> tuple[list[Path], str | None]:
    """`<folder>/<a>_written.pdf` and `.html` from the student's (saved) notebook."""
    notebook = paths.NOTEBOOKS / f"{assignment}.ipynb"
    if not notebook.is_file():
        return [], f"no notebook {notebook.name}: no written answers exported"
    return written.write_answers(notebook, folder / f"{assignment}_written",
                                 f"{assignment}: written answers")
