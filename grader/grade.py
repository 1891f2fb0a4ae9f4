"""The grading pipeline: fixture inputs -> sandboxed student code -> judged in the parent."""
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from grader import intake, paths
from grader.cases import (Verdict, changed_input, describe, explain, judge, only_tensors,
                          with_inputs_check)
from grader.sandbox import (Limits, clean_message, decode_outputs_file, run_cases,
                            sandbox_mode, submission_budget)
from grader.suites import load_suite


class GradingError(Exception):
    """Bad input to the grader itself (unknown assignment, missing folder): one line."""


@dataclass
class Graded:
    assignment: str
    verdicts: list[Verdict]
    seconds: float
    fixture_set: str
    notes: list[str] = field(default_factory=list)  # about this submission (refused entries)
    host: list[str] = field(default_factory=list)   # how it ran: sandbox mode, missing limits

    @property
    def score(self) -> float:
        return sum(v.points for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.max_points for v in self.verdicts)


_loaded: dict = {}  # path -> ((inode, size, mtime), cases): a batch reads each file once
_loading = threading.Lock()


def load_fixture(assignment: str, kind: str) -> dict:
    """The {case name: entry} of one fixture file; GradingError (one line) when the file is
    missing, cannot be read (truncated, not a torch file) or is not this assignment's.

    Read once per process while the file is unchanged (callers only read what it holds)."""
    path = paths.fixture_file(assignment, kind)
    rebuild = f"rebuild it with `python -m grader fixtures {assignment}`"
    if not path.is_file():
        raise GradingError(f"missing fixture {paths.shown(path)}: {rebuild}")
    info = path.stat()
    version = (info.st_ino, info.st_size, info.st_mtime_ns)
    with _loading:
        if _loaded.get(str(path), (None,))[0] != version:
            _loaded[str(path)] = (version, read_fixture(assignment, path, rebuild))
        return _loaded[str(path)][1]


def read_fixture(assignment: str, path, rebuild: str) -> dict:
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, not a torch file, ...
        raise GradingError(f"fixture {paths.shown(path)} cannot be read ({type(exc).__name__}): "
                           f"{rebuild}") from None
    if type(data) is not dict or type(data.get("cases")) is not dict:
        raise GradingError(f"fixture {paths.shown(path)} is not a fixture file (no dict of cases): "
                           f"{rebuild}")
    owner = data.get("meta", {}).get("assignment") if type(data.get("meta")) is dict else None
    if owner != assignment:
        raise GradingError(f"fixture {paths.shown(path)} belongs to {str(owner)[:40]!r}, not "
                           f"{assignment!r}: {rebuild}")
    return data["cases"]


def fixture_set(assignment: str, requested: str = "auto") -> str:
    """`autograder` when its expected values are here (instructors, Gradescope), else `public`."""
    if requested != "auto":
        return requested
    have = paths.fixture_file(assignment, "autograder_expected").is_file()
    return "autograder" if have else "public"


def inputs_and_expected(assignment: str, which: str,
                        expected: bool = True) -> tuple[dict, dict | None]:
    """({case: inputs}, {case: {"expected", "mutants"}}) of one fixture set (None for the
    second without `expected`: the autograder inputs alone, as students have them)."""
    def inputs_of(cases):
        return {k: v.get("inputs") if type(v) is dict else None for k, v in cases.items()}
    if which == "public":
        cases = load_fixture(assignment, "public")
        return inputs_of(cases), cases if expected else None
    return (inputs_of(load_fixture(assignment, "autograder_inputs")),
            load_fixture(assignment, "autograder_expected") if expected else None)


@dataclass
class Setup:
    """What grading needs before any student code runs, checked: the chosen cases and the
    fixture set's inputs and expected values for each of them."""
    cases: list
    which: str
    inputs: dict
    expected: dict | None


def checked_setup(assignment: str, which: str = "auto", cases=None, training: bool = True,
                  expected: bool = True) -> Setup:
    """Load the suite and the fixture set and check that every chosen case has inputs (a
    dict) and, with `expected`, expected values and known-mistake outputs (tensors): a broken
    setup is one line (GradingError) before anyone is graded, never a zero for everyone."""
    try:
        chosen = select(assignment, cases, training)
    except ValueError:  # an unknown assignment or case: already one line
        raise
    except Exception as exc:  # noqa: BLE001 - a suite module that does not import
        raise GradingError(f"the suite of {assignment} cannot be loaded "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    which = fixture_set(assignment, which)
    inputs, wanted = inputs_and_expected(assignment, which, expected)
    files = ("public", "public") if which == "public" else ("autograder_inputs",
                                                           "autograder_expected")
    for case in chosen:
        kind, problem = ((files[0], "no inputs") if type(inputs.get(case.name)) is not dict
                         else (files[1], expected and entry_problem(wanted.get(case.name))))
        if problem:
            path = paths.shown(paths.fixture_file(assignment, kind))
            raise GradingError(f"fixture {path} does not fit case {case.name!r} "
                               f"({problem}): rebuild it with "
                               f"`python -m grader fixtures {assignment}`")
    return Setup(chosen, which, inputs, wanted)


def entry_problem(entry) -> str | None:
    """Why one case's expected-values entry cannot be used, or None."""
    if type(entry) is not dict or "expected" not in entry:
        return "no expected values"
    if not only_tensors(entry["expected"]):
        return "its expected values are not tensors"
    mistakes = entry.get("mutants", {})
    if type(mistakes) is not dict or not all(
            type(m) is dict and isinstance(m.get("description"), str)
            and only_tensors(m.get("outputs")) for m in mistakes.values()):
        return "its known-mistake outputs are malformed"
    return None


def resolve_impl(impl) -> Path:
    """The bare words `assignments` and `solutions` mean those folders; anything else is a
    folder, .zip or .py path (which must exist): `./solutions` or `/x/solutions` is a folder."""
    keywords = {"assignments": paths.ASSIGNMENTS, "solutions": paths.SOLUTIONS}
    path = keywords[impl] if isinstance(impl, str) and impl in keywords else Path(impl)
    if not path.exists():
        raise GradingError(f"--impl {impl}: no such file or folder")
    return path.resolve()


def select(assignment, cases, training):
    return load_suite(assignment).select(cases, training)


def grade(assignment: str, impl="assignments", *, device: str = "cpu",
          which: str = "auto", cases=None, training: bool = True,
          limits: Limits | None = None, progress=None) -> Graded:
    """Execute mode: run the student's module on fixture inputs in the sandbox, then judge
    each case as its reply arrives (its outputs are dropped once judged). Without a
    `limits.submission_time`, the submission's budget is `submission_budget` of its cases."""
    started = time.monotonic()
    # Workers are forked from zygotes that never see fixtures: loading them here leaks nothing.
    setup = checked_setup(assignment, which, cases, training)
    chosen, which, inputs, expected = setup.cases, setup.which, setup.inputs, setup.expected
    submission = resolve_impl(impl)
    limits = limits or Limits()
    if limits.submission_time is None:
        limits = replace(limits, submission_time=submission_budget(chosen, limits))
    host, notes = [clean_message(note) for note in sandbox_mode(limits).notes], []
    with intake.workspace() as tmp:
        try:
            folder, refused = intake.locate(submission, assignment, Path(tmp))
        except intake.SubmissionError as exc:
            reason = clean_message(exc)
            verdicts = [Verdict(c.name, 0.0, c.points, False, reason) for c in chosen]
            return Graded(assignment, verdicts, time.monotonic() - started, which, [reason],
                          host)
        module = folder / f"{assignment}.py"
        shortcuts = library_shortcuts(assignment, module)

        def judged(case, result):
            try:
                return judge_result(assignment, case, result, expected[case.name], device,
                                    limits, module, inputs[case.name])
            except Exception as exc:  # noqa: BLE001 - judging odd outputs costs this case only
                return Verdict(case.name, 0.0, case.points, False,
                               clean_message(f"could not judge the outputs "
                                             f"({type(exc).__name__}: {exc})"))

        jobs = [(case, inputs[case.name]) for case in chosen if case.name not in shortcuts]
        ran = run_cases(assignment, module, jobs, device=device, limits=limits,
                        progress=progress, on_result=judged)
    verdicts = [ran[case.name] if case.name in ran else
                Verdict(case.name, 0.0, case.points, False, shortcuts[case.name])
                for case in chosen]
    if refused:
        notes.append(f"refused unsafe zip entries: {', '.join(refused)}")
    verdicts = explain(load_suite(assignment), verdicts)  # failures caused by another part
    # Messages can quote what the student's code raised or returned: cleaned once more here.
    verdicts = [replace(v, message=clean_message(v.message)) for v in verdicts]
    return Graded(assignment, verdicts, time.monotonic() - started, which,
                  [clean_message(note) for note in notes], host)


def library_shortcuts(assignment: str, module: Path) -> dict[str, str]:
    """{case: message} for cases whose part uses a library call it asks students to write,
    read from the submitted source here in the parent (grader/policy.py; never imported)."""
    from grader import policy
    from grader.sandbox import read_source
    source = read_source(module)  # None: missing, a link or not a file (the worker says so)
    return policy.violations(source, load_suite(assignment)) if source else {}


def judge_result(assignment, case, result, fixture, device, limits, module,
                 sent=None) -> Verdict:
    """The verdict of one case's reply; training cases' weights are evaluated first. The
    inputs the code received, sent back after the call, must equal the `sent` ones."""
    if result.error is not None:
        return verdict(case, None, result.error, fixture, device)
    changed = changed_input(sent, result.inputs)
    if case.is_training and case.evaluate is not None:
        return with_inputs_check(judge_training(assignment, case, result.outputs, fixture,
                                                device, limits, module), changed)
    return verdict(case, result.outputs, None, fixture, device, changed)


MAX_WEIGHTS = 10_000  # tensors in a returned state_dict


def check_weights(weights) -> str | None:
    """None if `weights` is a state_dict: a dict of str -> plain tensor, bounded."""
    if type(weights) is not dict or set(weights) == {"__not_a_tensor__"}:
        got = weights.get("__not_a_tensor__") if type(weights) is dict else describe(weights)
        return f"a training case must return the model's state_dict, got {got}"
    if len(weights) > MAX_WEIGHTS:
        return f"the state_dict holds more than {MAX_WEIGHTS} tensors"
    for key, value in weights.items():
        if type(key) is not str or type(value) is not torch.Tensor:
            shown = value.get("__not_a_tensor__") if isinstance(value, dict) else None
            return (f"state_dict entry {str(key)[:60]!r} is "
                    f"{shown or describe(value)}, not a tensor")
    return None


def judge_training(assignment, case, weights, fixture, device, limits, module) -> Verdict:
    """Weights from the student's training, scored by the reference's `evaluate` in a
    separate sandbox that never imports the student's module (self-evaluated where the
    reference is absent: the student bundle)."""
    measure = case.measure
    problem = check_weights(weights)
    if problem:
        return Verdict(case.name, 0.0, case.points, False, problem, measure=measure)
    reference = paths.SOLUTIONS / f"{assignment}.py"
    self_evaluated = not reference.is_file()
    held_out, threshold = fixture["expected"], None
    if device == "cuda" and case.gpu_reference is not None:
        gpu = case.gpu_reference()  # {"data", "labels"} of the gpu profile; None: cpu profile
        if isinstance(gpu, dict) and "data" in gpu:
            held_out, threshold = gpu, case.gpu_min_accuracy
    job = (case, {"weights": weights, "data": held_out["data"]})
    ran = run_cases(assignment, module if self_evaluated else reference, [job], device=device,
                    limits=limits, mode="evaluate")[case.name]
    if ran.error is not None:
        return Verdict(case.name, 0.0, case.points, False,
                       clean_message(f"evaluating the trained weights failed: {ran.error}"),
                       measure=measure)
    target = held_out.get("labels", torch.zeros((), dtype=torch.float64))
    if case.min_scores is not None:  # named float64 scalars: their structure is the target
        target = {name: torch.zeros((), dtype=torch.float64) for name in case.min_scores}
    result = judge(case, ran.outputs, target, None, min_accuracy=threshold)
    if self_evaluated:
        result.message = f"{result.message} (self-evaluated)".strip()
    return result


def verdict(case, outputs, error, fixture, device: str = "cpu",
            changed: str | None = None) -> Verdict:
    """The verdict of one case from its outputs (or the one-line `error`); `changed` says
    how the code changed its inputs, if it did (`cases.changed_input`)."""
    if error is not None:
        return Verdict(case.name, 0.0, case.points, False, error,
                       todo=error.startswith("not implemented yet"))
    expected, threshold = fixture["expected"], None
    if device == "cuda" and case.gpu_reference is not None:
        labels = case.gpu_reference()  # None: no gpu data here, the cpu profile ran
        if labels is not None:
            expected, threshold = labels, case.gpu_min_accuracy
    return with_inputs_check(judge(case, outputs, expected, fixture.get("mutants"),
                                   min_accuracy=threshold), changed)


def grade_outputs(assignment: str, outputs_file: Path, *, cases=None,
                  limits: Limits | None = None) -> Graded:
    """Outputs mode: judge a submitted `autograder.pt` of outputs against the autograder set.

    The file is decoded in a separate, limited worker (its pickle is untrusted), under a
    size cap, and comes back as plain tensors; each case is judged on its own."""
    started = time.monotonic()
    setup = checked_setup(assignment, "autograder", cases, training=False)
    chosen, expected = setup.cases, setup.expected
    if not Path(outputs_file).is_file():
        raise GradingError(f"--outputs {outputs_file}: no such file")
    data, problem = outputs_bytes(Path(outputs_file), (limits or Limits()).output)
    submitted = {}
    if problem is None:
        submitted, problem = decode_outputs_file(data, limits)
    verdicts = []
    for case in chosen:
        if problem or case.name not in submitted:
            verdicts.append(Verdict(case.name, 0.0, case.points, False,
                                    problem or "no outputs for this case in the file"))
            continue
        try:
            verdicts.append(verdict(case, submitted[case.name], None, expected[case.name]))
        except Exception as exc:  # noqa: BLE001 - judging odd outputs costs this case only
            verdicts.append(Verdict(case.name, 0.0, case.points, False, clean_message(
                f"could not judge the outputs ({type(exc).__name__}: {exc})")))
    return Graded(assignment, verdicts, time.monotonic() - started, "autograder")


def outputs_bytes(path: Path, cap: int) -> tuple[bytes | None, str | None]:
    """The bytes of autograder.pt, given the file itself or a submission zip holding it,
    read only when its size is under `cap`; or why not."""
    too_big = f"the outputs file is larger than {cap >> 20} MB"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "autograder.pt" in archive.namelist():
                    info = archive.getinfo("autograder.pt")
                    if info.file_size > cap:
                        return None, too_big
                    with archive.open(info) as member:
                        data = member.read(cap + 1)  # a lying size header reads no further
                    return (data, None) if len(data) <= cap else (None, too_big)
        if path.stat().st_size > cap:
            return None, too_big
        return path.read_bytes(), None
    except Exception as exc:  # noqa: BLE001 - zipfile raises many kinds; each is one line
        return None, f"the outputs file could not be read ({type(exc).__name__})"


def autograder_outputs(assignment: str, impl: str, *, device: str = "cpu",
                       limits: Limits | None = None) -> dict:
    """The student's outputs on the autograder inputs (for `autograder.pt` in the zip)."""
    setup = checked_setup(assignment, "autograder", None, training=False, expected=False)
    chosen, inputs = setup.cases, setup.inputs
    with intake.workspace() as tmp:
        folder, _ = intake.locate(resolve_impl(impl), assignment, Path(tmp))
        ran = run_cases(assignment, folder / f"{assignment}.py",
                        [(case, inputs[case.name]) for case in chosen], device=device,
                        limits=limits or Limits(insecure=None))  # a student's laptop: auto
    return {name: result.outputs for name, result in ran.items() if result.error is None}
