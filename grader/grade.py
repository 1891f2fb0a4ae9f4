"""The grading pipeline: fixture inputs -> sandboxed student code -> judged in the parent."""
import io
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from grader import intake, paths
from grader.cases import Verdict, judge
from grader.sandbox import Limits, run_cases
from grader.suites import load_suite


class GradingError(Exception):
    """Bad input to the grader itself (unknown assignment, missing folder): one line."""


@dataclass
class Graded:
    assignment: str
    verdicts: list[Verdict]
    seconds: float
    fixture_set: str
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(v.points for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.max_points for v in self.verdicts)


def load_fixture(path: Path) -> dict:
    if not path.is_file():
        raise GradingError(f"missing fixture {path}: run `python -m grader fixtures`")
    return torch.load(path, weights_only=True)["cases"]


def fixture_set(assignment: str, requested: str = "auto") -> str:
    """`autograder` when its expected values are here (instructors, Gradescope), else `public`."""
    if requested != "auto":
        return requested
    have = paths.fixture_file(assignment, "autograder_expected").is_file()
    return "autograder" if have else "public"


def inputs_and_expected(assignment: str, which: str) -> tuple[dict, dict]:
    """({case: inputs}, {case: {"expected", "mutants"}}) of one fixture set."""
    if which == "public":
        cases = load_fixture(paths.fixture_file(assignment, "public"))
        return {k: v["inputs"] for k, v in cases.items()}, cases
    inputs = load_fixture(paths.fixture_file(assignment, "autograder_inputs"))
    return ({k: v["inputs"] for k, v in inputs.items()},
            load_fixture(paths.fixture_file(assignment, "autograder_expected")))


def resolve_impl(impl: str) -> Path:
    """`assignments`, `solutions`, or a folder, .zip or .py path (which must exist)."""
    path = {"assignments": paths.ASSIGNMENTS, "solutions": paths.SOLUTIONS}.get(impl, Path(impl))
    if not path.exists():
        raise GradingError(f"--impl {impl}: no such file or folder")
    return path.resolve()


def select(assignment, cases, training):
    return load_suite(assignment).select(cases, training)


def grade(assignment: str, impl: str = "assignments", *, device: str = "cpu",
          which: str = "auto", cases=None, training: bool = True,
          limits: Limits | None = None, slot: int = 0, progress=None) -> Graded:
    """Execute mode: run the student's module on fixture inputs in the sandbox, then judge."""
    started = time.monotonic()
    chosen = select(assignment, cases, training)
    submission = resolve_impl(impl)
    which = fixture_set(assignment, which)
    # The sandbox's forkserver is a fresh interpreter: loading fixtures here leaks nothing.
    inputs, expected = inputs_and_expected(assignment, which)
    with intake.workspace() as tmp:
        try:
            folder, refused = intake.locate(submission, assignment, Path(tmp))
        except intake.SubmissionError as exc:
            verdicts = [Verdict(c.name, 0.0, c.points, False, str(exc)) for c in chosen]
            return Graded(assignment, verdicts, time.monotonic() - started, which, [str(exc)])
        jobs = [(case, inputs[case.name]) for case in chosen]
        ran = run_cases(assignment, folder / f"{assignment}.py", jobs, device=device,
                        limits=limits, slot=slot, progress=progress)
    verdicts = [verdict(case, ran[case.name].outputs, ran[case.name].error,
                        expected[case.name], device) for case in chosen]
    notes = [f"refused unsafe zip entries: {', '.join(refused)}"] if refused else []
    return Graded(assignment, verdicts, time.monotonic() - started, which, notes)


def verdict(case, outputs, error, fixture, device: str = "cpu") -> Verdict:
    if error is not None:
        return Verdict(case.name, 0.0, case.points, False, error,
                       todo=error.startswith("not implemented yet"))
    expected, threshold = fixture["expected"], None
    if device == "cuda" and case.gpu_reference is not None:
        labels = case.gpu_reference()  # None: no gpu data here, the cpu profile ran
        if labels is not None:
            expected, threshold = labels, case.gpu_min_accuracy
    return judge(case, outputs, expected, fixture.get("mutants"), min_accuracy=threshold)


def grade_outputs(assignment: str, outputs_file: Path, *, cases=None) -> Graded:
    """Outputs mode: judge a submitted `autograder.pt` of outputs against the autograder set."""
    started = time.monotonic()
    chosen = select(assignment, cases, training=False)
    _, expected = inputs_and_expected(assignment, "autograder")
    if not Path(outputs_file).is_file():
        raise GradingError(f"--outputs {outputs_file}: no such file")
    try:
        submitted = torch.load(io.BytesIO(outputs_bytes(Path(outputs_file))), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a pickle payload or a corrupt file
        submitted, problem = {}, f"the outputs file could not be read safely ({type(exc).__name__})"
    else:
        problem = None if isinstance(submitted, dict) else "the outputs file is not a dict"
        submitted = submitted.get("outputs", submitted) if isinstance(submitted, dict) else {}
    verdicts = []
    for case in chosen:
        if problem or not isinstance(submitted, dict) or case.name not in submitted:
            verdicts.append(Verdict(case.name, 0.0, case.points, False,
                                    problem or "no outputs for this case in the file"))
        else:
            verdicts.append(verdict(case, submitted[case.name], None, expected[case.name]))
    return Graded(assignment, verdicts, time.monotonic() - started, "autograder")


def outputs_bytes(path: Path) -> bytes:
    """The bytes of autograder.pt, given the file itself or a submission zip holding it."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "autograder.pt" in archive.namelist():
                return archive.read("autograder.pt")
    return path.read_bytes()


def autograder_outputs(assignment: str, impl: str, *, device: str = "cpu",
                       limits: Limits | None = None) -> dict:
    """The student's outputs on the autograder inputs (for `autograder.pt` in the zip)."""
    chosen = select(assignment, None, training=False)
    inputs = {k: v["inputs"] for k, v in
              load_fixture(paths.fixture_file(assignment, "autograder_inputs")).items()}
    with intake.workspace() as tmp:
        folder, _ = intake.locate(resolve_impl(impl), assignment, Path(tmp))
        ran = run_cases(assignment, folder / f"{assignment}.py",
                        [(case, inputs[case.name]) for case in chosen], device=device,
                        limits=limits)
    return {name: result.outputs for name, result in ran.items() if result.error is None}
